"""End-to-end smoke runs of every model through the CLI, and what a run directory holds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from qbench.cli import main
from qbench.train.trainer import lr_at
from qbench.train.config import Config

METRIC_KEYS = {"task", "status", "final", "history", "wall_time_s", "images_per_s", "peak_memory_mb",
               "quant_report", "model_bits", "data_files"}
ROW_KEYS = {"epoch", "phase", "T", "lr", "train_loss", "train_top1", "hard_top1", "hard_top5",
            "soft_top1", "soft_top5", "test_images", "time_s"}


def _check_run_dir(out, quantized: bool) -> dict:
    for name in ("config.yaml", "env.json", "metrics.json", "checkpoint.pt", "train.log", "predictions.npz"):
        assert (out / name).is_file(), name
    assert (out / "model_hard.pt").is_file() == quantized
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS and metrics["status"] == "complete"
    assert set(metrics["final"]) == {"hard_top1", "hard_top5", "soft_top1", "soft_top5", "test_images",
                                    "evaluation_mismatch"}
    assert all(set(r) == ROW_KEYS for r in metrics["history"])
    assert [r["epoch"] for r in metrics["history"]] == list(range(1, len(metrics["history"]) + 1))
    assert metrics["final"]["hard_top1"] == metrics["history"][-1]["hard_top1"]
    assert 0 <= metrics["final"]["hard_top1"] <= metrics["final"]["hard_top5"] <= 100
    assert metrics["images_per_s"] > 0 and metrics["wall_time_s"] > 0
    # the per-image predictions reproduce the final and per-epoch accuracies exactly
    with np.load(out / "predictions.npz", allow_pickle=False) as pred:
        n = metrics["final"]["test_images"]
        assert pred["label"].shape == pred["hard"].shape == pred["soft"].shape == (n,)
        for mode in ("hard", "soft"):
            acc = 100.0 * (pred[mode] == pred["label"]).sum() / n
            assert acc == pytest.approx(metrics["final"][f"{mode}_top1"])
            curve = 100.0 * (pred[f"curve_{mode}"] == pred["curve_label"][None]).mean(axis=1)
            assert curve == pytest.approx([r[f"{mode}_top1"] for r in metrics["history"]])
        assert pred["curve_epoch"].tolist() == [r["epoch"] for r in metrics["history"]]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == len(metrics["history"])
    assert set(ckpt) >= {"model", "optimizer", "epoch", "rng", "history"}
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["seed"] == metrics_seed(out)
    return metrics


def metrics_seed(out) -> int:
    return yaml.safe_load((out / "config.yaml").read_text())["seed"]


# ResNet-50 quantizes weights only here: calibrating its 52 activation quantizers costs seconds,
# and the activation phases are covered by the two other models.
@pytest.mark.parametrize("arch, acts, epochs", [
    ("resnet18", "act_2bit", {"fp": 0, "weights": 1, "activations": 1, "joint": 1}),
    ("alexnet_bn", "act_2bit", {"fp": 0, "weights": 1, "activations": 1, "joint": 1}),
    ("resnet50", None, {"fp": 0, "weights": 1, "activations": 0, "joint": 1}),
])
@pytest.mark.slow
def test_fp_then_quantized_smoke(arch, acts, epochs, tmp_path, write_config):
    small = {"train_size": 16, "test_size": 16, "batch_size": 8}
    fp_cfg = write_config({"model": {"arch": arch, "in_channels": 3}, "data": small}, name="fp.yaml")
    fp_out = tmp_path / "fp"
    assert main(["train", str(fp_cfg), "--out", str(fp_out), "--quiet"]) == 0
    m = _check_run_dir(fp_out, quantized=False)
    assert m["history"][0]["T"] is None and m["quant_report"]["weight_layers"] == []
    assert m["model_bits"]["ratio"] == pytest.approx(1.0)

    q_cfg = write_config({
        "model": {"arch": arch, "in_channels": 3}, "data": small,
        "start": {"mode": "pretrained", "checkpoint": str(fp_out / "checkpoint.pt")},
        "quant": {"weights": "ternary", "activations": acts, "calib_samples": 8},
        "temperature": {"kind": "linear", "slope": 5.0},
        "optim": {"lr": 0.01, "milestones": [2]},
        "epochs": epochs}, name="q.yaml")
    q_out = tmp_path / "q"
    assert main(["train", str(q_cfg), "--out", str(q_out), "--quiet"]) == 0
    m = _check_run_dir(q_out, quantized=True)
    expected = [p for p in ("weights", "activations", "joint") for _ in range(epochs[p])]
    assert [r["phase"] for r in m["history"]] == expected
    assert (m["quant_report"]["activation_layers"] != []) == (acts is not None)
    # qbench.train.phases: the weights' T counts their weights and joint epochs (held while
    # fixed); the lr schedule restarts in each phase (milestone 2 of 3 falls past 1-epoch phases)
    trained = [sum(1 for q in expected[:i + 1] if q in ("weights", "joint")) for i in range(len(expected))]
    assert [r["T"] for r in m["history"]] == [5.0 * n for n in trained]
    assert [r["lr"] for r in m["history"]] == pytest.approx([0.01] * len(expected))
    layers = m["quant_report"]["weight_layers"]
    first_conv = "features.0" if arch == "alexnet_bn" else "conv1"
    last_fc = "classifier.6" if arch == "alexnet_bn" else "fc"
    assert layers and first_conv not in layers and last_fc not in layers
    assert m["model_bits"]["ratio"] > 5
    hard = torch.load(q_out / "model_hard.pt", weights_only=True)
    assert isinstance(hard, dict) and hard


def test_phases_freeze_what_the_paper_freezes(tmp_path, write_config, fp_checkpoint):
    """Phase 2 trains only activation quantizers: network and weight-quantizer params stay put."""
    from qbench import quant as Q
    from qbench.models import build_model, load_pretrained
    from qbench.train.phases import configure_phase

    model = build_model("resnet18", 4, 1)
    load_pretrained(model, fp_checkpoint)
    method = Q.quantize_(model, Q.QuantPolicy("ternary", "act_2bit"))
    act = {id(p) for q in Q.activation_quantizers(model).values() for p in q.parameters()}
    wq = {id(p) for q in Q.weight_quantizers(model).values() for p in q.parameters()}
    trained = {id(p) for p in configure_phase(model, "activations", method)}
    assert trained == act
    trained = {id(p) for p in configure_phase(model, "weights", method)}
    # Sec. 4.1: the weights phase trains the network's weights and the weight quantizers
    assert trained == {id(p) for p in model.parameters()} - act and wq <= trained
    assert all(not q.enabled for q in Q.activation_quantizers(model).values())
    trained = {id(p) for p in configure_phase(model, "joint", method)}
    assert trained == {id(p) for p in model.parameters()}


def test_lr_milestones_are_epoch_counts(smoke, merge):
    cfg = Config.from_dict(merge(smoke, {"optim": {"lr": 1.0, "milestones": [2, 4], "gamma": 0.1},
                                         "epochs": {"fp": 6}}))
    assert [lr_at(cfg, e) for e in range(1, 7)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_non_finite_loss_names_epoch_step_phase(tmp_path, write_config, fp_checkpoint, capsys):
    cfg = write_config({"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)},
                        "quant": {"weights": "ternary"}, "optim": {"lr": 1e38, "grad_clip": None},
                        "epochs": {"fp": 0, "weights": 2}})
    out = tmp_path / "nan"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "epoch 1, step" in err and "phase weights" in err
    assert not (out / "metrics.json").exists()


def test_imagenet_layout_end_to_end(tmp_path, write_config, tiny_imagenet):
    cfg = write_config({"model": {"num_classes": 3, "in_channels": 3},
                        "data": {"dataset": "imagenet", "root": str(tiny_imagenet), "image_size": 32,
                                 "train_size": None, "test_size": None, "batch_size": 4}})
    out = tmp_path / "in"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    _check_run_dir(out, quantized=False)


def test_finished_run_is_not_redone_and_other_config_refused(tmp_path, write_config, capsys):
    cfg = write_config()
    out = tmp_path / "r"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    before = (out / "metrics.json").read_text()
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert (out / "metrics.json").read_text() == before
    assert main(["train", str(cfg), "--out", str(out), "--quiet", "--set", "seed=1"]) == 2  # bad input: another run's directory
    assert "another config" in capsys.readouterr().err


def test_zero_epochs_evaluates_a_full_precision_checkpoint(tmp_path, write_config, fp_checkpoint):
    """FP rows built from imported weights (paper scale) only evaluate the checkpoint."""
    cfg = write_config({"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)},
                        "epochs": {"fp": 0}})
    out = tmp_path / "eval"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"] == [] and metrics["status"] == "complete"
    trained = torch.load(fp_checkpoint, weights_only=True)
    assert metrics["final"]["hard_top1"] == trained["history"][-1]["hard_top1"]
    assert metrics["final"]["soft_top1"] == metrics["final"]["hard_top1"]
    # a quantized run still needs epochs
    bad = write_config({"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)},
                        "quant": {"weights": "ternary"}, "epochs": {"fp": 0}}, name="bad.yaml")
    assert main(["train", str(bad), "--out", str(tmp_path / "bad"), "--quiet"]) == 2  # config error


@pytest.mark.parametrize("every_s, saved", [(0, [0, 1, 2, 3]), (3600, [3])])
def test_checkpoint_interval_skips_saves_but_not_the_last(every_s, saved, tmp_path, smoke, merge,
                                                          monkeypatch):
    """checkpoint_every_s: per-epoch saves only when due, the last epoch always (its checkpoint
    is what quantized cells start from); the metrics do not depend on it."""
    from qbench.train import run, trainer

    epochs = []
    real_save = trainer.io.save_torch

    def record(path, obj):
        if isinstance(obj, dict) and "epoch" in obj:
            epochs.append(obj["epoch"])
        real_save(path, obj)

    monkeypatch.setattr(trainer.io, "save_torch", record)
    cfg = Config.from_dict(merge(smoke, {"checkpoint_every_s": every_s, "epochs": {"fp": 3}}))
    metrics = run(cfg, tmp_path / "run", quiet=True)
    assert epochs == saved
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 3
    assert len(metrics["history"]) == 3


def _act_betas(out) -> dict[str, float]:
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state = state.get("model", state)
    return {k: float(v) for k, v in state.items() if k.endswith("input_quantizer.beta")}


def test_act_lr_mult_sets_the_activation_quantizers_step(tmp_path, write_config, fp_checkpoint):
    """quant.act_lr_mult reaches the optimizer: at 0 the activation quantizers' beta stays at its
    calibrated value however long they train; at 1 (the paper) the same phase moves it."""
    betas = {}
    for mult, epochs in ((0.0, 1), (0.0, 2), (1.0, 1)):
        cfg = write_config({"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)},
                            "quant": {"weights": "binary", "activations": "act_2bit", "calib_samples": 16,
                                      "act_lr_mult": mult},
                            "optim": {"lr": 0.05, "milestones": [9]},
                            "epochs": {"fp": 0, "activations": epochs}}, name=f"q{mult}_{epochs}.yaml")
        out = tmp_path / f"q{mult}_{epochs}"
        assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
        betas[mult, epochs] = _act_betas(out)
    frozen, longer, paper = betas[0.0, 1], betas[0.0, 2], betas[1.0, 1]
    assert frozen and frozen == longer
    assert frozen.keys() == paper.keys() and any(abs(paper[k] - frozen[k]) > 1e-6 for k in frozen)
    assert yaml.safe_load((tmp_path / "q0.0_1" / "config.yaml").read_text())["quant"]["options"]["act_lr_mult"] == 0.0


@pytest.mark.parametrize("bad", [-0.1, "fast", True, float("inf")])
def test_act_lr_mult_is_checked(bad, smoke, merge):
    from qbench.train.config import ConfigError

    with pytest.raises(ConfigError, match="quant.act_lr_mult"):
        Config.from_dict(merge(smoke, {"quant": {"weights": "binary", "act_lr_mult": bad}}))
