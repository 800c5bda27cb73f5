"""Every run config the pipeline renders passes the trainer's own validation (docs/CONTRACTS.md,
docs/detection.md), at every scale, detection included."""

from __future__ import annotations

import pytest

from conftest import ROOT
from qbench.report import plan


def _validate(cell, rc):
    if cell.task == "detect":
        from qbench.detection.config import DetectRunConfig

        DetectRunConfig.from_dict(rc)
    else:
        from qbench.train.config import Config

        Config.from_dict(rc)


@pytest.mark.parametrize("scale", ["smoke", "mini", "paper"])
def test_rendered_configs_are_valid_trainer_configs(scale):
    cfg = plan.merge_scale_file({"scale": scale, "detection": {"enabled": True}, "cells": {"only": None}},
                                ROOT / "workflows" / "config")
    cfg["fp_weights"] = {}  # imported FP weights: see the test below
    cells = plan.enabled_cells(cfg)
    assert len(cells) == len(plan.load_cells()) == 34
    for cell in cells:
        for seed in plan.seeds_of(cfg, cell):
            _validate(cell, plan.run_config(cfg, cell, seed))


def test_imported_fp_weights_config_is_valid():
    cfg = plan.merge_scale_file({"scale": "paper"}, ROOT / "workflows" / "config")
    cell = plan.load_cells()["resnet18_fp"]
    _validate(cell, plan.run_config(cfg, cell, 0))
