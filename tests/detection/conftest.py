"""Shared fixtures: a tiny generated fmnist_voc set and tiny run configs."""

from __future__ import annotations

import copy

import pytest

TINY = {
    "task": "detect",
    "seed": 0,
    "device": "cpu",
    "model": {"arch": "ssd300_vgg16"},
    "data": {"dataset": "fmnist_voc", "root": None, "image_size": 96, "train_size": 8,
             "test_size": 4, "subset_seed": 0, "batch_size": 4, "workers": 0},
    "start": {"mode": "scratch", "checkpoint": None},
    "quant": {"weights": None, "activations": None, "calib_samples": 4},
    "optim": {"lr": 1e-3, "milestones": [], "grad_clip": 20.0},
    "epochs": {"fp": 1},
    "detect": {"augment": "light", "lr_other": 1e-7, "log_interval": 1},
}


@pytest.fixture(scope="session")
def mmdet_stack():
    """Skip when the detection stack is not installed (scripts/setup_detection.sh)."""
    pytest.importorskip("mmcv.ops", reason="mmcv with ops missing: run scripts/setup_detection.sh")
    pytest.importorskip("mmdet.models", reason="mmdet missing: run scripts/setup_detection.sh")
    from qbench.detection.mmdet_compat import require_mmdet

    require_mmdet()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """Directory where the tests' fmnist_voc sets are generated (shared by the session)."""
    return tmp_path_factory.mktemp("fmnist_voc")


@pytest.fixture
def tiny_config(data_root):
    """A fresh copy of the tiny FP config pointing at the session data root."""
    cfg = copy.deepcopy(TINY)
    cfg["data"]["root"] = str(data_root)
    return cfg
