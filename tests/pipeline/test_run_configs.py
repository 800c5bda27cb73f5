"""Every run config the pipeline renders passes the trainer's own validation (docs/CONTRACTS.md,
docs/detection.md), at every scale, detection included."""

from __future__ import annotations

import pytest

from conftest import ROOT
from qbench.workflow import plan


def _validate(cell, rc):
    plan.check_run_config({}, cell, rc)  # the trainer's own Config / DetectRunConfig


@pytest.mark.parametrize("scale", ["smoke", "mini", "gpu", "paper"])
def test_rendered_configs_are_valid_trainer_configs(scale):
    cfg = plan.merge_scale_file({"scale": scale, "detection": {"enabled": True}, "cells": {"only": None},
                                 "baselines": {"enabled": True, "models": None, "settings": None}},
                                ROOT / "workflows" / "config")
    cfg["fp_weights"] = {}  # imported FP weights: see the test below
    cells = plan.enabled_cells(cfg)
    assert len(cells) == len(plan.load_cells()) == 68
    assert sum(c.is_baseline for c in cells) == 30
    for cell in cells:
        for seed in plan.seeds_of(cfg, cell):
            _validate(cell, plan.run_config(cfg, cell, seed))


def test_imported_fp_weights_config_is_valid():
    cfg = plan.merge_scale_file({"scale": "paper"}, ROOT / "workflows" / "config")
    cell = plan.load_cells()["resnet18_fp"]
    _validate(cell, plan.run_config(cfg, cell, 0))


@pytest.mark.parametrize("over, key, cell", [
    ({"phases": {"weights": {"optim": {"lrr": 0.1}}}}, "phases.weights.optim.lrr", "alexnet_w2a32"),
    ({"phases": {"both": {"epochs": {"joint": -1}}}}, "phases.both.epochs.joint", "alexnet_w1a1"),
    ({"detection": {"enabled": True, "phases": {"fp": {"detect": {"augmnt": "light"}}}}, "cells": {"only": ["ssd_fp"]}},
     "detection.phases.fp.detect.augmnt", "ssd_fp"),
    ({"cell_overrides": {"alexnet_w2a32": {"quant": {"weights": "act_2bit"}}}},
     "cell_overrides.alexnet_w2a32.quant.weights", "alexnet_w2a32"),
])
def test_trainer_errors_inside_phases_fail_when_planning_naming_the_key(over, key, cell):
    """The rendered run configs are checked by the trainer's own config classes at plan time."""
    cfg = plan.merge_scale_file({"scale": "smoke", **over}, ROOT / "workflows" / "config")
    with pytest.raises(plan.PipelineConfigError) as err:
        plan.validate_semantics(cfg, plan.enabled_cells(cfg))
    msg = str(err.value)
    assert msg.startswith(f"config key '{key}': ") and msg.endswith(f"(run config of cell {cell})"), msg
    assert "\n" not in msg


def test_trainer_key_sources_name_the_layer_that_set_the_value():
    cfg = plan.merge_scale_file({"scale": "smoke", "models": {"resnet18": {"phases": {"weights": {
        "optim": {"lr": 0.5}}}}}}, ROOT / "workflows" / "config")
    cell = plan.load_cells()["resnet18_w3pm4a32"]
    assert plan._trainer_key_source(cfg, cell, "optim.lr") == "models.resnet18.phases.weights.optim.lr"
    assert plan._trainer_key_source(cfg, cell, "quant.weights") == "cells.resnet18_w3pm4a32.weights"
    assert plan._trainer_key_source(cfg, cell, "optim.nothing") == "train.optim.nothing"


def _baselines(over: dict, scale: str = "mini") -> list[str]:
    cfg = plan.merge_scale_file({"scale": scale, **over}, ROOT / "workflows" / "config")
    return [c.id for c in plan.enabled_cells(cfg) if c.is_baseline]


def test_the_baselines_key_selects_other_methods_cells_by_model_and_setting():
    mini = _baselines({})
    cells = plan.load_cells()
    assert len(mini) == 19 and {cells[c].model for c in mini} == {"alexnet_bn", "resnet18"}
    assert {cells[c].setting for c in mini} == {"w1a32", "w2a32", "w1a1", "w1a2"}
    assert _baselines({"baselines": {"enabled": False}}) == []
    assert _baselines({"baselines": {"models": ["resnet18"], "settings": ["w1a2"]}}) == \
        ["resnet18_w1a2_hwgq", "resnet18_w1a2_lqnet"]
    # the paper's own cells do not depend on it
    assert len(plan.enabled_cells(plan.merge_scale_file({"scale": "mini", "baselines": {"enabled": False}},
                                                        ROOT / "workflows" / "config"))) == 57 - 19


def test_naming_a_left_out_baseline_in_cells_only_is_an_error_naming_the_key():
    with pytest.raises(plan.PipelineConfigError, match=r"^config key 'cells.only': baseline cell "
                       r"'resnet50_w2a32_twn' is left out: 'resnet50' is not in baselines.models$"):
        _baselines({"cells": {"only": ["resnet50_w2a32_twn"]}})


def test_a_baseline_cell_renders_its_method_and_no_keys_of_the_papers_method():
    cfg = plan.merge_scale_file({"scale": "mini"}, ROOT / "workflows" / "config")
    cells = plan.load_cells()
    rc = plan.run_config(cfg, cells["alexnet_w2a32_ttq"], 1)
    ours = plan.run_config(cfg, cells["alexnet_w2a32"], 1)
    assert rc["quant"]["method"] == "ttq" and rc["quant"]["options"] == {}
    assert ours["quant"]["method"] == "qn" and ours["quant"]["options"]["init"] == "kmeans"
    # a scale's per-method options (mini: quant.qn.act_lr_mult in the activation phases) reach
    # the cells of that method only, and no method name is left under quant:
    joint, phased = (plan.run_config(cfg, cells[c], 1) for c in ("alexnet_w1a1_dorefa", "alexnet_w1a1"))
    assert joint["quant"]["options"] == {} and phased["quant"]["options"]["act_lr_mult"] == 0.01
    assert "qn" not in joint["quant"] and "qn" not in phased["quant"]
    assert joint["epochs"]["joint"] == sum(phased["epochs"][p] for p in ("weights", "activations", "joint"))
    # same recipe as the paper's cell of the same setting: start, epochs, optimiser, data, seed
    for key in ("start", "epochs", "optim", "data", "seed", "temperature"):
        assert rc[key] == ours[key], key


RELEASED_CELLS = ("resnet18_w1a32_released", "resnet18_w1a2_released", "alexnet_w2a32_released",
                  "alexnet_w1a1_released")


@pytest.mark.parametrize("cid", RELEASED_CELLS)
def test_a_released_cell_renders_the_variant_beside_its_papers_cell(cid):
    """A `_released` cell is the `qn` cell of the same name with `quant.variant: released` and
    nothing else changed: same phases, epochs, optimiser, data and T."""
    from qbench.quant.variant import RELEASED

    cfg = plan.merge_scale_file({"scale": "paper"}, ROOT / "workflows" / "config")
    cells = plan.load_cells()
    cell, paper = cells[cid], cells[cid.removesuffix("_released")]
    assert cell.method == paper.method == "qn" and not cell.tables and not cell.figures
    rc, ours = plan.run_config(cfg, cell, 0), plan.run_config(cfg, paper, 0)
    assert rc["quant"]["options"].pop("variant") == "released" and ours["quant"]["options"].pop("variant") == "paper"
    assert rc == ours
    assert plan.phase_of(cell) == plan.phase_of(paper)
    # the trainer's config reads it into the method's policy
    from qbench.train.config import Config

    assert Config.from_dict(plan.run_config(cfg, cell, 0)).quant.method_config().variant == RELEASED


def test_the_released_cells_run_at_mini_and_paper_scale_and_a_single_choice_goes_through_cell_overrides():
    for scale in ("mini", "paper"):
        cfg = plan.merge_scale_file({"scale": scale}, ROOT / "workflows" / "config")
        assert set(RELEASED_CELLS) <= {c.id for c in plan.enabled_cells(cfg)}
    cfg = plan.merge_scale_file({"scale": "mini", "cell_overrides": {"resnet18_w1a32_released": {
        "quant": {"options": {"variant": {"base": "released", "strict_step": False}}}}}}, ROOT / "workflows" / "config")
    cell = plan.load_cells()["resnet18_w1a32_released"]
    rc = plan.run_config(cfg, cell, 0)
    _validate(cell, rc)
    from qbench.train.config import Config

    v = Config.from_dict(rc).quant.method_config().variant
    assert v.clamp and not v.strict_step
