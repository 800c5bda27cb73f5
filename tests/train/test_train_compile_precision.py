"""The trainer's ``compile`` and ``precision`` options: validated, and used by the training step."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from qbench.train import Config, run
from qbench.train.config import ConfigError

QUANT = {"quant": {"weights": "ternary", "activations": "act_2bit", "calib_samples": 16},
         "epochs": {"fp": 0, "weights": 1, "activations": 0, "joint": 1},
         "data": {"train_size": 32, "test_size": 16, "batch_size": 16}}


@pytest.mark.parametrize("key, value", [("precision", "fp16"), ("precision", "bfloat16"), ("compile", "yes")])
def test_bad_values_name_the_key(key, value, write_config):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        Config.from_dict(yaml.safe_load(write_config({key: value}).read_text()))


def test_defaults_are_eager_fp32(write_config):
    c = Config.from_dict(yaml.safe_load(write_config().read_text()))
    assert c.compile is False and c.precision == "fp32"


def test_bf16_quantized_run_trains_through_compile(tmp_path, monkeypatch, write_config):
    """precision bf16 + compile: the step runs under autocast through the compiled module
    (dynamo with AOTAutograd's eager backend here: inductor would take minutes on this CPU)."""
    compiled = []
    real_compile = torch.compile

    def compile_spy(model, **kwargs):
        compiled.append(model)
        return real_compile(model, backend="aot_eager", fullgraph=True)

    casts = []
    real_autocast = torch.autocast

    def autocast_spy(*args, **kwargs):
        casts.append((args, kwargs.get("dtype"), kwargs.get("enabled", True)))
        return real_autocast(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_spy)
    monkeypatch.setattr(torch, "autocast", autocast_spy)
    cfg = Config.from_dict(yaml.safe_load(write_config({**QUANT, "compile": True, "precision": "bf16"}).read_text()))
    metrics = run(cfg, tmp_path / "run", quiet=True)
    assert metrics["status"] == "complete" and len(metrics["history"]) == 2
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in metrics["history"])
    assert len(compiled) == 1
    assert casts and all(dtype == torch.bfloat16 and enabled for _, dtype, enabled in casts)
    assert "precision bf16, compiled" in (tmp_path / "run" / "train.log").read_text()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "complete"
