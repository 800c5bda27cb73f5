"""Dry runs of the workflow at every scale, lint, and configs that must fail before any job."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, job_counts, snakemake, write_yaml
from qbench.paper import load_cells

CLASSIFY = [c for c in load_cells().values() if c.task == "classify"]


def test_smoke_dag(tmp_path):
    res = snakemake(tmp_path, "-n", "reproduce_tables", "--config", "scale=smoke")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["train_fp"] == 2
    assert counts["train_quant"] == 5  # three of the paper's method, two baselines
    assert counts["render_config"] == 7 and counts["evaluate"] == 7
    for rule in ("prepare_data", "aggregate", "tables", "figures", "report", "write_plan"):
        assert counts[rule] == 1, rule
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


def _fashion_dir(tmp_path: Path) -> Path:
    """Empty stand-ins of the four Fashion-MNIST idx files (a dry run only checks they exist)."""
    d = tmp_path / "fmnist"
    d.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (d / f"{stem}.gz").write_bytes(b"")
    return d


def test_mini_is_the_default_and_has_every_cell(tmp_path):
    site = write_yaml(tmp_path / "site.yaml", {"train": {"data": {"root": str(_fashion_dir(tmp_path))}}})
    res = snakemake(tmp_path, "-n", "reproduce_tables", "--configfile", str(site))
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    n_fp = sum(c.kind == "fp" for c in CLASSIFY)
    n_quant = sum(c.kind == "quant" and not c.is_baseline for c in CLASSIFY)
    assert n_fp == 3 and n_quant >= 26
    n_quant += 19  # the baselines mini selects (workflows/config/mini.yaml, baselines)
    # detection (Table 4) is on at mini: its FP model and three quantized cells
    assert counts["train_fp"] == n_fp + 1          # one FP seed
    import yaml
    extra = yaml.safe_load((ROOT / "workflows" / "config" / "mini.yaml").read_text()).get("cell_seeds") or {}
    # three seeds, more for the cells in cell_seeds
    assert counts["train_quant"] == 3 * (n_quant + 3) + sum(len(v) - 3 for v in extra.values())
    assert counts["claims"] == 1
    assert "results/mini/" in res.stdout
    assert "ssd_w3pm4a8" in res.stdout


def test_paper_dag_uses_torchrun_and_imported_weights(tmp_path):
    data = tmp_path / "imagenet"
    data.mkdir()
    weights = {}
    for arch in ("resnet18", "resnet50"):
        weights[arch] = str(tmp_path / f"{arch}.pth")
        Path(weights[arch]).write_bytes(b"x")
    vgg16 = tmp_path / "vgg16.pth"
    vgg16.write_bytes(b"x")
    site = {"train": {"data": {"root": str(data)}}, "fp_weights": weights,
            "detection": {"phases": {"fp": {"detect": {"backbone_checkpoint": str(tmp_path / "none.pth")}}}}}
    res = snakemake(tmp_path, "-n", "reproduce_tables", "--config", "scale=paper",
                    "--configfile", str(write_yaml(tmp_path / "bad.yaml", site)))
    # the SSD's ImageNet VGG16 is checked before any job starts, naming the key
    assert res.returncode != 0
    assert "detection.phases.fp.detect.backbone_checkpoint" in res.stdout + res.stderr
    site["detection"]["phases"]["fp"]["detect"]["backbone_checkpoint"] = str(vgg16)
    site = write_yaml(tmp_path / "site.yaml", site)
    res = snakemake(tmp_path, "-n", "-p", "reproduce_tables", "--config", "scale=paper", "--configfile", str(site))
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    # classification cells plus Table 4 (SSD FP and three quantized cells), one seed each
    assert counts["train_fp"] == 3 + 1
    assert counts["train_quant"] == sum(c.kind == "quant" for c in CLASSIFY) + 3
    assert "torch.distributed.run --standalone --nproc_per_node=4 -m qbench.cli train" in res.stdout
    assert "results/paper/" in res.stdout
    # ResNet cells fine-tune the imported weights directly
    assert f"--out results/paper/runs/resnet18_w2a32/s0" in res.stdout
    from qbench.workflow import plan

    cfg = plan.merge_scale_file({"scale": "paper", "fp_weights": weights}, ROOT / "workflows" / "config")
    rc = plan.run_config(cfg, load_cells()["resnet18_w2a32"], 0)
    assert rc["start"]["checkpoint"] == weights["resnet18"]
    rc = plan.run_config(cfg, load_cells()["alexnet_w2a32"], 0)
    assert rc["start"]["checkpoint"] == "results/paper/runs/alexnet_fp/s0/checkpoint.pt"


def test_detection_switch_adds_table4_cells(tmp_path):
    cfg = write_yaml(tmp_path / "det.yaml", {"detection": {"enabled": True}})
    res = snakemake(tmp_path, "-n", "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "ssd_w3pm4a8" not in res.stdout  # smoke restricts cells; detection cells only when listed
    cfg = write_yaml(tmp_path / "det2.yaml", {"detection": {"enabled": True}, "cells": {"only": ["ssd_w3pm4a8"]}})
    res = snakemake(tmp_path, "-n", "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["train_quant"] == 1 and counts["train_fp"] == 1  # ssd_w3pm4a8 and ssd_fp


@pytest.mark.parametrize("scale", ["smoke", "mini", "gpu", "paper"])
def test_detection_run_configs_follow_docs(scale):
    """Table 4 cells: detection base config, W3/A8 in the joint phase, W/A32 in the weights phase."""
    from qbench.workflow import plan

    cfg = plan.merge_scale_file({"scale": scale, "detection": {"enabled": True}}, ROOT / "workflows" / "config")
    cells = load_cells()
    a8 = plan.run_config(cfg, cells["ssd_w3pm4a8"], 0)
    assert a8["task"] == "detect" and a8["model"]["arch"] == "ssd300_vgg16" and a8["model"]["in_channels"] == 3
    assert a8["quant"]["activations"] == "act_linear8" and a8["epochs"].get("joint", 0) >= 1
    assert a8["epochs"].get("weights", 0) == 0 and a8["temperature"]["slope"] == 10
    assert a8["data"]["dataset"] in ("voc", "fmnist_voc") and "detect" in a8
    w2 = plan.run_config(cfg, cells["ssd_w2a32"], 0)
    assert w2["epochs"].get("weights", 0) >= 1 and w2["epochs"].get("joint", 0) == 0
    assert w2["start"]["checkpoint"].endswith("runs/ssd_fp/s0/checkpoint.pt")
    fp = plan.run_config(cfg, cells["ssd_fp"], 0)
    assert fp["epochs"]["fp"] >= 1 and fp["quant"]["weights"] is None


def test_cell_seeds_add_runs_for_that_cell_only():
    from qbench.workflow import plan

    cfg = plan.merge_scale_file({"scale": "mini"}, ROOT / "workflows" / "config")
    cells = load_cells()
    cfg = {**cfg, "cell_seeds": {"resnet18_w1a32": list(cfg["seeds"]) + [7]}}
    assert plan.seeds_of(cfg, cells["resnet18_w1a32"]) == list(cfg["seeds"]) + [7]
    assert plan.seeds_of(cfg, cells["resnet18_w2a32"]) == list(cfg["seeds"])
    assert plan.seeds_of(cfg, cells["resnet18_fp"]) == list(cfg["fp_seeds"])


def test_lint(tmp_path):
    res = snakemake(tmp_path, "--lint", "--config", "scale=smoke")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("override,key", [
    ({"cell_overrides": {"resnet18_w3pm4a32": {"model": {"arch": "vgg11"}}}},
     "cell_overrides.resnet18_w3pm4a32.model.arch"),
    ({"models": {"lenet": {}}}, "models.lenet"),
    ({"cell_overrides": {"alexnet_w2a32": {"quant": {"weights": "act_2bit"}}}},
     "cell_overrides.alexnet_w2a32.quant.weights"),
    ({"cell_overrides": {"alexnet_w1a1": {"quant": {"activations": "ternary"}}}},
     "cell_overrides.alexnet_w1a1.quant.activations"),
    ({"cell_overrides": {"alexnet_w2a32": {"quant": {"weights": "7bit"}}}},
     "cell_overrides.alexnet_w2a32.quant.weights"),
    ({"train": {"data": {"root": "/nonexistent/fashion"}}}, "train.data.root"),
    ({"train": {"data": {"dataset": "fashion_mnist", "root": "/tmp"}}}, "train.data.root"),
    ({"train": {"data": {"dataset": "cifar10"}}}, "train.data.dataset"),
    ({"fp_weights": {"resnet18": "/nonexistent/resnet18.pth"}}, "fp_weights.resnet18"),
    ({"cells": {"only": ["alexnet_w9a9"]}}, "cells.only"),
    ({"cell_seeds": {"resnet18_w9a32": [0, 1, 2]}}, "cell_seeds.resnet18_w9a32"),
    ({"cell_seeds": {"resnet18_w1a32": [5, 6]}}, "cell_seeds.resnet18_w1a32"),
])
def test_bad_config_fails_before_any_job(tmp_path, override, key):
    cfg = write_yaml(tmp_path / "bad.yaml", override)
    res = snakemake(tmp_path, "-n", "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert key in out, out[-2000:]
    assert "Job stats" not in out
    assert not (tmp_path / "results").exists()


def test_schema_rejects_unknown_top_level_key(tmp_path):
    cfg = write_yaml(tmp_path / "bad.yaml", {"epochz": 3})
    res = snakemake(tmp_path, "-n", "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode != 0
    assert "epochz" in res.stdout + res.stderr


def test_scale_files_are_valid_yaml():
    import yaml

    for scale in ("smoke", "mini", "gpu", "paper"):
        cfg = yaml.safe_load((ROOT / "workflows" / "config" / f"{scale}.yaml").read_text())
        assert cfg["scale"] == scale
        if cfg.get("extends"):  # gpu: mini's file with its own sizing
            cfg = {**yaml.safe_load((ROOT / "workflows" / "config" / f"{cfg['extends']}.yaml").read_text()), **cfg}
        # deviations are generated (qbench.paper.recipe), never written into a scale file
        assert "deviations" not in cfg, scale
        # Table 4 runs at mini and paper; smoke keeps to its few-minute budget without it
        assert cfg["detection"]["enabled"] is (scale != "smoke")


def test_bad_trainer_key_inside_phases_stops_the_dry_run_with_exit_2(tmp_path):
    """A trainer key error inside `phases:` fails at plan time, before any job, naming the key."""
    res = snakemake(tmp_path, "-n", "reproduce_tables", "--config", "scale=smoke",
                    "phases={weights: {optim: {lrr: 0.1}}}")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.startswith("invalid pipeline config:")]
    assert lines == ["invalid pipeline config: config key 'phases.weights.optim.lrr': unknown key (known: gamma, "
                     "grad_clip, lr, milestones, momentum, weight_decay) (run config of cell alexnet_w2a32)"]
    assert "Job stats" not in res.stdout + res.stderr
