"""Runs whose hard network is far below the soft one are listed in the report, not hidden."""

import pandas as pd

from qbench.report.latex import evaluation_mismatch_section


def test_flagged_runs_are_listed_with_both_accuracies():
    runs = pd.DataFrame([
        {"cell": "resnet18_w1a2", "seed": 0, "hard_top1": 9.7, "soft_top1": 71.6, "evaluation_mismatch": True},
        {"cell": "resnet18_w1a2", "seed": 1, "hard_top1": 76.4, "soft_top1": 77.0, "evaluation_mismatch": False},
    ])
    text = "\n".join(evaluation_mismatch_section(runs))
    assert "1 run(s)" in text and "9.70" in text and "71.60" in text
    assert "76.40" not in text


def test_no_flag_says_so_and_old_runs_csv_adds_nothing():
    runs = pd.DataFrame([{"cell": "a", "seed": 0, "hard_top1": 80.0, "soft_top1": 80.5, "evaluation_mismatch": False}])
    assert "No run" in "\n".join(evaluation_mismatch_section(runs))
    assert evaluation_mismatch_section(runs.drop(columns="evaluation_mismatch")) == []
    assert evaluation_mismatch_section(None) == []


def test_method_sanity_section_lists_baseline_cells_from_their_runs():
    from qbench.report.latex import method_sanity_section

    runs = pd.DataFrame([
        {"cell": "alexnet_fp", "seed": 0, "hard_top1": 76.8, "run_dir": "x"},
        {"cell": "alexnet_w2a32_ttq", "seed": 0, "hard_top1": 10.1, "run_dir": "missing-dir"},
        {"cell": "alexnet_w2a32_ttq", "seed": 1, "hard_top1": 74.0, "run_dir": "missing-dir"},
    ])
    plan = {"config": {"train": {"model": {"num_classes": 10}}}}
    text = "\n".join(method_sanity_section(runs, plan, read_export=None))
    assert "alexnet" in text and "10.1" in text and "74.0" in text and "chance" in text
    assert method_sanity_section(runs, {}) == []
