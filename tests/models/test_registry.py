"""The architecture registry: every registered model builds and runs, names are checked, and
docs/extending.md's "A model" walk-through (one module) trains through the real trainer."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from qbench.models import available_models, build_model, get_model, register_model
from qbench.models import registry as model_registry

from tests.conftest import SMOKE, merge

DOCS = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


@pytest.mark.parametrize("arch", available_models("classify"))
def test_every_classification_model_builds_at_small_width_and_runs(arch):
    model = build_model(arch, num_classes=5, in_channels=1, width=0.25, stem="small").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_registry_holds_the_papers_models_by_task():
    assert available_models("classify") == ("alexnet_bn", "resnet18", "resnet50")
    assert available_models("detect") == ("ssd300_vgg16",)
    assert get_model("ssd300_vgg16").task == "detect"
    with pytest.raises(ValueError, match="model.arch must be one of .*got 'vgg11'"):
        get_model("vgg11")
    with pytest.raises(ValueError, match="model.arch must be one of"):
        build_model("ssd300_vgg16")  # a detector is not built by the classification builder


def test_registry_refuses_bad_entries(monkeypatch):
    monkeypatch.setattr(model_registry, "_MODELS", dict(model_registry._MODELS))
    with pytest.raises(ValueError, match="identifier"):
        register_model("not a name")
    with pytest.raises(ValueError, match="task must be one of"):
        register_model("x", task="segment")
    with pytest.raises(ValueError, match="'resnet18' is already registered"):
        register_model("resnet18")(lambda num_classes, in_channels, width, stem: None)


def _walkthrough_module(tmp_path: Path) -> Path:
    """The code block of docs/extending.md's "A model" section, as its own module file."""
    text = DOCS.read_text()
    section = text[text.index("## A model"):text.index("## A dataset")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "tiny_cnn_model.py"
    path.write_text(code)
    return path


def test_the_docs_model_walkthrough_is_one_module_that_trains(tmp_path, monkeypatch):
    from qbench.train import Config, run

    monkeypatch.setattr(model_registry, "_MODELS", dict(model_registry._MODELS))
    module = _walkthrough_module(tmp_path)
    spec = importlib.util.spec_from_file_location("tiny_cnn_model", module)
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tiny_cnn_model", loaded)
    spec.loader.exec_module(loaded)
    assert "tiny_cnn" in available_models("classify") and get_model("tiny_cnn").build is loaded.tiny_cnn

    cfg = Config.from_dict(merge(SMOKE, {"model": {"arch": "tiny_cnn"},
                                         "data": {"train_size": 16, "test_size": 16, "batch_size": 16},
                                         "quant": {"weights": "ternary"}, "epochs": {"fp": 0, "weights": 1}}))
    metrics = run(cfg, tmp_path / "run", quiet=True)
    assert [r["phase"] for r in metrics["history"]] == ["weights"]
    assert math.isfinite(metrics["history"][-1]["train_loss"])
    # the default layer selection quantizes the middle conv (first conv and classifier stay FP)
    assert metrics["quant_report"]["weight_layers"] == ["3"]
