"""The method sanity table (qbench.report.sanity): nonzero shares and levels read from exported
hard weights, collapsed seeds and harness findings."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from qbench.quant import get_method, quantize_
from qbench.report.sanity import (collapse_threshold, export_weight_stats, load_export, sanity_grid,
                                  sanity_row)


def _export(codebook_a, codes_a, codebook_b, codes_b) -> dict:
    return {"weights": {"a": {"codes": torch.tensor(codes_a, dtype=torch.uint8), "codebook": torch.tensor(codebook_a)},
                        "b": {"codes": torch.tensor(codes_b, dtype=torch.uint8), "codebook": torch.tensor(codebook_b)}}}


def test_stats_of_per_layer_and_per_channel_level_tables():
    exported = _export([-0.5, 0.0, 0.5], [[0, 1, 1, 1], [1, 1, 2, 1]],  # 2 of 8 nonzero, 3 values used
                       [[-1.0, 1.0], [-2.0, 2.0]], [[0, 0, 0], [0, 1, 0]])  # per channel: 1 and 2 values
    stats = export_weight_stats(exported)
    assert stats["weights"] == 14
    assert stats["nonzero_fraction"] == pytest.approx((2 + 6) / 14)
    assert stats["levels_used"] == 3


def test_a_layer_using_one_level_counts_one():
    stats = export_weight_stats(_export([0.0, 1.0], [[0, 0]], [[-1.0, 1.0]], [[1, 1]]))
    assert stats == {"nonzero_fraction": 0.5, "levels_used": 1, "weights": 4}


def test_stats_of_a_real_ttq_export_match_its_ternarization():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 6, 3), nn.Flatten(), nn.Linear(6, 2))
    method = quantize_(model, get_method("ttq").config_from_section("ternary", None, {}))
    w = model[1].parametrizations.weight.original.detach()
    expected = float((w.abs() > 0.05 * w.abs().max()).float().mean())
    stats = export_weight_stats(method.export(model))
    assert stats["nonzero_fraction"] == pytest.approx(expected) and stats["levels_used"] == 3


def test_empty_export_is_refused():
    with pytest.raises(ValueError, match="no quantized weights"):
        export_weight_stats({"weights": {}})


def test_collapse_threshold_is_a_quarter_of_the_way_from_chance():
    assert collapse_threshold(10, 90.0) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="num_classes"):
        collapse_threshold(1, 90.0)


def test_row_flags_collapsed_seeds_levels_and_drop(tmp_path):
    exported = _export([-0.5, 0.0, 0.5], [[1, 1, 1, 0]], [[-1.0, 1.0]], [[0, 1]])  # layer a uses 2 of 3
    runs = []
    for seed, top1 in ((2, 12.9), (0, 11.7), (1, 55.0)):
        run_dir = tmp_path / f"s{seed}"
        run_dir.mkdir()
        torch.save(exported, run_dir / "model_hard.pt")
        runs.append({"seed": seed, "hard_top1": top1, "run_dir": str(run_dir)})
    row = sanity_row("resnet18_w1a1_abcnet", "abcnet", "resnet18", "1/1", runs, fp_top1=90.0, num_classes=10,
                     levels_expected=3, paper_relative_drop=0.2)
    assert row.seeds == [0, 1, 2] and row.top1 == [11.7, 55.0, 12.9]
    assert row.collapsed_seeds == [0, 2]
    assert row.nonzero_fraction == pytest.approx(3 / 6) and row.levels_used == 2
    assert row.relative_drop == pytest.approx(1 - (11.7 + 55.0 + 12.9) / 3 / 90.0)
    assert row.harness_finding and len(row.findings) == 3
    assert "seed(s) 0, 2 at chance" in row.findings[0] and "uses 2 of 3" in row.findings[2]
    grid = sanity_grid([row])
    assert grid[1][0] == "resnet18_w1a1_abcnet" and grid[1][8] == "0, 2" and grid[1][7] == "2 / 3"


def test_a_healthy_cell_is_no_finding():
    runs = [{"seed": s, "hard_top1": t, "run_dir": "unused"} for s, t in ((0, 84.0), (1, 85.5))]
    row = sanity_row("c", "ttq", "alexnet_bn", "2/32", runs, fp_top1=88.0, num_classes=10,
                     levels_expected=3, paper_relative_drop=0.0, read_export=None)
    assert not row.harness_finding and row.collapsed_seeds == [] and row.levels_used is None
    assert sanity_grid([row])[1][-1] == "no"


def test_missing_top1_and_export_are_errors(tmp_path):
    with pytest.raises(ValueError, match="seed 0: no hard_top1"):
        sanity_row("c", "ttq", "m", "2/32", [{"seed": 0, "hard_top1": None, "run_dir": "x"}], 90.0, 10)
    with pytest.raises(FileNotFoundError, match="model_hard.pt does not exist"):
        load_export(tmp_path)


def _runs_with_exports(tmp_path, cell, values, exported):
    out = []
    for seed, top1 in enumerate(values):
        run_dir = tmp_path / cell / f"s{seed}"
        run_dir.mkdir(parents=True)
        torch.save(exported, run_dir / "model_hard.pt")
        out.append({"cell": cell, "seed": seed, "hard_top1": top1, "run_dir": str(run_dir)})
    return out


def test_scale_rows_compare_with_the_models_fp_cell_and_the_papers_drop(tmp_path):
    from qbench.paper import load_cells, load_tables
    from qbench.report.sanity import paper_relative_drop, sanity_rows

    ternary = _export([-0.5, 0.0, 0.5], [[0, 1, 2, 2]], [-0.5, 0.0, 0.5], [[1, 1]])
    records = [{"cell": "alexnet_fp", "seed": 0, "hard_top1": 88.0, "run_dir": "unused"}]
    records += _runs_with_exports(tmp_path, "alexnet_w2a32_ttq", [20.1, 9.3, 20.0], ternary)
    records += _runs_with_exports(tmp_path, "alexnet_w2a32_twn", [84.0, 85.0, 83.5], ternary)
    records += _runs_with_exports(tmp_path, "resnet18_w2a32_ttq", [80.0], ternary)  # no resnet18_fp: left out
    rows = {r.cell: r for r in sanity_rows(records, num_classes=10)}
    assert set(rows) == {"alexnet_w2a32_ttq", "alexnet_w2a32_twn"}
    ttq, twn = rows["alexnet_w2a32_ttq"], rows["alexnet_w2a32_twn"]
    assert ttq.collapsed_seeds == [0, 1, 2] and ttq.harness_finding  # threshold 10 + 0.25 * 78 = 29.5
    assert not twn.harness_finding and twn.levels_expected == 3 and twn.levels_used == 3
    table = load_tables()["table1"]
    fp = next(r for r in table["rows"] if r["key"] == "fp")["cells"]["w32a32"]["top1"]
    cited = next(r for r in table["rows"] if r["key"] == "ttq")["cells"]["w2a32"]["top1"]
    assert ttq.paper_relative_drop == pytest.approx(1 - cited / fp)
    assert paper_relative_drop(load_cells()["alexnet_w2a32_lsq"]) is None  # not cited by the paper


def test_command_line_writes_the_table_and_refuses_bad_input(tmp_path):
    import pandas as pd
    from qbench.report.sanity import main

    ternary = _export([-0.5, 0.0, 0.5], [[0, 1, 2, 2]], [-0.5, 0.0, 0.5], [[1, 1]])
    records = [{"cell": "alexnet_fp", "seed": 0, "hard_top1": 88.0, "run_dir": "unused"}]
    records += _runs_with_exports(tmp_path, "alexnet_w2a32_ttq", [20.1, 60.0], ternary)
    pd.DataFrame.from_records(records).to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "sanity.md"
    assert main(["--runs", str(tmp_path / "runs.csv"), "--num-classes", "10", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| Cell |") and lines[2].startswith("| alexnet_w2a32_ttq | ttq | 2/32 | 20.1 / 60.0 |")
    pd.DataFrame({"cell": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["--runs", str(tmp_path / "bad.csv"), "--num-classes", "10", "--out", str(out)]) == 2


def _runs_with_losses(tmp_path, losses_per_seed, top1=40.0):
    out = []
    for seed, losses in enumerate(losses_per_seed):
        run_dir = tmp_path / f"s{seed}"
        run_dir.mkdir()
        history = [{"epoch": i + 1, "train_loss": x} for i, x in enumerate(losses)]
        (run_dir / "metrics.json").write_text(json.dumps({"history": history}))
        out.append({"seed": seed, "hard_top1": top1, "run_dir": str(run_dir)})
    return out


def test_training_curve_names_a_bad_start_and_a_schedule_too_short(tmp_path):
    """The mini DoReFa AlexNet 1/1 curve: 6.9 at epoch 1 (ln 10 = 2.30), still -32 % at the end."""
    runs = _runs_with_losses(tmp_path, [[6.81, 5.81, 3.87], [7.01, 6.33, 4.35]])
    row = sanity_row("alexnet_w1a1_dorefa", "dorefa", "alexnet_bn", "1/1", runs, fp_top1=76.8, num_classes=10,
                     read_export=None)
    assert row.loss_curve == pytest.approx([6.91, 6.07, 4.11])
    assert row.harness_finding and len(row.findings) == 2
    assert "epoch-1 training loss 6.91 above a uniform guess's 2.30" in row.findings[0]
    assert "6.07 -> 4.11" in row.findings[1]
    assert sanity_grid([row])[1][9] == "6.91 -> 4.11"


@pytest.mark.parametrize("losses, findings", [
    ([2.29, 2.0, 1.6], 0),    # below ln 10 at the start, last fall 20 % < 25 %
    ([2.31, 2.0, 1.9], 1),    # just above a uniform guess's loss
    ([1.0, 0.8, 0.59], 1),    # last fall 26 %
    ([0.5], 0),               # one epoch: no fall to judge
])
def test_curve_findings_at_their_boundaries(tmp_path, losses, findings):
    row = sanity_row("c", "dorefa", "m", "1/1", _runs_with_losses(tmp_path, [losses]), fp_top1=80.0, num_classes=10,
                     read_export=None)
    assert len(row.findings) == findings


def test_runs_without_a_recorded_loss_give_no_curve(tmp_path):
    runs = [{"seed": 0, "hard_top1": 80.0, "run_dir": str(tmp_path / "absent")}]
    row = sanity_row("c", "ttq", "m", "2/32", runs, fp_top1=80.0, num_classes=10, read_export=None)
    assert row.loss_curve == [] and not row.findings and sanity_grid([row])[1][9] == "-"
