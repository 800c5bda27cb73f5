"""A full (fast, stand-in trainer) run; then: nothing changed -> nothing to do; one cell changed ->
only that cell and what depends on it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import job_counts, jobs_with_wildcards, snakemake, write_yaml

CELLS = ["resnet18_fp", "resnet18_w3pm4a32", "resnet18_w3pm4a32_scratch"]
DOWNSTREAM = {"aggregate", "claims", "tables", "figures", "report", "write_plan", "all"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    import sys

    from conftest import FAKE_TRAIN

    wd = tmp_path_factory.mktemp("rerun")
    cfg = write_yaml(wd / "base.yaml", {"train_command": f"{sys.executable} {FAKE_TRAIN}",
                                         "cells": {"only": CELLS}, "seeds": [0, 1]})
    res = snakemake(wd, "--cores", "2", "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return wd, cfg


def test_outputs_come_from_runs(finished):
    wd, _ = finished
    res = wd / "results" / "smoke"
    assert (wd / "reports" / "smoke" / "report.pdf").stat().st_size > 10_000
    long = pd.read_csv(res / "tables" / "all_cells.csv")
    ev = [json.loads((res / "eval" / f"resnet18_w3pm4a32_s{s}.json").read_text()) for s in (0, 1)]
    mean = sum(e["hard_top1"] for e in ev) / 2
    row = long[(long.table == "table2") & (long.row == "ours") & (long.column == "w3pm4a32") & (long.metric == "top1")]
    assert row.iloc[0]["status"] == "reproduced"
    assert row.iloc[0]["repro_mean"] == pytest.approx(mean)
    assert row.iloc[0]["n_seeds"] == 2
    assert row.iloc[0]["diff"] == pytest.approx(mean - 70.4)
    # a cell of this table that did not run is marked, with no number
    other = long[(long.table == "table2") & (long.row == "ours") & (long.column == "w1a32")].iloc[0]
    assert other["status"].startswith("not run") and pd.isna(other["repro_mean"])
    t4 = long[long.table == "table4"]
    assert set(t4[t4.row == "ours"]["status"]) == {"not run (detection disabled at this scale)"}
    md = (res / "tables" / "table4.md").read_text()
    assert "not run" in md and "detection disabled at this scale" in md
    t7 = (res / "tables" / "table7.md").read_text()
    assert "from scratch" in t7 and "±" in t7


def test_nothing_changed_nothing_runs(finished):
    wd, cfg = finished
    res = snakemake(wd, "-n", "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "Nothing to be done" in res.stdout + res.stderr


def test_changing_one_cell_reruns_only_it_and_dependents(finished, tmp_path):
    wd, cfg = finished
    change = write_yaml(tmp_path / "change.yaml",
                        {"cell_overrides": {"resnet18_w3pm4a32_scratch": {"optim": {"lr": 0.02}}}})
    res = snakemake(wd, "-n", "--config", "scale=smoke", "--configfile", str(cfg), str(change))
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["render_config"] == 2 and counts["train_quant"] == 2 and counts["evaluate"] == 2
    assert "train_fp" not in counts and "prepare_data" not in counts
    assert set(counts) - {"total"} == {"render_config", "train_quant", "evaluate"} | DOWNSTREAM
    trained = {w for r, w in jobs_with_wildcards(res.stdout) if r == "train_quant"}
    assert trained == {"cell=resnet18_w3pm4a32_scratch, seed=0", "cell=resnet18_w3pm4a32_scratch, seed=1"}


def test_changing_an_fp_cell_reruns_the_cells_that_start_from_it(finished, tmp_path):
    wd, cfg = finished
    change = write_yaml(tmp_path / "change.yaml", {"cell_overrides": {"resnet18_fp": {"epochs": {"fp": 2}}}})
    res = snakemake(wd, "-n", "--config", "scale=smoke", "--configfile", str(cfg), str(change))
    assert res.returncode == 0, res.stderr
    jobs = jobs_with_wildcards(res.stdout)
    assert {w for r, w in jobs if r == "train_fp"} == {"cell=resnet18_fp, seed=0"}
    # the pretrained cell's config now embeds nothing new, but its input checkpoint changes
    assert {w for r, w in jobs if r == "train_quant"} == {"cell=resnet18_w3pm4a32, seed=0",
                                                          "cell=resnet18_w3pm4a32, seed=1"}
