"""The temperature each quantizer holds while it trains, read from the quantizers themselves.

For every quantized cell of the paper and mini scales (cells with the same epochs, temperature
and quantized kinds share one run), the real classification trainer runs the cell's phases and
temperature settings on a small conv net and fake data, one step per epoch; forward pre-hooks on
every weight and activation quantizer record the T its state holds at each training step.
The recorded T must be the epoch plan's (``qbench.train.phases``) for that kind, and for the
paper scale the ranges that docs/recipes.md prints.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from qbench.paper.recipe import load_scale, resolved_run_config
from qbench.quant import ActivationQuantizer, WeightQuantizer, get_method
from qbench.train import Config, run
from qbench.train.phases import epoch_plan
from qbench.workflow.plan import enabled_cells

ROOT = Path(__file__).resolve().parents[2]
SCALES = ("paper", "mini")
KINDS = {"weights": WeightQuantizer, "activations": ActivationQuantizer}


def _signature(rc: dict) -> str:
    q = rc["quant"]
    return json.dumps({"epochs": rc["epochs"], "temperature": rc["temperature"],
                       "weights": q["weights"] is not None, "activations": q["activations"] is not None},
                      sort_keys=True)


def _tempered_cells(scale: str) -> dict[str, tuple[list[str], dict]]:
    """signature -> (cell ids, the first cell's resolved run config) of the classification cells
    whose method uses a temperature."""
    cfg = load_scale(scale)
    out: dict[str, tuple[list[str], dict]] = {}
    for cell in enabled_cells(cfg):
        if cell.kind != "quant" or cell.task != "classify":
            continue
        rc = resolved_run_config(cfg, cell)
        if not get_method(rc["quant"].get("method", "qn")).uses_temperature:
            continue
        ids, _ = out.setdefault(_signature(rc), ([], rc))
        ids.append(cell.id)
    return out


CASES = [(scale, sig) for scale in SCALES for sig in _tempered_cells(scale)]


def _small_model(arch, num_classes, in_channels, width=1.0, stem="imagenet"):
    """conv-BN-ReLU x 3 and a linear layer: the middle two layers get quantizers (the first conv
    and the last linear stay full precision, as in every cell). The cell's width and stem do not
    touch the schedule under test, so the stand-in ignores them."""
    from torch import nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*block(in_channels, 4), *block(4, 4), *block(4, 4), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


def _small(rc: dict) -> dict:
    """The cell's schedule (phases, temperature, lr, quantized kinds) on a small run: fake data,
    one training step per epoch, from scratch (the model is ``_small_model``)."""
    small = copy.deepcopy(rc)
    small.update(device="cpu", compile=False, precision="fp32", checkpoint_every_s=1e9, seed=0)
    small["model"] = {"arch": "resnet18", "num_classes": 4, "in_channels": 1}  # built by _small_model
    small["start"] = {"mode": "scratch", "checkpoint": None}
    small["data"] = {"dataset": "fake", "root": None, "image_size": 16, "train_size": 8, "test_size": 8,
                     "batch_size": 8, "workers": 0, "subset_seed": 0, "epoch_test_stride": 1}
    small["quant"] = {**small["quant"], "calib_samples": 8, "bn_reestimate_samples": 8}
    return small


def _record_temperatures(model, log: dict) -> None:
    """Forward pre-hooks: each training forward of the model starts a step; each quantizer that
    computes in it records (step, its kind, the T its state holds, its mode)."""
    def count(module, args):
        if module.training:
            log["step"] += 1

    model.register_forward_pre_hook(count)
    for m in model.modules():
        for kind, cls in KINDS.items():
            if isinstance(m, cls):
                def hook(module, args, kind=kind):
                    if module.training and module.enabled and module.state.mode != "off":
                        log["held"].append((log["step"], kind, module.state.temperature, module.state.mode))
                m.register_forward_pre_hook(hook)


@pytest.mark.parametrize("scale,signature", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_each_quantizer_holds_the_planned_temperature(scale, signature, tmp_path, monkeypatch):
    ids, rc = _tempered_cells(scale)[signature]
    config = Config.from_dict(_small(rc))
    log = {"step": 0, "held": []}
    import qbench.train.trainer as trainer

    real_quantize = trainer.Q.quantize_

    def quantize_and_record(model, method_config):
        method = real_quantize(model, method_config)
        _record_temperatures(model, log)
        return method

    monkeypatch.setattr(trainer.Q, "quantize_", quantize_and_record)
    monkeypatch.setattr(trainer, "build_model", _small_model)
    run(config, tmp_path / "run", quiet=True)

    plan = epoch_plan(config)
    assert log["step"] == len(plan), "one training step per epoch"
    for step in plan:
        for kind in KINDS:
            held = {(T, mode) for s, k, T, mode in log["held"] if s == step.epoch and k == kind}
            planned = getattr(step, f"t_{kind}")
            if planned is None:
                assert not held, f"{ids[0]} epoch {step.epoch}: {kind} quantizers computed with no planned T"
            else:
                assert held == {(planned, "soft")}, (
                    f"{ids[0]} epoch {step.epoch} ({step.phase}): {kind} quantizers held {sorted(held)}, "
                    f"plan {planned}")

    if scale == "paper":
        measured = {s: {k: T for s2, k, T, _ in log["held"] if s2 == s} for s in range(1, len(plan) + 1)}
        for cell_id in ids:
            for first, last, t_w, t_a in _doc_rows(cell_id):
                for kind, text in (("weights", t_w), ("activations", t_a)):
                    if text in ("-", "off"):
                        assert kind not in measured[first] and kind not in measured[last], (cell_id, first, kind)
                        continue
                    lo, _, hi = text.partition(" to ")
                    assert measured[first][kind] == pytest.approx(float(lo)), (cell_id, first, kind, text)
                    assert measured[last][kind] == pytest.approx(float(hi or lo)), (cell_id, last, kind, text)


def _doc_rows(cell_id: str) -> list[tuple[int, int, str, str]]:
    """(first epoch, last epoch, T weights, T activations) of the cell's table in docs/recipes.md."""
    text = (ROOT / "docs" / "recipes.md").read_text()
    section = text.split(f"\n## {cell_id}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\| (\d+)-(\d+) \| [^|]+ \| [^|]+ \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", line)
        if m:
            rows.append((int(m[1]), int(m[2]), m[3].strip(), m[4].strip()))
    assert rows, f"docs/recipes.md has no schedule table for {cell_id}"
    return rows


def test_cases_cover_every_phase_combination():
    """The parametrisation above reaches weight-only, activation-only and weight + activation
    schedules at both scales (a registry change that dropped one would go unnoticed)."""
    for scale in SCALES:
        kinds = {(json.loads(sig)["weights"], json.loads(sig)["activations"]) for sig in _tempered_cells(scale)}
        assert {(True, False), (False, True), (True, True)} <= kinds, (scale, kinds)
