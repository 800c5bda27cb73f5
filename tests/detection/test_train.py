"""Training through ``run_from_config``: T hook, phases, parameter-wise lrs, metrics, resume."""

import json

import pytest
import torch

from qbench import run_files
from qbench.detection.config import DetectRunConfig


def _quant_cfg(cfg, data_root):
    # act_2bit keeps calibration fast (k-means into 256 clusters for act_linear8 takes ~10 s
    # per layer); placement and training paths are the same for every activation level set
    cfg["quant"].update(weights="ternary", activations="act_2bit")
    cfg["epochs"] = {"fp": 0, "weights": 1, "activations": 0, "joint": 1}
    cfg["optim"].update(lr=1e-2, milestones=[1], gamma=0.5)
    cfg["detect"]["lr_other"] = 0.0  # non-quantized parameters must not move at all
    return cfg


def test_quantized_training_step(tiny_config, tmp_path, mmdet_stack):
    from qbench.detection.model import build_ssd
    from qbench.detection.runner import run_from_config

    cfg = _quant_cfg(tiny_config, None)
    out = tmp_path / "run"
    metrics = run_from_config(cfg, out, quiet=True)

    # the epoch plan (qbench.train.phases): weight T = 10 x the weights' epochs; phases weights
    # then joint; the lr schedule restarts in each 1-epoch phase (milestone 1 of 2 compresses
    # past the phase's end)
    hist = metrics["history"]
    assert [r["T"] for r in hist] == [10.0, 20.0]
    assert [r["phase"] for r in hist] == ["weights", "joint"]
    assert [r["lr"] for r in hist] == pytest.approx([1e-2, 1e-2])
    assert all(r["train_loss"] > 0 and r["hard_map"] is not None for r in hist)
    assert set(metrics["final"]) == {"hard_map", "soft_map"}
    assert metrics["final"]["hard_map"] == hist[-1]["hard_map"]
    assert metrics["status"] == "complete" and metrics["task"] == "detect"
    assert len(metrics["quant_report"]["weight_layers"]) == 13
    assert metrics["model_bits"]["ratio"] > 1
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for name in ("config.yaml", "env.json", "train.log", "checkpoint.pt", "model_hard.pt"):
        assert (out / name).exists(), name
    # the final hard mAP's jackknife pseudo-values, one per test image up to 100 groups
    import numpy as np
    with np.load(out / run_files.MAP_PSEUDO, allow_pickle=False) as data:
        pseudo = data["hard"]
    assert pseudo.shape == (min(100, cfg["data"]["test_size"]),) and np.isfinite(pseudo).all()
    assert "map_pseudo" not in hist[-1]

    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    trained = ckpt["model"]
    torch.manual_seed(0)
    initial = build_ssd(DetectRunConfig.from_dict(cfg)).state_dict()
    # parameter-wise lrs: lr_other = 0 leaves the first conv, conv7, neck and head untouched
    for key in ("backbone.features.0.weight", "backbone.features.33.weight",
                "neck.l2_norm.weight", "bbox_head.cls_convs.0.0.weight"):
        assert torch.equal(trained[key], initial[key]), key
    # ... while quantized layers trained (weights and their quantizers)
    w = trained["backbone.features.2.parametrizations.weight.original"]
    assert not torch.equal(w, initial["backbone.features.2.weight"])
    assert trained["backbone.features.2.input_quantizer.alpha"].item() != pytest.approx(
        1.0 / trained["backbone.features.2.input_quantizer.beta"].item(), rel=1e-9)


def test_resume_matches_uninterrupted_run(tiny_config, tmp_path, mmdet_stack, monkeypatch):
    from qbench.detection import hooks
    from qbench.detection.runner import run_from_config

    tiny_config["epochs"]["fp"] = 2
    full = run_from_config(tiny_config, tmp_path / "full", quiet=True)

    original = hooks.RunStateHook.after_train_epoch

    def crash_after_first(self, runner):
        original(self, runner)
        if runner.epoch + 1 == 1:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(hooks.RunStateHook, "after_train_epoch", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_from_config(tiny_config, tmp_path / "resumed", quiet=True)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(hooks.RunStateHook, "after_train_epoch", original)

    resumed = run_from_config(tiny_config, tmp_path / "resumed", quiet=True)
    assert resumed["resumed_from_epoch"] == 1
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for a, b in zip(full["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["hard_map"] == pytest.approx(b["hard_map"], abs=1e-6)
    wa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-6), key

    # a finished run is not redone; a different config in the same directory is refused
    assert run_from_config(tiny_config, tmp_path / "resumed", quiet=True) == resumed
    tiny_config["optim"]["lr"] = 5e-4
    (tmp_path / "resumed" / "metrics.json").unlink()
    with pytest.raises(ValueError, match="another config"):
        run_from_config(tiny_config, tmp_path / "resumed", quiet=True)


def test_pretrained_start_from_fp_run(tiny_config, tmp_path, mmdet_stack):
    from qbench.detection.runner import load_fp_state, run_from_config

    run_from_config(tiny_config, tmp_path / "fp", quiet=True)
    state = load_fp_state(tmp_path / "fp" / "checkpoint.pt")
    assert "backbone.features.0.weight" in state
    cfg = _quant_cfg(tiny_config, None)
    cfg["epochs"] = {"fp": 0, "weights": 1}
    cfg["quant"]["activations"] = None
    cfg["start"] = {"mode": "pretrained", "checkpoint": str(tmp_path / "fp" / "checkpoint.pt")}
    metrics = run_from_config(cfg, tmp_path / "q", quiet=True)
    trained = torch.load(tmp_path / "q" / "checkpoint.pt", weights_only=True)["model"]
    # lr_other = 0: the unquantized first conv keeps the FP run's weights exactly
    assert torch.equal(trained["backbone.features.0.weight"], state["backbone.features.0.weight"])
    assert metrics["quant_report"]["activation_layers"] == []
    with pytest.raises(ValueError, match="quantized model"):
        load_fp_state(tmp_path / "q" / "checkpoint.pt")
