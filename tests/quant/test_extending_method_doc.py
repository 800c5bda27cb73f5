"""docs/extending.md's method walk-through, run: its module registers "mean_sign", a run config
names it under quant.method, and the classification trainer trains, evaluates and exports it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

from qbench.quant import available_methods, get_method
from qbench.quant.methods import base

from tests.conftest import SMOKE, merge

DOCS = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def _walkthrough_code() -> str:
    text = DOCS.read_text()
    section = text[text.index("## A quantization method"):text.index("## A model")]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "@register_method(" in b]
    assert len(blocks) == 1, "the section has one method module"
    return blocks[0]


def test_the_docs_method_walkthrough_is_one_module_that_trains(tmp_path, monkeypatch):
    from qbench.train import Config, run

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    path = tmp_path / "mean_sign.py"
    path.write_text(_walkthrough_code())
    spec = importlib.util.spec_from_file_location("mean_sign", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mean_sign", module)
    assert "mean_sign" not in available_methods()
    spec.loader.exec_module(module)
    assert get_method("mean_sign") is module.MeanSign

    cfg = Config.from_dict(merge(SMOKE, {"data": {"train_size": 16, "test_size": 16, "batch_size": 16},
                                         "quant": {"method": "mean_sign", "weights": "binary"},
                                         "epochs": {"fp": 0, "weights": 1}}))
    metrics = run(cfg, tmp_path / "run", quiet=True)
    assert [r["phase"] for r in metrics["history"]] == ["weights"]
    exported = torch.load(tmp_path / "run" / "model_hard.pt", weights_only=True)
    assert exported["method"] == "mean_sign" and exported["weights"]
    # one bit per quantized weight: the model is smaller than 32 bits per parameter
    assert metrics["model_bits"]["ratio"] > 1
