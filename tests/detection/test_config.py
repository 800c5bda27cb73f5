"""Validation of detection configs: unknown keys and impossible values fail early, by name."""

import copy

import re

import pytest

from qbench.detection.config import DetectRunConfig
from qbench.train.config import ConfigError
from tests.detection.conftest import TINY


def _cfg(**sections):
    raw = copy.deepcopy(TINY)
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return raw


def test_tiny_config_resolves_defaults():
    cfg = DetectRunConfig.from_dict(copy.deepcopy(TINY))
    assert cfg.model.num_classes == 10
    assert cfg.temperature.slope == 10.0
    assert cfg.detect.lr_other == 1e-7
    assert cfg.epochs.total == 1
    assert cfg.to_dict()["task"] == "detect"


@pytest.mark.parametrize("raw, key", [
    (_cfg(colour="red"), "'colour'"),
    (_cfg(data={"img_size": 300}), "'data.img_size'"),
    (_cfg(detect={"lr_others": 1e-7}), "'detect.lr_others'"),
    (_cfg(task="classify"), "'task'"),
    (_cfg(data={"dataset": "coco"}), "'data.dataset'"),
    (_cfg(data={"image_size": 64}), "'data.image_size'"),
    (_cfg(data={"train_size": None}), "'data.train_size'"),
    (_cfg(model={"num_classes": 20}), "'model.num_classes'"),
    (_cfg(model={"in_channels": 1}), "'model.in_channels'"),
    (_cfg(quant={"weights": "4bit"}), "'quant.weights'"),
    (_cfg(quant={"activations": "ternary"}, epochs={"fp": 0, "joint": 1}), "'quant.activations'"),
    (_cfg(quant={"weights": "ternary"}), "'epochs.fp'"),
    (_cfg(quant={"weights": "ternary"}, epochs={"fp": 0, "activations": 1}), "'epochs.activations'"),
    (_cfg(epochs={"fp": 0}), "'epochs'"),
    (_cfg(epochs={"fp": 1, "joint": 1}), "'epochs.joint'"),
    (_cfg(optim={"milestones": [3]}), "'optim.milestones'"),
    (_cfg(optim={"lr": -1}), "'optim.lr'"),
    (_cfg(optim={"grad_clip": 0}), "'optim.grad_clip'"),
    (_cfg(start={"mode": "pretrained", "checkpoint": None}), "'start.checkpoint'"),
    (_cfg(device="tpu"), "'device'"),
    (_cfg(detect={"augment": "heavy"}), "'detect.augment'"),
    (_cfg(detect={"voc_years": [2010]}), "'detect.voc_years'"),
    (_cfg(temperature={"slope": 0}), "'temperature.slope'"),
])
def test_bad_configs_name_the_key(raw, key):
    # one error type and message style with classification: "<key>: <what is wrong>", one line
    with pytest.raises(ConfigError, match="^" + re.escape(key.strip("'")) + ": ") as err:
        DetectRunConfig.from_dict(raw)
    assert "\n" not in str(err.value)


def test_phases_follow_the_epoch_split():
    cfg = DetectRunConfig.from_dict(_cfg(quant={"weights": "3bit_pm4", "activations": "act_linear8"},
                                         epochs={"fp": 0, "weights": 2, "activations": 1, "joint": 2}))
    assert [cfg.epochs.phase_of(e) for e in range(1, 6)] == \
        ["weights", "weights", "activations", "joint", "joint"]
    with pytest.raises(ValueError):
        cfg.epochs.phase_of(6)


def test_run_from_config_validates_before_work(tmp_path):
    from qbench.detection.runner import run_from_config

    with pytest.raises(ConfigError, match="^data.bogus: unknown key"):
        run_from_config(_cfg(data={"bogus": 1}), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("scale", ["smoke", "mini", "paper"])
def test_example_configs_validate(scale):
    from qbench.detection.stage import CELLS, load_cell_config

    cells = {cell: DetectRunConfig.from_dict(load_cell_config(scale, cell)) for cell in CELLS}
    assert cells["fp"].quant.enabled is False and cells["fp"].epochs.fp > 0
    assert cells["w2a32"].quant.weights == "ternary" and cells["w2a32"].quant.activations is None
    assert cells["w3a32"].quant.weights == "3bit_pm4" and cells["w3a32"].quant.activations is None
    assert (cells["w3a8"].quant.weights, cells["w3a8"].quant.activations) == ("3bit_pm4", "act_linear8")
    for cell in CELLS[1:]:
        assert cells[cell].start.mode == "pretrained"
        assert cells[cell].temperature.slope == 10.0
        assert cells[cell].optim.lr == pytest.approx(100 * cells[cell].detect.lr_other)
    if scale == "paper":
        for cell in CELLS[1:]:
            c = cells[cell]
            assert (c.optim.lr, c.detect.lr_other, c.optim.milestones, c.epochs.total,
                    c.data.batch_size, c.optim.grad_clip, c.data.image_size) == \
                (1e-5, 1e-7, [70, 90], 100, 16, 20.0, 300)


def test_detection_phase_hook_trains_what_the_classification_trainer_trains():
    """One phase switcher: the hook and the trainer freeze the same parameters in every phase."""
    from types import SimpleNamespace

    pytest.importorskip("mmengine")
    from qbench import quant as Q
    from qbench.detection.hooks import PhaseHook
    from qbench.models import build_model
    from qbench.train.phases import PHASES, configure_phase

    cfg = DetectRunConfig.from_dict(_cfg(quant={"weights": "3bit_pm4", "activations": "act_linear8"},
                                         epochs={"fp": 0, "weights": 1, "activations": 1, "joint": 1}))
    hooked, direct = build_model("resnet18", 4, 1), build_model("resnet18", 4, 1)
    hooked_method, direct_method = (Q.quantize_(m, cfg.quant.method_config()) for m in (hooked, direct))
    hook = PhaseHook(cfg.epochs, hooked_method)
    for epoch, phase in enumerate(PHASES[1:]):
        hook.before_train_epoch(SimpleNamespace(model=hooked, epoch=epoch))
        assert hook.phase == phase
        trained = {id(p) for p in configure_phase(direct, phase, direct_method)}
        expected = {n for n, p in direct.named_parameters() if id(p) in trained}
        assert {n for n, p in hooked.named_parameters() if p.requires_grad} == expected, phase
        assert [q.enabled for q in Q.activation_quantizers(hooked).values()] == \
            [q.enabled for q in Q.activation_quantizers(direct).values()]
