"""Size a scale by measurement: for each candidate sizing, train each model's FP, W1/32,
W3(+-4)/32, W1/A1 and W1/A2 cells through the pipeline and report the positive controls the
claims need (weights: FP minus W1/32; activations: W1/32 minus W1/A1, paired on test images),
W3(+-4)/32 against FP, how far each quantized-activation cell's hard (deployed) network falls
below its soft (trained) one, and the cost.

    python -m qbench.workflow.sizing sizings.yaml --workdir /tmp/sizing [--cores 2]

``sizings.yaml``::

    base: mini                       # the scale the sizings start from
    models: [resnet18, alexnet_bn]
    seeds: [0, 1, 2]
    sizings:
      today: {}                      # the scale as it is
      w025_n5000:                    # deep-merged over the scale config
        train: {model: {width: 0.25}, data: {train_size: 5000}}

Each sizing runs in ``<workdir>/<name>`` (resumable: snakemake reruns only what is missing).
The table (markdown, one row per sizing and model) goes to stdout and ``<workdir>/sizing.md``:
FP top-1, FP - W1/32, W3(+-4)/32 - FP and W1/32 - W1/A1 with 95 % intervals
(qbench.report.claims), whether the weight control is visible (its lower bound above the W3
comparison's half-width, as the claims require), the soft - hard top-1 of W1/A1 and W1/A2 (mean
over seeds; a sizing where it is large cannot judge the paper's activation claims) and the CPU
minutes of the training jobs (snakemake benchmarks: ``cpu_time``).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd

from qbench.io import read_yaml, write_text, write_yaml

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
CELLS = ("fp", "w1a32", "w3pm4a32", "w1a1", "w1a2")
ACTIVATION_CELLS = ("w1a1", "w1a2")


class SizingError(ValueError):
    """A sizing file that cannot be run (one line, naming the key)."""


def _prefix(arch: str) -> str:
    return "alexnet" if arch == "alexnet_bn" else arch


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_sizings(path: Path) -> dict:
    """The validated sizing file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SizingError(f"{path}: must be a mapping")
    for key in ("base", "models", "seeds", "sizings"):
        if key not in raw:
            raise SizingError(f"{path}: missing key {key!r}")
    if not isinstance(raw["sizings"], dict) or not raw["sizings"]:
        raise SizingError(f"{path}: sizings: must be a non-empty mapping name -> overrides")
    for name, over in raw["sizings"].items():
        if not str(name).replace("_", "").isalnum():
            raise SizingError(f"{path}: sizings.{name}: names are letters, digits and _")
        if not isinstance(over, dict):
            raise SizingError(f"{path}: sizings.{name}: must be a mapping of config overrides")
    from qbench.models import available_models

    for arch in raw["models"]:
        if arch not in available_models("classify"):
            raise SizingError(f"{path}: models: {arch!r} is not one of {available_models('classify')}")
    if len(raw["seeds"]) < 2:
        raise SizingError(f"{path}: seeds: at least 2 (the interval needs seed noise)")
    return raw


def overrides(spec: dict, name: str) -> dict:
    """The config a sizing's pipeline run gets on top of the base scale."""
    cells = [f"{_prefix(a)}_{c}" for a in spec["models"] for c in CELLS]
    seeds = list(spec["seeds"])
    # every quantized cell on the sizing's seeds: a scale's extra seeds for one claim (mini's six
    # ResNet-18 seeds) would make one model's control cost twice the other's
    base = {"cells": {"only": cells, "skip": []}, "fp_cache": None, "detection": {"enabled": False},
            "baselines": {"enabled": False}, "seeds": seeds,
            "cell_seeds": {c: seeds for c in cells if not c.endswith("_fp")}}
    return _deep_merge(base, spec["sizings"][name])


def run_sizing(spec: dict, name: str, workdir: Path, cores: int) -> Path:
    """Run one sizing's cells through the pipeline; returns its runs.csv."""
    wd = workdir / name
    wd.mkdir(parents=True, exist_ok=True)
    write_yaml(wd / "sizing.yaml", overrides(spec, name))
    scale = spec["base"]
    target = f"results/{scale}/aggregate/runs.csv"
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", str(cores),
           "--rerun-incomplete", "--configfile", str(wd / "sizing.yaml"), "--config", f"scale={scale}", "--", target]
    log.info("sizing %s: %s", name, " ".join(cmd))
    with open(wd / "snakemake.log", "w") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
    return wd / target


def cpu_minutes(results_dir: Path, runs: pd.DataFrame | None = None) -> float:
    """CPU minutes of a results tree's training jobs (snakemake benchmark files); with ``runs``,
    of those runs only (a tree can hold runs of an earlier plan)."""
    total = 0.0
    wanted = None if runs is None else {f"{c}_s{int(s)}.tsv" for c, s in zip(runs["cell"], runs["seed"])}
    for tsv in sorted((results_dir / "benchmarks" / "train").glob("*.tsv")):
        if wanted is None or tsv.name in wanted:
            total += float(pd.read_csv(tsv, sep="\t")["cpu_time"].iloc[0])
    return total / 60.0


def read_runs(runs_csv: Path, workdir: Path) -> pd.DataFrame:
    """A sizing's runs.csv with each run directory anchored at the sizing's pipeline directory
    (the pipeline writes them relative to it, and the tool runs from elsewhere)."""
    runs = pd.read_csv(runs_csv)
    runs["run_dir"] = [str(Path(workdir) / d) for d in runs["run_dir"]]
    return runs


def soft_minus_hard(results, cell_id: str) -> float | None:
    """Mean over a cell's seeds of its soft minus hard top-1 on the final test images (points),
    or None when it has no runs."""
    rows = results._rows(cell_id)
    gaps = []
    for run_dir in rows["run_dir"] if len(rows) else []:
        p = results._predictions(run_dir)
        gaps.append(100.0 * float((p["soft"] == p["label"]).mean() - (p["hard"] == p["label"]).mean()))
    return sum(gaps) / len(gaps) if gaps else None


def _ci(iv) -> str:
    return f"{iv.effect:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]"


def sizing_rows(name: str, runs: pd.DataFrame, models: list[str], minutes: float | None) -> list[dict]:
    """One row per model: the FP top-1, the weight control FP - W1/32, W3(+-4)/32 - FP and the
    activation control W1/32 - W1/A1 with 95 % intervals as the claims compute them, the W3
    comparison's margin, whether the weight control is visible, and each quantized-activation
    cell's soft - hard gap."""
    from qbench.report.claims import margin_from_fp
    from qbench.report.results import Results, comparison_interval

    res = Results(runs, fp_seed=0)
    out = []
    for arch in models:
        p = _prefix(arch)
        fp, w1, w3, a1, a2 = (f"{p}_{c}" for c in CELLS)
        row = {"sizing": name, "model": arch, "fp_top1": None, "fp_minus_w1": "", "w3_minus_fp": "",
               "w1_minus_a1": "", "margin": None, "control_visible": "", "cpu_min": minutes,
               "a1_soft_minus_hard": soft_minus_hard(res, a1), "a2_soft_minus_hard": soft_minus_hard(res, a2)}
        act = comparison_interval(res, {w1: 1.0, a1: -1.0})
        if act is not None:
            row["w1_minus_a1"] = _ci(act[0])
        got_fp = res.matrix(fp)
        gap, w3c = comparison_interval(res, {fp: 1.0, w1: -1.0}), comparison_interval(res, {w3: 1.0, fp: -1.0})
        if got_fp is None or gap is None or w3c is None:
            row["control_visible"] = "not run"
            out.append(row)
            continue
        fp_value = float(got_fp[1].mean())
        g, w = gap[0], w3c[0]
        row.update(fp_top1=round(fp_value, 2), margin=round(margin_from_fp(fp_value), 2),
                   fp_minus_w1=_ci(g), w3_minus_fp=_ci(w),
                   control_visible="yes" if g.low > w.half_width else "no")
        out.append(row)
    return out


def markdown(rows: list[dict]) -> str:
    """The trade-off table."""
    head = ["sizing", "model", "FP top-1", "FP - W1/32 [95 % CI]", "W3(+-4)/32 - FP [95 % CI]", "margin",
            "control visible", "W1/32 - W1/A1 [95 % CI]", "soft - hard W1/A1", "soft - hard W1/A2",
            "CPU min (training)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(v, fmt="{:.2f}"):
        return "-" if v is None or v == "" else fmt.format(v)

    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in (
            r["sizing"], r["model"], num(r["fp_top1"]), r["fp_minus_w1"] or "-", r["w3_minus_fp"] or "-",
            num(r["margin"]), r["control_visible"], r.get("w1_minus_a1") or "-",
            num(r.get("a1_soft_minus_hard"), "{:+.1f}"), num(r.get("a2_soft_minus_hard"), "{:+.1f}"),
            num(r["cpu_min"], "{:.1f}"))) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizings", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        spec = read_sizings(args.sizings)
    except (SizingError, OSError) as e:
        print(f"qbench sizing: {e}", file=sys.stderr)
        return 2
    rows = []
    for name in spec["sizings"]:
        runs_csv = run_sizing(spec, name, args.workdir, args.cores)
        results = runs_csv.parents[1]
        runs = read_runs(runs_csv, args.workdir / name)
        rows += sizing_rows(name, runs, spec["models"], cpu_minutes(results, runs))
        write_text(args.workdir / "sizing.md", markdown(rows))  # after every sizing: partial tables survive
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
