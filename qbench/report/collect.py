"""Evaluation record of one run: check it finished and flatten its final metrics.

``python -m qbench.report.collect --run-dir results/mini/runs/CELL/s0 --cell CELL --seed 0 --out F.json``

``--cell-fields JSON`` gives the cell's fields (``cell_fields``) instead of looking the cell up:
the pipeline has the cells loaded and passes them, so this process imports neither torch nor the
cell registry (measured 0.13-0.20 s per run, against 4.2-5.1 s with the registry).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from qbench import run_files
from qbench.io import FileFormatError, read_json, read_predictions, write_json

FINAL_KEYS = ("hard_top1", "hard_top5", "soft_top1", "soft_top5", "hard_map", "soft_map")


class RunError(RuntimeError):
    """A run directory that is missing results or did not complete."""


# the fields of a cell (qbench.paper.Cell) an evaluation record carries
CELL_FIELDS = ("id", "kind", "task", "model", "weights", "activations", "wa_label", "init", "sharing",
               "start", "slope")


def cell_fields(cell) -> dict:
    """The fields of ``cell`` (a ``qbench.paper.Cell``) that ``collect`` needs."""
    return {k: getattr(cell, k) for k in CELL_FIELDS}


def collect(run_dir: str | Path, cell_id: str, seed: int, fields: dict | None = None) -> dict:
    """Read ``metrics.json`` of a run and return one flat record.

    Args:
        run_dir: the run directory written by ``qbench train``.
        cell_id: the experiment cell it belongs to.
        seed: its seed.
        fields: the cell's fields (``cell_fields``); None looks the cell up in the registry.

    Raises:
        RunError: metrics missing, status not complete, or no exported model for a quantized run.
        KeyError: an unknown cell.
        ValueError: fields without one of CELL_FIELDS, or of another cell.
    """
    run_dir = Path(run_dir)
    if fields is None:
        from qbench.paper import load_cells

        fields = cell_fields(load_cells()[cell_id])
    missing = [k for k in CELL_FIELDS if k not in fields]
    if missing or fields["id"] != cell_id:
        what = f"lack {', '.join(missing)}" if missing else f"name cell {fields['id']!r}"
        raise ValueError(f"--cell-fields of {cell_id}: {what}")
    cell = SimpleNamespace(**{k: fields[k] for k in CELL_FIELDS})
    path = run_dir / run_files.METRICS
    if not path.is_file():
        raise RunError(f"{path} does not exist")
    try:
        metrics = read_json(path)  # a damaged file is named with its line
    except FileFormatError as e:
        raise RunError(str(e)) from None
    if metrics.get("status") != "complete":
        raise RunError(f"{path}: status is {metrics.get('status')!r}, not 'complete'")
    if cell.kind == "quant" and not (run_dir / run_files.EXPORT).is_file():
        raise RunError(f"{run_dir}: quantized run without model_hard.pt")
    final = metrics.get("final", {})
    if cell.task == "classify":
        if not (run_dir / run_files.PREDICTIONS).is_file():
            raise RunError(f"{run_dir}: classification run without predictions.npz (per-image results)")
        try:  # the claims and tables read it: a damaged one stops here, named
            read_predictions(run_dir / run_files.PREDICTIONS, final.get("test_images"))
        except FileFormatError as e:
            raise RunError(str(e)) from None
    bits = metrics.get("model_bits") or {}
    record = {
        "cell": cell.id, "seed": int(seed), "kind": cell.kind, "task": cell.task,
        "model": cell.model, "weights": cell.weights, "activations": cell.activations,
        "wa": cell.wa_label, "init": cell.init, "sharing": cell.sharing, "start": cell.start,
        "slope": cell.slope, "run_dir": str(run_dir),
        "wall_time_s": metrics.get("wall_time_s"), "images_per_s": metrics.get("images_per_s"),
        "peak_memory_mb": metrics.get("peak_memory_mb"),
        "fp_bits": bits.get("fp_bits"), "quantized_bits": bits.get("quantized_bits"),
        "bits_ratio": bits.get("ratio"), "epochs_run": len(metrics.get("history", [])),
        "test_images": final.get("test_images"),
        # the trainer's flag: hard top-1 far below soft (docs/training.md)
        "evaluation_mismatch": bool(final.get("evaluation_mismatch", False)),
    }
    for key in FINAL_KEYS:
        record[key] = final.get(key)
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--cell", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cell-fields", default=None, metavar="JSON",
                    help="the cell's fields as a JSON object (else looked up in the registry)")
    args = ap.parse_args(argv)
    try:
        fields = None if args.cell_fields is None else json.loads(args.cell_fields)
        if fields is not None and not isinstance(fields, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        print(f"error: --cell-fields: {e}", file=sys.stderr)
        return 2
    try:
        record = collect(args.run_dir, args.cell, args.seed, fields)
    except (RunError, ValueError, KeyError) as e:
        print(f"error: {f'unknown cell {e}' if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    write_json(args.out, record)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
