"""The dataset registry: every registered classification set loads through build_data, names are
checked, and docs/extending.md's "A dataset" walk-through (one module) trains through the trainer."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

from qbench.data import available_datasets, build_data, get_dataset, register_dataset
from qbench.data import registry as data_registry

from tests.conftest import SMOKE, merge

DOCS = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def test_registry_holds_the_suites_datasets_by_task():
    assert available_datasets("classify") == ("fashion_mnist", "imagenet", "fake")
    assert available_datasets("detect") == ("voc", "fmnist_voc")
    assert get_dataset("voc").num_classes == 20 and get_dataset("fmnist_voc").num_classes == 10
    with pytest.raises(ValueError, match="data.dataset must be one of .*got 'cifar'"):
        get_dataset("cifar")
    with pytest.raises(ValueError, match=r"data.dataset must be one of \('fashion_mnist', 'imagenet', 'fake'"):
        build_data("voc", None, 32, 1, 10)  # a detection set has no classification builder


def test_registry_refuses_bad_entries(monkeypatch):
    monkeypatch.setattr(data_registry, "_DATASETS", dict(data_registry._DATASETS))
    with pytest.raises(ValueError, match="identifier"):
        register_dataset("not a name")
    with pytest.raises(ValueError, match="task must be one of"):
        register_dataset("x", task="segment")
    with pytest.raises(ValueError, match="needs num_classes"):
        register_dataset("x", task="detect")
    with pytest.raises(ValueError, match="'fake' is already registered"):
        register_dataset("fake")(lambda *args: None)


def test_the_fake_set_loads_through_its_builder():
    bundle = build_data("fake", None, 16, 1, 4, train_size=32, test_size=16)
    assert (bundle.name, bundle.num_train, bundle.num_test) == ("fake", 32, 16)


def test_the_docs_dataset_walkthrough_is_one_module_that_trains(tmp_path, monkeypatch):
    from qbench.train import Config, run

    monkeypatch.setattr(data_registry, "_DATASETS", dict(data_registry._DATASETS))
    text = DOCS.read_text()
    section = text[text.index("## A dataset"):text.index("## A cell or a table")]
    path = tmp_path / "stripes_dataset.py"
    path.write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    spec = importlib.util.spec_from_file_location("stripes_dataset", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "stripes_dataset", module)
    spec.loader.exec_module(module)
    assert "stripes" in available_datasets("classify")

    cfg = Config.from_dict(merge(SMOKE, {"model": {"num_classes": 2},
                                         "data": {"dataset": "stripes", "train_size": 32, "test_size": 16,
                                                  "batch_size": 16}}))
    metrics = run(cfg, tmp_path / "run", quiet=True)
    assert metrics["final"]["test_images"] == 16 and math.isfinite(metrics["history"][-1]["train_loss"])
