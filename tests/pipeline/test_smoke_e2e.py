"""The smoke scale end to end with the real trainer: every rule, tables, figures, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import snakemake

pytestmark = pytest.mark.slow


def test_smoke_workflow_end_to_end(smoke_run):
    tmp_path, wall = smoke_run
    out = tmp_path / "results" / "smoke"
    plan = json.loads((out / "plan.json").read_text())
    runs = pd.read_csv(out / "aggregate" / "runs.csv")
    assert sorted(runs["cell"]) == sorted(plan["cells"])
    for _, run in runs.iterrows():
        metrics = json.loads((tmp_path / run["run_dir"] / "metrics.json").read_text())
        assert metrics["status"] == "complete"
        assert run["hard_top1"] == pytest.approx(metrics["final"]["hard_top1"])
    long = pd.read_csv(out / "tables" / "all_cells.csv")
    repro = long[long.status == "reproduced"]
    assert set(repro["cell"]) <= set(plan["cells"]) and len(repro) >= 8
    assert (long[long.status.str.startswith("not run")]["repro_mean"].isna()).all()
    t8 = long[(long.table == "table8") & (long.row == "space_measured") & (long.column == "binary")].iloc[0]
    assert t8["repro_mean"] == pytest.approx(1.0)
    pdf = tmp_path / "reports" / "smoke" / "report.pdf"
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 50_000
    # nothing changed: nothing to do
    again = snakemake(tmp_path, "-n", "reproduce_tables", "--config", "scale=smoke")
    assert "Nothing to be done" in again.stdout + again.stderr
    print(f"smoke workflow wall time: {wall:.0f} s")
