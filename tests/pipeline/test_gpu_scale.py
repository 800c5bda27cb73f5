"""The gpu scale: mini's cells and recipes at one GPU's sizing (workflows/config/gpu.yaml,
`extends: mini`). No test needs a GPU: it is planned here and one of its cells trains on the
CPU for one epoch on a few images."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import job_counts, snakemake, write_yaml
from qbench.workflow import plan

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "workflows" / "config"
# what the gpu scale sets itself; everything else is mini's
SIZING_KEYS = {"scale", "description", "seeds", "cell_seeds", "train", "resources"}


def test_gpu_is_mini_at_another_sizing():
    mini = plan.merge_scale_file({"scale": "mini"}, CONFIG_DIR)
    gpu = plan.merge_scale_file({"scale": "gpu"}, CONFIG_DIR)
    assert "extends" not in gpu
    for key in set(mini) | set(gpu):
        if key not in SIZING_KEYS:
            assert gpu.get(key) == mini.get(key), key
    assert gpu["phases"] == mini["phases"] and gpu["detection"] == mini["detection"]
    assert gpu["train"]["device"] == "cuda" and gpu["train"]["model"]["width"] == 1.0
    assert gpu["train"]["data"]["train_size"] is None and gpu["train"]["data"]["test_size"] is None
    # the recipe (batch, lr, temperatures, act_lr_mult) stays mini's
    for key in ("optim", "temperature"):
        assert gpu["train"][key] == mini["train"][key]
    assert gpu["train"]["data"]["batch_size"] == mini["train"]["data"]["batch_size"]
    cells = plan.enabled_cells(gpu)
    assert {c.id for c in cells} == {c.id for c in plan.enabled_cells(mini)}
    quantized = [c for c in cells if c.kind != "fp"]
    assert quantized and all(plan.seeds_of(gpu, c) == [0, 1, 2, 3, 4] for c in quantized)


def test_gpu_dag_has_every_mini_job_at_five_seeds(tmp_path):
    fmnist = tmp_path / "fmnist"
    fmnist.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (fmnist / f"{stem}.gz").write_bytes(b"")
    site = write_yaml(tmp_path / "site.yaml", {"train": {"data": {"root": str(fmnist)}}})
    res = snakemake(tmp_path, "-n", "reproduce_tables", "--config", "scale=gpu", "--configfile", str(site))
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    gpu = plan.merge_scale_file({"scale": "gpu"}, CONFIG_DIR)
    quantized = [c for c in plan.enabled_cells(gpu) if c.kind != "fp"]
    assert counts["train_quant"] == 5 * len(quantized)
    assert counts["train_fp"] == len(plan.enabled_cells(gpu)) - len(quantized)
    assert "results/gpu/" in res.stdout and "results/mini/" not in res.stdout


def test_a_gpu_cell_trains_on_the_cpu(tmp_path):
    """ResNet-18 W1/A2 as the gpu scale renders it, on the CPU for one epoch per phase on 64
    synthetic images (FP first, as the pipeline orders it)."""
    from qbench.train import Config, run

    gpu = plan.merge_scale_file({"scale": "gpu"}, CONFIG_DIR)
    cells = plan.load_cells()
    small = {"device": "cpu", "data": {"dataset": "fake", "train_size": 64, "test_size": 32, "workers": 0,
                                       "epoch_test_stride": 1},
             "quant": {"calib_samples": 32, "bn_reestimate_samples": 32}}
    fp_cfg = plan.deep_merge(plan.run_config(gpu, cells["resnet18_fp"], 0), {**small, "epochs": {"fp": 1}})
    run(Config.from_dict(fp_cfg), tmp_path / "fp", quiet=True)
    rc = plan.run_config(gpu, cells["resnet18_w1a2"], 0)
    assert rc["device"] == "cuda" and rc["model"]["width"] == 1.0 and rc["quant"]["options"]["act_lr_mult"] == 0.01
    rc = plan.deep_merge(rc, {**small, "start": {"mode": "pretrained", "checkpoint": str(tmp_path / "fp" / "checkpoint.pt")}})
    metrics = run(Config.from_dict(rc), tmp_path / "q", quiet=True)
    assert [h["phase"] for h in metrics["history"]] == ["weights", "activations", "joint"]
    assert metrics["final"]["hard_top1"] is not None


@pytest.mark.parametrize("text, key", [("extends: nowhere\nscale: x\n", "extends"),
                                       ("extends: loop\nscale: loop\n", "cycle")])
def test_bad_extends_fails_with_one_line(tmp_path, text, key):
    (tmp_path / "loop.yaml").write_text(text if key == "cycle" else "scale: loop\n")
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(plan.PipelineConfigError) as err:
        plan.merge_scale_file({"scale": "loop" if key == "cycle" else "x"}, tmp_path)
    assert key in str(err.value) and "\n" not in str(err.value)
