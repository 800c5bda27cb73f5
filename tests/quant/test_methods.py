"""The quantization-method interface: the registry, the contract every registered method keeps,
and a toy method (tests/quant/toy_sign_method.py) that is one module plus one registry entry."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from qbench.quant import (DEFAULT_METHOD, QuantMethod, QuantPolicy, available_methods, get_method, method_for,
                          quantize_, register_method)
from qbench.quant.methods import CODES_FORMAT
from qbench.train.phases import EpochPlan

from tests.quant import toy_sign_method
from tests.conftest import SMOKE, merge


class Tiny(nn.Module):
    """conv -> conv -> linear -> linear: the default selection quantizes conv2 and fc1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


def _tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def test_registry_has_the_papers_method_first():
    assert DEFAULT_METHOD == "qn" and available_methods()[0] == "qn"
    assert get_method("qn").config_class is QuantPolicy
    assert get_method("qn").modes == ("soft", "hard", "off")
    assert method_for(QuantPolicy("ternary")).name == "qn"
    with pytest.raises(ValueError, match=r"unknown quantization method 'nope'; known: qn"):
        get_method("nope")
    with pytest.raises(ValueError, match="config of no registered"):
        method_for(object())


def test_registry_refuses_bad_entries():
    before = available_methods()

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        weights: str | None = None
        activations: str | None = None

    class Other(QuantMethod):
        config_class = Cfg

    with pytest.raises(ValueError, match="'qn' is already registered"):
        register_method("qn")(Other)
    with pytest.raises(ValueError, match="already belongs to method 'qn'"):
        register_method("other")(type("Again", (QuantMethod,), {"config_class": QuantPolicy}))

    @dataclasses.dataclass
    class Mutable:
        weights: str | None = None

    with pytest.raises(TypeError, match="frozen dataclass"):
        register_method("mutable")(type("M", (QuantMethod,), {"config_class": Mutable}))
    with pytest.raises(ValueError, match="among its modes"):
        register_method("moded")(type("Moded", (QuantMethod,), {"config_class": Cfg, "eval_mode": "hard"}))
    with pytest.raises(TypeError, match="QuantMethod subclass"):
        register_method("plain")(object)
    with pytest.raises(ValueError, match="identifier"):
        register_method("not a name")
    assert available_methods() == before


def test_toy_method_is_one_module_and_one_registry_entry():
    """In a fresh interpreter qbench knows no "sign" method; loading the toy module's one file
    (by path, outside any package) registers it, and a model takes it through quantize_."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import importlib.util
        import sys
        import torch
        from qbench.quant import available_methods, get_method, quantize_
        assert "sign" not in available_methods()
        spec = importlib.util.spec_from_file_location("toy", {str(Path(toy_sign_method.__file__))!r})
        sys.modules["toy"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                                    torch.nn.Flatten(), torch.nn.Linear(16, 3))
        method = quantize_(model, get_method("sign").example_config())
        print(available_methods().index("sign"), method.report.weight_layers, tuple(model(torch.rand(2, 1, 6, 6)).shape))
    """)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == f"{len(available_methods()) - 1} ['2'] (2, 3)"


@pytest.mark.parametrize("name", available_methods())
def test_every_method_keeps_the_contract(name):
    """Wrap a tiny conv+linear model, calibrate, train one step, evaluate, export and reload."""
    cls = get_method(name)
    config = cls.example_config()
    model = _tiny()
    method = quantize_(model, config)
    assert isinstance(method, cls) and method.config is config
    # a method may quantize weights only (BWN) or inputs only (PACT), as its example config says
    weights, inputs = method.report.weight_levels is not None, method.report.act_levels is not None
    assert weights or inputs
    assert method.report.weight_layers == (["conv2", "fc1"] if weights else [])
    assert method.report.activation_layers == (["conv2", "fc1"] if inputs else [])
    assert method.report.skipped_layers == ["conv1", "fc2"]
    assert sorted(method.weight_modules(model)) == method.report.weight_layers
    assert sorted(method.input_modules(model)) == method.report.activation_layers
    with pytest.raises(ValueError, match="already has quantizers"):
        quantize_(model, config)

    torch.manual_seed(1)
    calib = [torch.rand(4, 1, 6, 6) for _ in range(2)]
    maxima = method.calibrate(model, calib, num_samples=8)
    assert sorted(maxima) == method.report.activation_layers and all(v > 0 for v in maxima.values())

    # training step: finite gradients for the network and the method's own parameters (a
    # method may have none: BWN's and DoReFa's scales are computed, not learned)
    own = method.parameters(model)
    assert {id(p) for p in own} == {id(p) for p in method.parameters(model, "weights")} | {
        id(p) for p in method.parameters(model, "activations")}
    step = EpochPlan(1, "joint", 1, 0.1, 5.0 if cls.uses_temperature else None,
                     5.0 if cls.uses_temperature else None, ("network",), run_epochs=2)
    method.on_epoch(model, step)
    if cls.train_mode is not None:
        method.set_mode(model, cls.train_mode)
    model.train()
    x = torch.rand(4, 1, 6, 6)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for p in list(model.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert not own or any(float(p.grad.abs().sum()) > 0 for p in own)
    if weights:
        assert model.conv2.parametrizations.weight.original.grad.abs().sum() > 0
    # as after the run's last epoch: INQ freezes what is left
    method.on_epoch_end(model, dataclasses.replace(step, epoch=2, phase_epoch=2))

    # phase switches: weight quantization off gives the FP weight back exactly
    if weights:
        method.set_enabled(model, weights=False)
        assert torch.equal(model.conv2.weight, model.conv2.parametrizations.weight.original)
        method.set_enabled(model, weights=True)
        assert not torch.equal(model.conv2.weight, model.conv2.parametrizations.weight.original)
    with pytest.raises(ValueError, match="has no mode 'nope'"):
        method.set_mode(model, "nope")

    model.eval()
    if cls.eval_mode is not None:
        method.set_mode(model, cls.eval_mode)
        assert method.current_mode(model) == cls.eval_mode
    with torch.no_grad():
        expected = model(x)

    size = method.size_bits(model)
    own_ids = {id(p) for p in own}
    assert size["fp_bits"] == 32 * sum(p.numel() for p in model.parameters() if id(p) not in own_ids)
    assert size["weight_bits"] == (32 * (8 * 4 * 9 + 6 * 8) if weights else 0)
    assert size["quantized_bits"] == size["fp_bits"] - size["weight_bits"] + size["quantized_weight_bits"]
    if weights:
        assert 0 < size["quantized_weight_bits"] < size["weight_bits"]
        assert size["ratio"] == size["fp_bits"] / size["quantized_bits"] > 1
    else:
        assert size["quantized_weight_bits"] == 0 and size["ratio"] == 1

    if not method.exports_codes:
        return
    buffer = io.BytesIO()
    torch.save(method.export(model), buffer)
    buffer.seek(0)
    exported = torch.load(buffer, weights_only=True)
    other = _tiny(seed=5)
    other_method = quantize_(other, config)
    other.load_state_dict(model.state_dict())
    other_method.load_export(other, exported)
    if weights:
        assert not hasattr(other.conv2, "parametrizations")  # plain float weights now
    other.eval()
    if cls.eval_mode is not None:
        other_method.set_mode(other, cls.eval_mode)
    with torch.no_grad():
        assert torch.equal(other(x), expected)


def test_toy_export_holds_codes_and_codebook():
    model = _tiny()
    method = quantize_(model, toy_sign_method.SignConfig(activations=None))
    assert method.input_modules(model) == {} and method.parameters(model) == []
    exported = method.export(model)
    assert exported["format"] == CODES_FORMAT and exported["method"] == "sign"
    entry = exported["weights"]["conv2"]
    w = model.conv2.parametrizations.weight.original.detach()
    assert entry["codes"].dtype == torch.uint8 and torch.equal(entry["codes"].long(), (w >= 0).long())
    assert torch.equal(entry["codebook"], torch.stack([-w.abs().mean(), w.abs().mean()]))
    # 1 bit per weight plus two 32-bit codebook entries per layer
    assert method.weight_storage_bits(model) == {"conv2": 8 * 4 * 9 + 64, "fc1": 6 * 8 + 64}
    with pytest.raises(ValueError, match="not a qbench-codes-v1 export of method 'sign'"):
        method.load_export(model, {**exported, "method": "qn"})


def _run_config(tmp_path, quant: dict, epochs: dict) -> dict:
    return merge(SMOKE, {"data": {"train_size": 16, "test_size": 16, "batch_size": 16},
                         "quant": quant, "epochs": {"fp": 0, **epochs}})


def test_yaml_quant_section_names_the_method(tmp_path):
    from qbench.train.config import Config, ConfigError

    paper = Config.from_dict(_run_config(tmp_path, {"weights": "ternary"}, {"weights": 1}))
    # the paper's method is the default; the resolved config names it and its options
    assert paper.quant.method == "qn" and paper.to_dict()["quant"]["method"] == "qn"
    assert paper.to_dict()["quant"]["options"] == get_method("qn").section_options(QuantPolicy("ternary"))
    assert paper.quant.method_config() == QuantPolicy("ternary")
    assert Config.from_dict(paper.to_dict()) == paper
    toy = Config.from_dict(_run_config(tmp_path, {"method": "sign", "weights": "binary"}, {"weights": 1}))
    assert toy.to_dict()["quant"]["method"] == "sign"
    assert Config.from_dict(toy.to_dict()) == toy
    assert toy.quant.method_config() == toy_sign_method.SignConfig("binary", None)
    for quant, needle in [({"method": "nope", "weights": "binary"}, "quant.method: must be one of"),
                          ({"method": "sign", "weights": "binary", "init": "linear"},
                           "quant.init: unknown key (known: method, weights"),
                          ({"method": "sign", "weights": "binary", "options": {"bits": 2}},
                           "quant.options.bits: unknown option of method 'sign'"),
                          ({"method": "sign", "weights": "ternary"}, "quant.options: weights: the sign method"),
                          ({"weights": "ternary", "options": {"init": "cubic"}},
                           "quant.options.init: must be one of ('kmeans', 'linear'), got 'cubic'"),
                          ({"weights": "ternary", "init": "cubic"},
                           "quant.init: must be one of ('kmeans', 'linear'), got 'cubic'"),
                          ({"weights": "ternary", "init": "linear", "options": {"init": "linear"}},
                           "quant.init: given both here and as quant.options.init")]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            Config.from_dict(_run_config(tmp_path, quant, {"weights": 1}))


def test_toy_method_trains_through_the_trainer(tmp_path):
    """The toy method, named in the YAML quant: section, runs the classification trainer's
    phases, evaluation, export and model size without any other change."""
    from qbench.train import Config, run

    cfg = Config.from_dict(_run_config(tmp_path, {"method": "sign", "weights": "binary",
                                                  "activations": "act_binary", "calib_samples": 16},
                                       {"weights": 1, "activations": 1}))
    out = tmp_path / "run"
    metrics = run(cfg, out, quiet=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["quant"]["method"] == "sign"
    assert [r["phase"] for r in metrics["history"]] == ["weights", "activations"]
    assert [r["T"] for r in metrics["history"]] == [None, None]  # no temperature in this method
    # no soft mode: "soft" repeats the single evaluation
    assert all(r["soft_top1"] == r["hard_top1"] for r in metrics["history"])
    with np.load(out / "predictions.npz") as pred:
        assert np.array_equal(pred["soft"], pred["hard"])
    exported = torch.load(out / "model_hard.pt", weights_only=True)
    assert exported["format"] == CODES_FORMAT and exported["method"] == "sign"
    assert metrics["model_bits"]["ratio"] > 1
    assert metrics["quant_report"]["weight_layers"] == metrics["quant_report"]["activation_layers"]
    assert len(metrics["quant_report"]["weight_layers"]) > 10
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["final"]["hard_top1"] == metrics["final"]["hard_top1"]
    assert math.isfinite(saved["history"][-1]["train_loss"])


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_unknown_method_exits_2_naming_the_key(tmp_path, capsys, task):
    from qbench.cli import main

    raw = _run_config(tmp_path, {"method": "lsq_typo", "weights": "binary"}, {"weights": 1})
    if task == "detect":
        raw = {"task": "detect", "data": {"train_size": 4, "test_size": 2},
               "quant": {"method": "lsq_typo", "weights": "binary"}, "epochs": {"weights": 1}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "quant.method" in err[0] and "lsq_typo" in err[0]
    assert not (tmp_path / "run").exists()


def test_size_of_a_method_without_codes_comes_from_its_bits():
    class Scaled(nn.Module):
        bits = 2

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w * self.scale.mean()

    class NoCodes(toy_sign_method.SignMethod):  # not registered: used directly
        def weight_quantizer(self, name, layer):
            return Scaled()

    model = _tiny()
    method = NoCodes(toy_sign_method.SignConfig())
    method.quantize(model)
    assert method.weight_storage_bits(model) == {"conv2": 8 * 4 * 9 * 2 + 3 * 32, "fc1": 6 * 8 * 2 + 3 * 32}
    with pytest.raises(NotImplementedError, match="has no codes"):
        method.export(model)


def test_detection_hooks_drive_any_method():
    """The mmengine hooks switch phases and run the per-epoch step through the interface."""
    pytest.importorskip("mmengine")
    from types import SimpleNamespace

    from qbench.detection.hooks import MethodEpochHook, PhaseHook
    from qbench.train.config import EpochsConfig

    model = _tiny()
    method = quantize_(model, toy_sign_method.SignConfig(activations="act_binary"))
    phases = ["weights", "activations", "joint"]
    plan = [EpochPlan(e + 1, p, 1, 0.1, None, None, ()) for e, p in enumerate(phases)]
    phase_hook, epoch_hook = PhaseHook(EpochsConfig(weights=1, activations=1, joint=1), method), \
        MethodEpochHook(method, plan)
    act = {id(p) for p in method.parameters(model, "activations")}
    assert act and not act & {id(p) for p in method.parameters(model, "weights")}
    for epoch, phase in enumerate(phases):
        runner = SimpleNamespace(model=model, epoch=epoch)
        phase_hook.before_train_epoch(runner)
        epoch_hook.before_train_epoch(runner)
        assert phase_hook.phase == phase and epoch_hook.current is None
        assert all(m.enabled for m in method.weight_modules(model).values())
        assert all(m.enabled == (phase != "weights") for m in method.input_modules(model).values())
        # the phases of qbench.train.phases.configure_phase, as in the classification trainer:
        # weights trains all but the input quantizers, activations only them, joint everything
        trained = {id(p) for p in model.parameters() if p.requires_grad}
        everything = {id(p) for p in model.parameters()}
        assert trained == {"weights": everything - act, "activations": act, "joint": everything}[phase]


@pytest.mark.parametrize("name", ["lsq", "dorefa"])
def test_baseline_method_trains_w2a2_through_the_trainer(tmp_path, name):
    """A baseline named in the YAML quant: section at W2/A2 runs the trainer's phases,
    calibration, evaluation, export and model size."""
    from qbench.train import Config, run

    cfg = Config.from_dict(_run_config(tmp_path, {"method": name, "weights": "linear2", "activations": "act_2bit",
                                                  "calib_samples": 16}, {"weights": 1, "joint": 1}))
    out = tmp_path / "run"
    metrics = run(cfg, out, quiet=True)
    assert [r["phase"] for r in metrics["history"]] == ["weights", "joint"]
    assert all(math.isfinite(r["train_loss"]) for r in metrics["history"])
    exported = torch.load(out / "model_hard.pt", weights_only=True)
    assert exported["format"] == CODES_FORMAT and exported["method"] == name
    # 2-bit codes: four levels per layer
    assert all(int(e["codes"].max()) < 4 and e["codebook"].shape == (4,) for e in exported["weights"].values())
    assert metrics["model_bits"]["ratio"] > 1
    layers = metrics["quant_report"]["weight_layers"]
    assert layers == metrics["quant_report"]["activation_layers"] and len(layers) > 10
    # the exported model, loaded back, predicts what the trained model did in evaluation
    from qbench.models import build_model
    model = build_model(cfg.model.arch, cfg.model.num_classes, cfg.model.in_channels)
    method = quantize_(model, cfg.quant.method_config())
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=False)["model"])
    model.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = model(x)
        method.load_export(model, exported)
        assert torch.equal(model(x), expected)


def test_activations_phase_needs_learned_input_parameters(tmp_path):
    """DoReFa's input quantizer learns nothing: an activations phase would train no parameter."""
    from qbench.train import Config, run
    from qbench.train.trainer import TrainingError

    cfg = Config.from_dict(_run_config(tmp_path, {"method": "dorefa", "weights": "linear2", "activations": "act_2bit",
                                                  "calib_samples": 16}, {"weights": 1, "activations": 1}))
    with pytest.raises(TrainingError, match=r"^epochs\.activations: method 'dorefa' learns no input-quantizer"):
        run(cfg, tmp_path / "run", quiet=True)


@pytest.mark.parametrize("quant,needle", [
    ({"method": "lsq", "weights": "binary"}, "quant.weights: method 'lsq' has 2..8-bit weights, got 'binary'"),
    ({"method": "bwn", "weights": "ternary"}, "quant.weights: method 'bwn' has 1-bit weights"),
    ({"method": "twn", "weights": "ternary", "activations": "act_2bit"},
     "quant.activations: method 'twn' does not quantize activations"),
    ({"method": "dorefa", "weights": "3bit_pm4"}, "quant.weights: '3bit_pm4' is no bit width"),
    ({"method": "lqnet", "activations": "act_linear5"}, "quant.activations: method 'lqnet' has 1..4-bit"),
    ({"method": "ttq", "weights": "ternary", "options": {"threshold": 2}}, "quant.options: threshold must be"),
    ({"method": "hwgq", "activations": "act_2bit", "options": {"alpha": 1}}, "quant.options.alpha: unknown option"),
])
def test_baseline_settings_are_refused_naming_the_key(tmp_path, quant, needle):
    from qbench.train.config import Config, ConfigError

    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")) as info:
        Config.from_dict(_run_config(tmp_path, quant, {"weights": 1}))
    assert "\n" not in str(info.value)


def test_baseline_level_set_names_give_bit_widths():
    from qbench.quant.methods.baselines import bits_of

    assert [bits_of(n, "weights") for n in ("binary", "ternary", "linear3", "5bit")] == [1, 2, 3, 5]
    assert [bits_of(n, "activations") for n in ("act_binary", "act_2bit", "act_linear4")] == [1, 2, 4]
    assert bits_of(None, "weights") is None
    for name, key in (("act_2bit", "weights"), ("ternary", "activations"), ("pow2_3", "weights")):
        with pytest.raises(ValueError, match=f"^{key}: "):
            bits_of(name, key)
    cfg = get_method("hwgq").config_from_section(None, "act_binary", {"uniform": False})
    model = _tiny()
    method = quantize_(model, cfg)
    assert method.input_modules(model)["conv2"].quantizer.quantizer.quantizer.uniform is False


@pytest.mark.parametrize("run_epochs, starts", [(1, [1, 1, 1, 1]), (3, [1, 1, 2, 3]), (4, [1, 2, 3, 4]),
                                                (55, [1, 14, 28, 42])])
def test_inq_freezes_its_portions_on_the_runs_epoch_schedule(run_epochs, starts):
    """Portions 50/75/87.5/100 % at the starts of evenly spaced epochs, so the last epochs
    re-train the rest of the network around fully quantized weights."""
    from qbench.quant.baselines.inq import stages_due as inq_stages_due

    due = [inq_stages_due(e, run_epochs, 4) for e in range(1, run_epochs + 1)]
    assert due == [sum(1 for s in starts if s <= e) for e in range(1, run_epochs + 1)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 3))
    method = quantize_(model, get_method("inq").config_from_section("5bit", None, {}))
    quantizer = method.weight_modules(model)["1"].quantizer
    shares = []
    for epoch in range(1, run_epochs + 1):
        step = EpochPlan(epoch, "weights", epoch, 0.1, None, None, ("network",), run_epochs=run_epochs)
        method.on_epoch(model, step)
        shares.append(float(quantizer.frozen.float().mean()))
        method.on_epoch_end(model, step)
    assert shares == [(0.0, 0.5, 0.75, 0.875, 1.0)[d] for d in due]
    assert bool(quantizer.frozen.all())  # after the last epoch: every weight quantized, exportable
    codes = method.export(model)["weights"]["1"]
    assert codes["codebook"].numel() == 17  # INQ's 5 bits: 0 and +-2^n, 8 powers


def test_inq_ternary_runs_the_papers_2_bit_portions():
    """Sec. 3.4 of the INQ paper: ten accumulated portions at 2 bits, frozen over the run."""
    from qbench.quant.baselines.inq import stages_due as inq_stages_due

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 2 * 2, 3))
    method = quantize_(model, get_method("inq").config_from_section("ternary", None, {}))
    quantizer = method.weight_modules(model)["1"].quantizer
    assert quantizer.portions == (0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0)
    run_epochs = 10
    for epoch in range(1, run_epochs + 1):
        step = EpochPlan(epoch, "weights", epoch, 0.1, None, None, ("network",), run_epochs=run_epochs)
        method.on_epoch(model, step)
        assert quantizer.stage == inq_stages_due(epoch, run_epochs, 10) == epoch
        assert int(quantizer.frozen.sum()) == round(quantizer.portions[epoch - 1] * 288)
        method.on_epoch_end(model, step)
    assert method.export(model)["weights"]["1"]["codebook"].numel() == 3  # 0 and +-2^n1
