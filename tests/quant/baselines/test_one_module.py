"""A baseline is one module: a module declaring ``METHOD = BaselineSpec(...)`` is found and
registered as a method, with its title, options and epoch hooks, and nothing else to edit."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from qbench.quant import get_method, quantize_
from qbench.quant.methods import base
from qbench.quant.methods.baselines import discover_baselines, is_baseline_method, level_counts, register_baseline

MODULE = '''
from qbench.quant.baselines import BaselineSpec, BWNQuantizer

CALLS = []

METHOD = BaselineSpec("signw", "SignW", lambda b, layer, o: BWNQuantizer(), None, weight_bits=(1, 1),
                      example=("binary", None), options={"note": "x"},
                      on_epoch=lambda method, model, step: CALLS.append(("start", step)),
                      on_epoch_end=lambda method, model, step: CALLS.append(("end", step)))
'''


@pytest.fixture
def more_baselines(tmp_path, monkeypatch):
    package = tmp_path / "more_baselines"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "signw.py").write_text(MODULE)
    (package / "_helpers.py").write_text("METHOD = 'a private module is not read'\n")
    (package / "plain.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    yield importlib.import_module("more_baselines")
    for name in [m for m in sys.modules if m == "more_baselines" or m.startswith("more_baselines.")]:
        del sys.modules[name]


def test_one_module_declaring_a_method_is_registered_with_its_title_options_and_hooks(more_baselines):
    specs = discover_baselines(more_baselines)
    assert list(specs) == ["signw"]
    cls = register_baseline(specs["signw"])
    assert get_method("signw") is cls and cls.__name__ == "SignWMethod" and is_baseline_method("signw")
    assert cls.config_class.__name__ == "SignWConfig" and cls.example_config().note == "x"

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(16, 3))
    method = quantize_(model, cls.example_config())
    assert method.report.weight_layers == ["2"]
    method.on_epoch(model, "step 1")
    method.on_epoch_end(model, "step 1")
    assert more_baselines.signw.CALLS == [("start", "step 1"), ("end", "step 1")]
    out = model(torch.randn(2, 1, 6, 6))
    assert out.shape == (2, 3)
    assert level_counts("signw", "binary", None) == {"weights": 2, "activations": None}


def test_a_module_whose_method_is_not_a_spec_fails_naming_it(more_baselines):
    (Path(more_baselines.__path__[0]) / "bad.py").write_text("METHOD = {'name': 'bad'}\n")
    with pytest.raises(TypeError, match="more_baselines.bad.METHOD must be a BaselineSpec"):
        discover_baselines(more_baselines)
