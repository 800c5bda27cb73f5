"""Run the four Table 4 cells of one scale in order (FP first, then the quantized cells).

    python -m qbench.detection.stage --scale mini --out runs/detect-mini [--quiet]

Uses the example configs ``qbench/detection/configs/<scale>_{fp,w2a32,w3a32,w3a8}.yaml``,
points every quantized cell's ``start.checkpoint`` at the FP run, and writes
``<out>/summary.json`` with each cell's final mAP and wall time. The workflow runs the same
cells one by one through ``qbench train``; this is for measuring a scale end to end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from qbench import run_files
from qbench.io import write_json

from .runner import run_from_config

CELLS = ("fp", "w2a32", "w3a32", "w3a8")
CONFIG_DIR = Path(__file__).with_name("configs")


def load_cell_config(scale: str, cell: str) -> dict:
    """The example config of one cell.

    Args:
        scale: "smoke", "mini" or "paper".
        cell: one of ``CELLS``.
    """
    path = CONFIG_DIR / f"{scale}_{cell}.yaml"
    if not path.exists():
        raise ValueError(f"no config {path.name} for scale {scale!r}")
    return yaml.safe_load(path.read_text())


def run_stage(scale: str, out: Path, quiet: bool = False, data_root: str | None = None) -> dict:
    """Run FP, W2/A32, W3(±4)/A32 and W3(±4)/A8 of ``scale`` under ``out``.

    Args:
        scale: config prefix.
        out: parent directory of the four run directories.
        quiet: less console output.
        data_root: override ``data.root`` of every cell.

    Returns:
        The summary written to ``out/summary.json``.
    """
    out = Path(out)
    summary: dict = {"scale": scale, "cells": {}}
    t0 = time.perf_counter()
    for cell in CELLS:
        cfg = load_cell_config(scale, cell)
        if data_root is not None:
            cfg["data"]["root"] = data_root
        if cell != "fp":
            cfg["start"] = {"mode": "pretrained", "checkpoint": str(out / "fp" / run_files.CHECKPOINT)}
        t = time.perf_counter()
        metrics = run_from_config(cfg, out / cell, quiet=quiet)
        summary["cells"][cell] = {"hard_map": metrics["final"]["hard_map"],
                                  "soft_map": metrics["final"]["soft_map"],
                                  "wall_time_s": time.perf_counter() - t,
                                  "train_wall_time_s": metrics["wall_time_s"],
                                  "images_per_s": metrics["images_per_s"]}
        summary["total_s"] = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="mini", choices=("smoke", "mini", "paper"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    summary = run_stage(args.scale, args.out, args.quiet, args.data_root)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
