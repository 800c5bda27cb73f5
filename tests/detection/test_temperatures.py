"""The temperature each quantizer of a detector holds while it trains, read from the quantizers
during a real mmengine run (``MethodEpochHook``), against the epoch plan, and for every SSD cell
of the paper and mini scales through the same hook."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qbench.quant import ActivationQuantizer, WeightQuantizer

KINDS = {"weights": WeightQuantizer, "activations": ActivationQuantizer}


def _record(model, log: dict) -> None:
    """Each training forward of a quantizer records (its kind, the T its state holds)."""
    for m in model.modules():
        for kind, cls in KINDS.items():
            if isinstance(m, cls):
                def hook(module, args, kind=kind):
                    if module.training and module.enabled and module.state.mode == "soft":
                        log.setdefault(log["epoch"](), set()).add((kind, module.state.temperature))
                m.register_forward_pre_hook(hook)


def test_detector_quantizers_hold_their_kinds_temperature(tiny_config, tmp_path, mmdet_stack, monkeypatch):
    import qbench.detection.runner as runner_mod
    from qbench.detection.hooks import MethodEpochHook
    from qbench.detection.runner import run_from_config

    cfg = tiny_config
    cfg["quant"].update(weights="ternary", activations="act_2bit")
    cfg["epochs"] = {"fp": 0, "weights": 1, "activations": 1, "joint": 1}
    cfg["temperature"] = {"slope": 10.0, "epoch_scale": 20.0, "act_epoch_scale": 1.0}
    cfg["optim"].update(milestones=[3])

    current = {"epoch": None}
    real_before = MethodEpochHook.before_train_epoch

    def before(self, runner):
        current["epoch"] = runner.epoch + 1
        real_before(self, runner)

    log: dict = {"epoch": lambda: current["epoch"]}
    real_quantize = runner_mod.quantize_

    def quantize_and_record(model, config, include=None):
        method = real_quantize(model, config, include=include)
        _record(model, log)
        return method

    monkeypatch.setattr(MethodEpochHook, "before_train_epoch", before)
    monkeypatch.setattr(runner_mod, "quantize_", quantize_and_record)
    metrics = run_from_config(cfg, tmp_path / "run", quiet=True)

    assert [r["phase"] for r in metrics["history"]] == ["weights", "activations", "joint"]
    # weights: 20 x 10 x the epochs they trained (1, still 1 while fixed, 2); activations:
    # 10 x theirs (1, 2)
    assert log[1] == {("weights", 200.0)}
    assert log[2] == {("weights", 200.0), ("activations", 10.0)}
    assert log[3] == {("weights", 400.0), ("activations", 20.0)}


@pytest.mark.parametrize("scale", ["paper", "mini"])
def test_hook_gives_every_ssd_cell_its_planned_temperatures(scale):
    """Every SSD cell's epoch plan, applied by the hook to a quantized model: each quantizer
    holds its kind's planned T in every epoch."""
    import torch
    from torch import nn

    from qbench.detection.config import DetectRunConfig
    from qbench.detection.hooks import MethodEpochHook
    from qbench.paper.recipe import load_scale, resolved_run_config
    from qbench.quant import quantize_
    from qbench.train.phases import configure_phase, epoch_plan
    from qbench.workflow.plan import enabled_cells

    cfg = load_scale(scale)
    cfg.setdefault("detection", {})["enabled"] = True
    cells = [c for c in enabled_cells(cfg) if c.task == "detect" and c.kind == "quant"]
    assert cells, f"{scale} has no quantized SSD cell"
    for cell in cells:
        conf = DetectRunConfig.from_dict(resolved_run_config(cfg, cell))
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
        method = quantize_(model, conf.quant.method_config(), include=["2"])
        if conf.quant.activations is not None:
            method.calibrate(model, [torch.rand(2, 3, 8, 8)], 2)
        plan = epoch_plan(conf)
        hook = MethodEpochHook(method, plan)
        for step in plan:
            configure_phase(model, step.phase, method)
            hook.before_train_epoch(SimpleNamespace(model=model, epoch=step.epoch - 1))
            for kind, cls in KINDS.items():
                held = {m.state.temperature for m in model.modules() if isinstance(m, cls) and m.enabled}
                planned = getattr(step, f"t_{kind}")
                if planned is not None:
                    assert held == {planned}, (cell.id, step.epoch, kind, held, planned)
