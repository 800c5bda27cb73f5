"""Each baseline as its authors run it: start values, optimizer groups, schedules and level
counts are the ones its module docstring cites, on the quantized model and in the trainer's
optimizer; TTQ fine-tuned with the shared recipe's SGD lowers its loss instead of collapsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qbench.quant import get_method, quantize_
from qbench.quant.baselines import (ABCActivationQuantizer, HWGQuantizer, INQQuantizer, LQNetQuantizer, PACTQuantizer,
                                    StandardisedInput, TTQQuantizer)
from qbench.quant.methods.baselines import SPECS, level_counts, level_label

# (lr_mult, decay_mult) of each method's own parameters, as cited in its module; None: it has none
GROUPS = {"ttq": (1.0, 1.0), "pact": (1.0, 1.0), "lsq": (1.0, 0.0), "abcnet": (1.0, 0.0), "bwn": None,
          "twn": None, "dorefa": None, "hwgq": None, "lqnet": None, "inq": None}


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def test_every_baseline_has_its_cited_groups():
    assert set(GROUPS) == set(SPECS)


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_param_groups_are_the_cited_ones(name):
    model = _tiny()
    method = quantize_(model, get_method(name).example_config())
    groups = method.param_groups(model)
    own = method.parameters(model)
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in own)
    if GROUPS[name] is None:
        assert own == [] and [(g["lr_mult"], g["decay_mult"]) for g in groups] == [(1.0, 0.0)]
    else:
        assert own and [(g["lr_mult"], g["decay_mult"]) for g in groups] == [GROUPS[name]]


def test_ttq_scales_start_at_one_on_the_model():
    """czhu95/ternarynet ternary.py lines 36-37: Wp and Wn start at 1.0."""
    model = _tiny()
    method = quantize_(model, get_method("ttq").config_from_section("ternary", None, {}))
    quantizers = [s.quantizer for s in method.weight_modules(model).values()]
    assert quantizers and all(isinstance(q, TTQQuantizer) for q in quantizers)
    assert all(float(q.w_p.detach()) == 1.0 and float(q.w_n.detach()) == 1.0 for q in quantizers)


def test_pact_alpha_is_decayed_by_the_optimizer():
    """The paper's L2 penalty on alpha as weight decay: one SGD step with a zero loss gradient
    moves alpha by -lr * wd * alpha."""
    model = _tiny()
    method = quantize_(model, get_method("pact").config_from_section(None, "act_2bit", {}))
    lr, wd = 0.1, 0.01
    optimizer = torch.optim.SGD([{"params": g["params"], "lr": lr * g["lr_mult"], "weight_decay": wd * g["decay_mult"]}
                                 for g in method.param_groups(model)], lr=lr)
    alphas = [p for g in method.param_groups(model) for p in g["params"]]
    before = [float(a.detach()) for a in alphas]
    for a in alphas:
        a.grad = torch.zeros_like(a)
    optimizer.step()
    assert [float(a.detach()) for a in alphas] == pytest.approx([b * (1 - lr * wd) for b in before])
    assert all(isinstance(m.quantizer.quantizer, PACTQuantizer) for m in method.input_modules(model).values())


@pytest.mark.parametrize("name, activations, quantizer", [("hwgq", "act_2bit", HWGQuantizer),
                                                           ("abcnet", "act_binary", ABCActivationQuantizer)])
def test_quantizer_reads_a_batchnorm_without_affine(name, activations, quantizer):
    """HWGQ: zhaoweicai/hwgq res18 train_val.prototxt has a BatchNorm with no Scale before each
    Quant; ABC-Net binarizes batch-normalised inputs. Either quantizer then sees a standardised
    input whatever the layer's input scale."""
    model = _tiny()
    method = quantize_(model, get_method(name).config_from_section("binary", activations, {}))
    slots = method.input_modules(model)
    assert slots
    for layer_name, slot in slots.items():
        wrapper = slot.quantizer.quantizer
        assert isinstance(wrapper, StandardisedInput) and isinstance(wrapper.quantizer, quantizer)
        assert isinstance(wrapper.norm, nn.BatchNorm2d) and not wrapper.norm.affine
        assert wrapper.norm.num_features == model.get_submodule(layer_name).in_channels
    # a large-scale input still uses every level after the norm (train mode: batch statistics)
    wrapper = next(iter(slots.values())).quantizer.quantizer
    x = 50.0 * torch.randn(16, wrapper.norm.num_features, 6, 6) + 20.0
    used = torch.unique(wrapper.train()(x))
    assert len(used) == wrapper.num_levels
    if name == "hwgq":
        assert torch.equal(used, wrapper.quantizer.table)
        assert method.parameters(model, "activations") == []  # the norm has no learned affine
    else:  # ABC-Net's beta and v train; the norm adds nothing learned
        assert {id(p) for p in method.parameters(model, "activations")} == \
            {id(p) for s in slots.values() for p in s.quantizer.quantizer.quantizer.parameters()}


def test_hwgq_norm_statistics_travel_with_the_export():
    model = _tiny()
    method = quantize_(model, get_method("hwgq").config_from_section("binary", "act_2bit", {}))
    model.train()
    model(torch.randn(8, 1, 6, 6) * 3 + 1)
    exported = method.export(model)
    state = next(iter(exported["activations"].values()))
    assert {"quantizer.norm.running_mean", "quantizer.norm.running_var"} <= set(state)
    fresh = _tiny()
    fresh_method = quantize_(fresh, get_method("hwgq").config_from_section("binary", "act_2bit", {}))
    fresh_method.load_export(fresh, exported)
    name = next(iter(exported["activations"]))
    assert torch.equal(fresh_method.input_modules(fresh)[name].quantizer.quantizer.norm.running_var,
                       method.input_modules(model)[name].quantizer.quantizer.norm.running_var)


def test_lqnet_weight_gradient_passes_straight_through_outside_the_levels():
    """microsoft/LQ-Nets learned_quantization.py line 253: gradient y = x for weights."""
    q = LQNetQuantizer(1, signed=True, channels=2).eval()
    w = torch.tensor([[5.0, -5.0, 0.1], [0.2, -0.3, 9.0]], requires_grad=True)
    q.initialize(w.detach())
    (grad,) = torch.autograd.grad(q(w).sum(), w)
    assert torch.equal(grad, torch.ones_like(w))


@pytest.mark.parametrize("bits, stages", [(2, 10), (3, 10), (4, 10), (5, 4), (8, 4)])
def test_inq_portions_follow_the_bit_width(bits, stages):
    assert len(INQQuantizer(bits).portions) == stages


@pytest.mark.parametrize("method, weights, activations, expected, label", [
    ("lsq", "ternary", None, 4, "W 4 lv (QN 3)"), ("lqnet", "ternary", None, 4, "W 4 lv (QN 3)"),
    ("ttq", "ternary", None, 3, ""), ("twn", "ternary", None, 3, ""), ("inq", "ternary", None, 3, ""),
    ("inq", "linear3", None, 5, "W 5 lv (QN 7)"), ("abcnet", "linear5", None, 6, "W 6 lv (QN 31)"),
    ("bwn", "binary", None, 2, ""), ("lqnet", "linear3", None, 8, "W 8 lv (QN 7)"),
])
def test_level_counts_and_labels(method, weights, activations, expected, label):
    assert level_counts(method, weights, activations)["weights"] == expected
    assert level_label(method, weights, activations) == label


@pytest.mark.parametrize("method, weights", [("lsq", "ternary"), ("inq", "linear3"), ("ttq", "ternary"),
                                             ("abcnet", "linear3"), ("lqnet", "ternary")])
def test_level_counts_are_what_the_export_holds(method, weights):
    """The declared count is the size of the level table the trained method exports."""
    model = _tiny()
    m = quantize_(model, get_method(method).config_from_section(weights, None, {}))
    for slot in m.weight_modules(model).values():
        quantizer = slot.quantizer
        if hasattr(quantizer, "portions"):
            layer = next(n for n, s in m.weight_modules(model).items() if s is slot)
            while quantizer.stage < len(quantizer.portions):
                quantizer.advance(model.get_submodule(layer).parametrizations.weight.original.detach())
    for entry in m.export(model)["weights"].values():
        assert entry["codebook"].shape[-1] == level_counts(method, weights, None)["weights"]


def test_level_label_is_empty_for_the_papers_method():
    assert level_label("qn", "ternary", None) == ""


LR = 0.01


def _separable_batches(steps: int, seed: int):
    """3 classes of 8x8 images: a class template plus noise."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn(3, 1, 8, 8, generator=gen)
    for _ in range(steps):
        y = torch.randint(0, 3, (32,), generator=gen)
        yield templates[y] + 0.8 * torch.randn(32, 1, 8, 8, generator=gen), y


def test_ttq_fine_tuned_with_the_shared_sgd_does_not_collapse():
    """Mini-like recipe (SGD lr 0.01, momentum 0.9, weight decay 5e-4, gradient clip 5) after an
    FP start: the first step moves the scales by little, the loss after 40 steps is below its
    start and both scales stay positive."""
    model = _tiny()
    fp_opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in _separable_batches(40, 0):
        fp_opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        fp_opt.step()
    method = quantize_(model, get_method("ttq").config_from_section("ternary", None, {}))
    own = {id(p) for g in method.param_groups(model) for p in g["params"]}
    groups = [{"params": [p for p in model.parameters() if id(p) not in own], "lr_mult": 1.0, "decay_mult": 1.0}]
    groups += method.param_groups(model)
    optimizer = torch.optim.SGD([{"params": g["params"], "lr": LR * g["lr_mult"], "weight_decay": 5e-4 * g["decay_mult"]}
                                 for g in groups], lr=LR, momentum=0.9)
    params = [p for g in groups for p in g["params"]]
    scales = [p for g in method.param_groups(model) for p in g["params"]]
    losses = []
    for x, y in _separable_batches(40, 1):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            # the start decides the first step: relative SGD step lr |g| / W_p (0.2 % here from 1.0,
            # 9 % from the least-squares 0.15), and the scales' share of the clipped global norm
            steps = [LR * float(p.grad.abs() / p.detach().abs()) for p in scales]
            assert max(steps) < 0.01, steps
            share = torch.stack([p.grad.norm() for p in scales]).norm() / torch.stack(
                [p.grad.norm() for p in params if p.grad is not None]).norm()
            assert share < 0.25
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert scales and min(float(p.detach()) for p in scales) > 0


def test_trainer_builds_the_methods_groups(tmp_path, write_config, fp_checkpoint):
    """The optimizer of a real run (its checkpoint) holds TTQ's scales in a group with the run's
    weight decay, as tw-cifar10-resnet.py's '.*/W' decay does."""
    from qbench.cli import main

    out = tmp_path / "ttq"
    config = write_config({"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)},
                           "quant": {"method": "ttq", "weights": "ternary", "activations": None},
                           "epochs": {"fp": 0, "weights": 1}})
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    groups = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    wd = 0.0001  # tests/conftest.py SMOKE
    assert [(g["lr_mult"], g["weight_decay"]) for g in groups] == [(1.0, wd), (1.0, wd)]
    assert len(groups[1]["params"]) == 2 * 19  # W_p, W_n of ResNet-18's 19 quantized convs
