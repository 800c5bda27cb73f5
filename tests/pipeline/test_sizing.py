"""The sizing tool: its file is checked before work starts, and its table is the claims' control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qbench.io import save_arrays
from qbench.report.results import Results, comparison_interval
from qbench.workflow import sizing


def _runs(tmp_path, accuracy: dict[str, list[float]], images: int = 2000,
          soft: dict[str, float] | None = None) -> pd.DataFrame:
    """Runs of the cells with the given hard top-1 per seed; ``soft``: cell -> soft top-1 (else
    the soft network equals the hard one)."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, images)
    difficulty = rng.random(images)  # shared by all runs: paired on images
    rows = []
    for cell, per_seed in accuracy.items():
        for seed, acc in enumerate(per_seed):
            d = tmp_path / f"{cell}_s{seed}"
            d.mkdir()
            correct = difficulty < acc / 100 + rng.normal(0, 0.01)
            hard = np.where(correct, label, (label + 1) % 10)
            soft_pred = hard
            if soft and cell in soft:
                soft_pred = np.where(difficulty < soft[cell] / 100, label, (label + 1) % 10)
            save_arrays(d / "predictions.npz", {"hard": hard, "soft": soft_pred, "label": label})
            rows.append({"cell": cell, "seed": seed, "task": "classify", "run_dir": str(d)})
    return pd.DataFrame(rows)


def test_rows_give_the_claims_control_and_say_whether_it_is_visible(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sees = _runs(tmp_path / "a", {"resnet18_fp": [80.0], "resnet18_w1a32": [74.0, 75.0, 73.5],
                                  "resnet18_w3pm4a32": [79.5, 80.2, 79.8]})
    rows = sizing.sizing_rows("narrow", sees, ["resnet18"], 12.5)
    (row,) = rows
    iv = comparison_interval(Results(sees, 0), {"resnet18_fp": 1.0, "resnet18_w1a32": -1.0})[0]
    assert row["fp_minus_w1"] == f"{iv.effect:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]"
    assert row["control_visible"] == "yes" and row["fp_top1"] == pytest.approx(80.0, abs=1.5)
    blind = _runs(tmp_path / "b", {"resnet18_fp": [80.0], "resnet18_w1a32": [80.1, 79.8, 80.0],
                                   "resnet18_w3pm4a32": [80.0, 80.1, 79.9]})
    assert sizing.sizing_rows("today", blind, ["resnet18"], None)[0]["control_visible"] == "no"
    assert sizing.sizing_rows("x", blind, ["alexnet_bn"], None)[0]["control_visible"] == "not run"
    assert row["w1_minus_a1"] == "" and row["a1_soft_minus_hard"] is None  # no W+A cells run
    table = sizing.markdown(rows + sizing.sizing_rows("today", blind, ["resnet18"], None))
    assert table.count("\n") == 4 and "| narrow | resnet18 |" in table and "| 12.5 |" in table


def test_rows_give_the_activation_control_and_the_soft_hard_gap(tmp_path):
    runs = _runs(tmp_path, {"resnet18_fp": [85.0], "resnet18_w1a32": [83.0, 83.5, 82.8],
                            "resnet18_w3pm4a32": [84.8, 85.1, 84.9], "resnet18_w1a1": [20.0, 22.0, 18.0],
                            "resnet18_w1a2": [70.0, 71.0, 69.0]},
                 soft={"resnet18_w1a1": 78.0, "resnet18_w1a2": 80.0})
    (row,) = sizing.sizing_rows("narrow", runs, ["resnet18"], 3.0)
    iv = comparison_interval(Results(runs, 0), {"resnet18_w1a32": 1.0, "resnet18_w1a1": -1.0})[0]
    assert row["w1_minus_a1"] == f"{iv.effect:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]" and iv.effect > 55
    # the soft networks sit at 78 / 80 whatever the seed: the gap is soft minus the hard mean
    assert row["a1_soft_minus_hard"] == pytest.approx(78.0 - 20.0, abs=3.0)
    assert row["a2_soft_minus_hard"] == pytest.approx(80.0 - 70.0, abs=3.0)
    assert sizing.soft_minus_hard(Results(runs, 0), "resnet18_w1a32") == 0.0
    line = sizing.markdown([row]).splitlines()[2]
    assert f"| {row['a1_soft_minus_hard']:+.1f} | {row['a2_soft_minus_hard']:+.1f} | 3.0 |" in line


def test_overrides_run_only_the_control_cells_of_each_model():
    spec = {"base": "mini", "models": ["resnet18", "alexnet_bn"], "seeds": [0, 1, 2],
            "sizings": {"narrow": {"train": {"model": {"width": 0.25}}, "detection": {"enabled": True}}}}
    over = sizing.overrides(spec, "narrow")
    assert over["cells"]["only"] == ["resnet18_fp", "resnet18_w1a32", "resnet18_w3pm4a32", "resnet18_w1a1",
                                     "resnet18_w1a2", "alexnet_fp", "alexnet_w1a32", "alexnet_w3pm4a32",
                                     "alexnet_w1a1", "alexnet_w1a2"]
    assert over["train"] == {"model": {"width": 0.25}} and over["detection"] == {"enabled": True}
    assert over["fp_cache"] is None and over["seeds"] == [0, 1, 2]
    # mini's six ResNet-18 seeds are replaced, so both models' controls cost alike; FP stays on fp_seeds
    assert over["cell_seeds"] == {c: [0, 1, 2] for c in over["cells"]["only"] if not c.endswith("_fp")}


@pytest.mark.parametrize("text, key", [
    ("base: mini\nmodels: [resnet18]\nseeds: [0, 1]\n", "sizings"),
    ("base: mini\nmodels: [vgg]\nseeds: [0, 1]\nsizings: {a: {}}\n", "models"),
    ("base: mini\nmodels: [resnet18]\nseeds: [0]\nsizings: {a: {}}\n", "seeds"),
    ("base: mini\nmodels: [resnet18]\nseeds: [0, 1]\nsizings: {'a b': {}}\n", "sizings.a b"),
])
def test_bad_sizing_files_fail_before_work_with_one_line(tmp_path, capsys, text, key):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert sizing.main([str(path), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and key in err and not (tmp_path / "w").exists()


def test_run_directories_are_read_from_the_sizings_pipeline_directory(tmp_path, monkeypatch):
    """runs.csv names run directories relative to the pipeline's directory; the tool runs elsewhere."""
    wd = tmp_path / "w025"
    (wd / "results/mini/runs/resnet18_fp/s0").mkdir(parents=True)
    (wd / "results/mini/aggregate").mkdir(parents=True)
    csv = wd / "results/mini/aggregate/runs.csv"
    pd.DataFrame([{"cell": "resnet18_fp", "seed": 0, "run_dir": "results/mini/runs/resnet18_fp/s0"}]).to_csv(csv)
    monkeypatch.chdir(tmp_path)
    runs = sizing.read_runs(csv, wd)
    assert runs["run_dir"].tolist() == [str(wd / "results/mini/runs/resnet18_fp/s0")]
    assert all(Path(d).is_dir() for d in runs["run_dir"])


def test_cpu_minutes_count_the_sizings_own_runs(tmp_path):
    bench = tmp_path / "benchmarks" / "train"
    bench.mkdir(parents=True)
    for name, cpu in (("resnet18_w1a32_s0", 60.0), ("resnet18_w1a32_s5", 600.0), ("resnet18_fp_s0", 120.0)):
        (bench / f"{name}.tsv").write_text(f"s\tcpu_time\n1\t{cpu}\n")
    runs = pd.DataFrame({"cell": ["resnet18_w1a32", "resnet18_fp"], "seed": [0, 0]})
    assert sizing.cpu_minutes(tmp_path, runs) == pytest.approx(3.0)  # s5 ran under an earlier plan
    assert sizing.cpu_minutes(tmp_path) == pytest.approx(13.0)
