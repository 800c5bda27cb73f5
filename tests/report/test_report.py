"""Tables, figures, claims and the PDF report from synthetic run directories (no snakemake)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qbench.paper import load_cells
from qbench.report import aggregate, claims, figures, latex, tables
from qbench.workflow import plan
from qbench.report.collect import RunError, collect

ROOT = Path(__file__).resolve().parents[2]
CELLS = ["alexnet_fp", "alexnet_w2a32", "alexnet_w2a32_linear", "alexnet_w1a1", "alexnet_w2a2",
         "resnet18_fp", "resnet18_w3pm4a32", "resnet18_w3pm4a32_scratch",
         # baselines: placed in a cited row (TWN, DoReFa 1/1), not cited by the paper (LSQ), and one
         # beside a paper cell of its setting that this scale does not run (ResNet-18 LQ-Net 2/32)
         "alexnet_w2a32_twn", "alexnet_w2a32_lsq", "alexnet_w1a1_dorefa", "resnet18_w2a32_lqnet"]
ONE_SEED = "alexnet_w2a32_lsq"
# planned, but without a completed run
PLANNED_NOT_RUN = ["alexnet_w2a32_ttq"]


def _fake_train():
    spec = importlib.util.spec_from_file_location("fake_train", ROOT / "tests" / "pipeline" / "fake_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Fake runs of a few cells (2 seeds), then records, aggregate, tables, figures, report."""
    wd = tmp_path_factory.mktemp("report")
    cfg = plan.merge_scale_file({"scale": "smoke"}, ROOT / "workflows" / "config")
    cfg.update({"seeds": [0, 1], "cells": {"only": CELLS, "skip": []}, "fp_seeds": [0],
                "baselines": {"enabled": True}, "cell_seeds": {ONE_SEED: [0]}})
    cfg["phases"]["weights"]["epochs"]["weights"] = 3  # a training curve for the Fig. 4 claim
    cfg.setdefault("cell_overrides", {})
    cells = plan.enabled_cells(cfg)
    fake = _fake_train()
    records = []
    for cell in cells:
        for seed in plan.seeds_of(cfg, cell):
            run = wd / "runs" / cell.id / f"s{seed}"
            conf = wd / "configs" / f"{cell.id}_s{seed}.yaml"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(plan.dump_yaml(plan.run_config(cfg, cell, seed)))
            assert fake.main([str(conf), "--out", str(run), "--quiet"]) == 0
            records.append(collect(run, cell.id, seed))
    runs, cells_df = aggregate.aggregate(records)
    plan_data = {"scale": "smoke", "description": "test & check_100% {x}", "seeds": [0, 1], "fp_seeds": [0],
                 "detection_enabled": False, "cells": [c.id for c in cells] + PLANNED_NOT_RUN,
                 "deviations": [{"id": "smoke_data", "text": "Data: $fake$ with under_scores & 50% #less",
                                 "differences": ["data.dataset: paper imagenet, here fake (all cells)"]}]}
    (wd / "plan.json").write_text(json.dumps(plan_data))
    runs.to_csv(wd / "runs.csv", index=False)
    cells_df.to_csv(wd / "cells.csv", index=False)
    tables.write_all(plan_data, cells_df, wd / "tables", runs)
    figures.write_all(plan_data, runs, cells_df, wd / "figures")
    bench = wd / "benchmarks" / "train"
    bench.mkdir(parents=True)
    for i, name in enumerate(("a", "b")):
        (bench / f"{name}.tsv").write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                                           f"{10 + i}\t0:00:10\t100\t1\t1\t1\t0\t0\t1\t{8 + i}\n")
    (wd / "benchmarks" / "tables.tsv").write_text("s\tcpu_time\n1.5\t1.0\n")
    assert claims.main(["--plan", str(wd / "plan.json"), "--runs", str(wd / "runs.csv"),
                        "--out", str(wd / "claims.csv")]) == 0
    assert latex.main(["--plan", str(wd / "plan.json"), "--cells", str(wd / "cells.csv"), "--runs",
                       str(wd / "runs.csv"), "--claims", str(wd / "claims.csv"), "--tables-dir", str(wd / "tables"), "--figures-dir",
                       str(wd / "figures"), "--benchmarks-dir", str(wd / "benchmarks"), "--tex",
                       str(wd / "report.tex"), "--pdf", str(wd / "report.pdf")]) == 0
    return wd, plan_data, runs, cells_df


def test_latex_escape():
    assert tables.latex_escape("a_b & 50% #1 {x} $y ~ ^") == (
        r"a\_b \& 50\% \#1 \{x\} \$y \textasciitilde{} \textasciicircum{}")
    assert tables.latex_escape("±Δ") == r"$\pm$$\Delta$"


def test_aggregate_mean_std(built):
    _, _, runs, cells_df = built
    row = cells_df.set_index("cell").loc["resnet18_w3pm4a32"]
    vals = runs[runs.cell == "resnet18_w3pm4a32"]["hard_top1"]
    assert row["n_seeds"] == 2
    assert row["hard_top1_mean"] == pytest.approx(vals.mean())
    assert row["hard_top1_std"] == pytest.approx(vals.std(ddof=1))
    assert pd.isna(cells_df.set_index("cell").loc["alexnet_fp"]["hard_top1_std"])  # one FP seed


def test_tables_show_paper_and_reproduced(built):
    wd, *_ = built
    long = pd.read_csv(wd / "tables" / "all_cells.csv")
    r = long[(long.table == "table5") & (long.row == "linear") & (long.column == "w2a32") & (long.metric == "top1")].iloc[0]
    assert r.paper == 60.6 and r.status == "reproduced" and r.cell == "alexnet_w2a32_linear"
    notrun = long[long.status.str.startswith("not run")]
    assert len(notrun) and notrun["repro_mean"].isna().all()
    cited = long[long.status == "cited"]
    assert cited["repro_mean"].isna().all()
    md = (wd / "tables" / "table1.md").read_text()
    assert "LQ-Net [31]" in md and "60.5/82.7" in md and "not run*" in md and "Ours: reproduced" in md
    assert "not run (not in this scale's cells)" in md
    t4 = (wd / "tables" / "table4.md").read_text()
    assert "detection disabled at this scale" in t4
    for i in range(1, 9):
        for ext in ("csv", "md", "tex"):
            assert (wd / "tables" / f"table{i}.{ext}").stat().st_size > 100
    tex = (wd / "tables" / "table1.tex").read_text()
    assert r"\toprule" in tex and r"\setcounter{table}{0}" in tex and r"accuracies (\%)" in tex
    assert r"3($\pm$2)/32" in tex


def test_table8_measured_and_analytic(built):
    wd, _, _, cells_df = built
    long = pd.read_csv(wd / "tables" / "all_cells.csv")
    t8 = long[long.table == "table8"].set_index(["row", "column"])
    by = cells_df.set_index("cell")
    expect = by.loc["alexnet_w2a2", "quantized_bits_mean"] / by.loc["alexnet_w1a1", "quantized_bits_mean"]
    assert t8.loc[("space_measured", "ternary"), "repro_mean"] == pytest.approx(expect)
    assert t8.loc[("space_measured", "binary"), "repro_mean"] == pytest.approx(1.0)
    assert t8.loc[("time_bitops", "ternary"), "status"] == "analytic"
    assert t8.loc[("time", "fp"), "paper"] == 45.0
    md = (wd / "tables" / "table8.md").read_text()
    assert "FPGA timings cannot be measured" in md


def test_claims_csv_columns_and_vocabulary(built):
    wd, _, runs, _ = built
    rows = claims.read_claims(wd / "claims.csv")
    assert list(rows.columns) == claims.COLUMNS
    assert set(rows["verdict"]) <= set(claims.VERDICTS)
    assert set(rows["claim"]) == set(claims.load_claims())
    by = rows.set_index("comparison")
    # cells not in this scale: not run, no interval
    shared = by.loc["alexnet_w2a32 - alexnet_w2a32_shared"]
    assert shared["verdict"] == "not run" and pd.isna(shared["ci_low"])
    # a comparison that ran: its interval holds its effect, which is the difference of the means
    lin = by.loc["alexnet_w2a32 - alexnet_w2a32_linear"]
    assert lin["ci_low"] < lin["ours_effect"] < lin["ci_high"] and lin["test_images"] == 32
    mean = runs.groupby("cell")["hard_top1"].mean()
    assert lin["ours_effect"] == pytest.approx(mean["alexnet_w2a32"] - mean["alexnet_w2a32_linear"])
    assert lin["paper_effect"] == pytest.approx(60.9 - 60.6)
    # the verdict follows the interval, never the sign of the estimate alone
    for _, r in rows[rows["test"] == "superiority"].dropna(subset=["ci_low"]).iterrows():
        expect = "reproduced" if r["ci_low"] > 0 else "contradicted" if r["ci_high"] < 0 else "inconclusive"
        assert r["verdict"] == expect, r["comparison"]
        if expect == "inconclusive":
            assert r["decides_at"]
    gap = rows[rows["claim"] == "soft_hard_gap_closes"].iloc[0]
    assert gap["verdict"] != "not run" and "epoch 1" in gap["comparison"]


def test_claims_summary_rules():
    rows = pd.DataFrame({"claim": ["layerwise_beats_shared", "nonuniform_beats_linear", "nonuniform_beats_linear",
                                   "pretrained_beats_scratch"],
                         "verdict": ["not run", "reproduced", "inconclusive", "contradicted"]})
    summary = claims.summarize(rows).set_index("claim")["verdict"]
    assert summary["layerwise_beats_shared"] == "not run"
    assert summary["nonuniform_beats_linear"] == "inconclusive"
    assert summary["pretrained_beats_scratch"] == "contradicted"
    assert summary["w3_lossless"] == "not run"


def test_figures_written(built):
    wd, *_ = built
    for name in figures.FIGURES:
        assert (wd / "figures" / f"{name}.png").stat().st_size > 5_000
        assert (wd / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_stage_times(built):
    wd, *_ = built
    st = latex.stage_times(wd / "benchmarks").set_index("stage")
    assert st.loc["train", "jobs"] == 2 and st.loc["train", "wall_s"] == pytest.approx(21)
    assert st.loc["train", "cpu_s"] == pytest.approx(17)
    assert st.loc["tables", "wall_s"] == pytest.approx(1.5)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_report_pdf_renders_to_nonblank_pages(built, tmp_path):
    from PIL import Image

    wd, *_ = built
    tex = (wd / "report.tex").read_text()
    assert "under\\_scores" in tex and "50\\% \\#less" in tex
    assert tex.index("Verdicts") < tex.index("Deviations from the paper")  # the verdicts come first
    for section in ("Deviations from the paper", "The claims in detail", "Tables", "Figures", "time per stage"):
        assert section in tex
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(wd / "report.pdf"), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 5
    for page in pages:
        img = Image.open(page).convert("L")
        dark = int((np.asarray(img) < 128).sum())
        # text or drawings on every page: at 50 dpi a page with only its number has ~1 dark pixel,
        # one line of text ~90 (the line a long claims section pushes before a landscape table)
        assert dark > 40, page


def test_collect_rejects_incomplete_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunError):
        collect(run, "alexnet_w2a32", 0)
    (run / "metrics.json").write_text(json.dumps({"status": "running", "final": {}}))
    with pytest.raises(RunError, match="status"):
        collect(run, "alexnet_w2a32", 0)
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "final": {"hard_top1": 1.0}}))
    with pytest.raises(RunError, match="model_hard"):
        collect(run, "alexnet_w2a32", 0)
    with pytest.raises(RunError, match="predictions"):
        collect(run, "alexnet_fp", 0)
    (run / "predictions.npz").write_bytes(b"")
    assert collect(run, "alexnet_fp", 0)["hard_top1"] == 1.0


def test_run_config_precedence():
    cfg = plan.merge_scale_file({"scale": "mini", "cell_overrides": {"alexnet_w2a32": {"optim": {"lr": 0.5}}}},
                                ROOT / "workflows" / "config")
    cells = load_cells()
    rc = plan.run_config(cfg, cells["alexnet_w2a32"], 1)
    assert rc["optim"]["lr"] == 0.5 and rc["seed"] == 1 and rc["temperature"]["slope"] == 10
    assert rc["quant"] == {**rc["quant"], "weights": "ternary", "activations": None, "init": "kmeans"}
    assert rc["start"] == {"mode": "pretrained", "checkpoint": "results/mini/runs/alexnet_fp/s0/checkpoint.pt"}
    assert rc["epochs"]["weights"] == cfg["phases"]["weights"]["epochs"]["weights"]
    fp = plan.run_config(cfg, cells["resnet18_fp"], 0)
    assert fp["start"]["mode"] == "scratch" and fp["quant"]["weights"] is None
    assert fp["optim"]["weight_decay"] == cfg["models"]["resnet18"]["optim"]["weight_decay"]
    both = plan.run_config(cfg, cells["alexnet_w1a2"], 0)
    assert both["epochs"] == {**both["epochs"], **cfg["phases"]["both"]["epochs"]}
    assert yaml.safe_load(plan.dump_yaml(rc)) == rc
