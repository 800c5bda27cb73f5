"""Aggregate per-run records into ``runs.csv`` and per-cell mean ± std into ``cells.csv``.

``python -m qbench.report.aggregate --plan plan.json --out-runs runs.csv --out-cells cells.csv EVAL.json...``
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import pandas as pd

from qbench.report.collect import FINAL_KEYS
from qbench.io import write_text

MEAN_KEYS = FINAL_KEYS + ("fp_bits", "quantized_bits", "bits_ratio", "wall_time_s")


def aggregate(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run table and per-cell summary (mean, sample std over seeds, n).

    Args:
        records: evaluation records (``qbench.report.collect.collect``).
    """
    runs = pd.DataFrame.from_records(records)
    if runs.empty:
        return runs, pd.DataFrame()
    runs = runs.sort_values(["cell", "seed"]).reset_index(drop=True)
    meta_cols = ["cell", "kind", "task", "model", "weights", "activations", "wa", "init", "sharing",
                 "start", "slope"]
    rows = []
    for cell, group in runs.groupby("cell", sort=True):
        row = {c: group[c].iloc[0] for c in meta_cols}
        row["n_seeds"] = int(len(group))
        row["seeds"] = " ".join(str(s) for s in group["seed"])
        for key in MEAN_KEYS:
            values = pd.to_numeric(group[key], errors="coerce").dropna()
            row[f"{key}_mean"] = float(values.mean()) if len(values) else None
            # sample std; undefined (empty) for a single seed
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        rows.append(row)
    return runs, pd.DataFrame(rows)


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="plan.json of the scale (cells expected)")
    ap.add_argument("--out-runs", required=True)
    ap.add_argument("--out-cells", required=True)
    ap.add_argument("evals", nargs="*")
    args = ap.parse_args(argv)
    records = []
    for path in args.evals:
        with open(path, encoding="utf-8") as fh:
            records.append(json.load(fh))
    with open(args.plan, encoding="utf-8") as fh:
        expected = set(json.load(fh)["cells"])
    found = {r["cell"] for r in records}
    if found - expected:
        raise SystemExit(f"records of cells not in the plan: {sorted(found - expected)}")
    runs, cells = aggregate(records)
    write_text(args.out_runs, _csv(runs))
    write_text(args.out_cells, _csv(cells))
    print(f"{len(runs)} runs, {len(cells)} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
