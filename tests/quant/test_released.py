"""The released variant of the paper's method (qbench.quant.variant): each of the authors'
released code's choices changes exactly what it should, the default stays the paper's, and the
option travels through the YAML quant section, checkpoints and exports."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from qbench.quant import QuantPolicy, kmeans_biases
from qbench.quant import functional as F
from qbench.quant import modules as M
from qbench.quant.export import export_hard_model, load_hard_model
from qbench.quant.levels import LevelSet
from qbench.quant.methods.qn import QuantizationNetworks
from qbench.quant.model import activation_quantizers, quantize_model, weight_quantizers
from qbench.quant.modules import ActivationQuantizer, WeightQuantizer
from qbench.quant.variant import PAPER, RELEASED, QuantVariant
from qbench.train.config import Config, ConfigError

D = torch.float64
SIG10 = 1.0 / (1.0 + math.exp(10.0))  # sigma(-10) = 4.54e-5
DSIG10 = SIG10 * (1.0 - SIG10)  # sigma'(10)


def _weights(n: int = 4096, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=D) * 0.05


def _run(q: nn.Module, x: torch.Tensor, T: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output and the gradients of x, alpha, beta for the loss sum(y * c), c fixed."""
    q.state.set_temperature(T)
    q.zero_grad()
    x = x.detach().clone().requires_grad_()
    y = q(x)
    c = torch.linspace(-1.0, 1.0, x.numel(), dtype=D).reshape(x.shape)
    (y * c).sum().backward()
    return y.detach(), x.grad, q.alpha.grad.clone(), q.beta.grad.clone()


def _quantizer(cls, levels: str, variant, x: torch.Tensor) -> M.Quantizer:
    q = cls(levels, variant=variant).double()
    q.initialize(x)
    return q


def _independent(x, steps, biases, alpha, beta, T, clamp=None, t_grad=None):
    """Eq. 7 and d y / d x recomputed here in float64 from the definition: the sigmoid argument
    T (beta x - b) (clamped when asked); the derivative of each sigmoid at temperature ``t_grad``
    (default T) times T."""
    x = x.detach().to(D)
    y = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    for s, b in zip(steps, biases.tolist()):
        z = T * (beta * x - b)
        if clamp is not None:
            z = torch.clamp(z, -clamp, clamp)
        y += s * torch.sigmoid(z)
        tz = (t_grad if t_grad is not None else T) * (beta * x - b)
        if clamp is not None:
            tz = torch.clamp(tz, -clamp, clamp)
        sg = torch.sigmoid(tz)
        dy += s * sg * (1 - sg)
    return y, dy * beta * T


# --- 1. clamp ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [WeightQuantizer, ActivationQuantizer])
def test_clamp_changes_forward_by_at_most_sigma_10_and_keeps_a_gradient_floor(cls):
    levels = "3bit_pm4" if cls is WeightQuantizer else "act_2bit"
    x = _weights() if cls is WeightQuantizer else _weights().abs()
    T = 200.0
    paper = _quantizer(cls, levels, None, x)
    clamped = _quantizer(cls, levels, {"clamp": True}, x)
    lv = LevelSet.from_name(levels)
    alpha, beta, b = clamped.alpha.item(), clamped.beta.item(), clamped.biases.detach()
    y_p, gx_p, _, _ = _run(paper, x, T)
    y_c, gx_c, ga_c, gb_c = _run(clamped, x, T)

    # against the definition written here, float64
    ref, dref = _independent(x, lv.steps, b, alpha, beta, T, clamp=10.0)
    ref = alpha * (ref - lv.offset)
    torch.testing.assert_close(y_c, ref, rtol=1e-12, atol=1e-14)
    c = torch.linspace(-1.0, 1.0, x.numel(), dtype=D)
    torch.testing.assert_close(gx_c, c * alpha * dref, rtol=1e-10, atol=1e-14)

    # forward: within sigma(-10) * alpha * sum(s) of the paper's, and it does differ
    bound = SIG10 * alpha * sum(lv.steps)
    diff = (y_c - y_p).abs()
    assert diff.max() <= bound * (1 + 1e-9)
    assert diff.max() > 0.1 * bound
    # gradient on elements where every sigmoid is saturated: the floor sigma'(10) * T per step
    u = beta * x
    saturated = ((T * (u[:, None] - b[None])).abs() > 10.0).all(1)
    assert saturated.sum() > 100
    floor = alpha * beta * T * sum(lv.steps) * DSIG10
    per_elem = gx_c[saturated] / c[saturated]
    torch.testing.assert_close(per_elem, torch.full_like(per_elem, floor), rtol=1e-9, atol=0)
    assert (gx_p[saturated] / c[saturated]).abs().max() < 0.5 * floor
    assert torch.isfinite(ga_c) and torch.isfinite(gb_c)


# --- 2. T cap --------------------------------------------------------------------------------

def test_t_cap_holds_weight_quantizers_at_2000_and_leaves_activations_alone():
    x = _weights()
    v = {"weight_t_cap": True}
    wq, wq_paper = _quantizer(WeightQuantizer, "3bit_pm4", v, x), _quantizer(WeightQuantizer, "3bit_pm4", None, x)
    # inputs within 1/2000 of a bias, where T = 2000 and T = 5000 differ
    b, beta = wq.biases.detach(), wq.beta.item()
    near = ((b[:, None] + torch.linspace(-2e-3, 2e-3, 41, dtype=D)[None]) / beta).reshape(-1)
    for a, c in zip(_run(wq, near, 5000.0), _run(wq, near, 2000.0)):
        assert torch.equal(a, c)
    y5, g5 = _run(wq_paper, near, 5000.0)[:2]
    y2, g2 = _run(wq_paper, near, 2000.0)[:2]
    assert (y5 - y2).abs().max() > 1e-3 and (g5 - g2).abs().max() > 1.0

    a_levels = "act_2bit"
    ax = x.abs()
    aq = _quantizer(ActivationQuantizer, a_levels, v, ax)
    aq_paper = _quantizer(ActivationQuantizer, a_levels, None, ax)
    anear = ((aq.biases.detach()[:, None] + torch.linspace(-2e-3, 2e-3, 41, dtype=D)[None]) / aq.beta.item()).reshape(-1)
    y5, g5 = _run(aq, anear, 5000.0)[:2]
    y2, g2 = _run(aq, anear, 2000.0)[:2]
    assert (y5 - y2).abs().max() > 1e-3
    # the activation quantizer is the paper's, bit for bit
    for a, c in zip(_run(aq, anear, 5000.0), _run(aq_paper, anear, 5000.0)):
        assert torch.equal(a, c)


# --- 3. unit-T weight backward ----------------------------------------------------------------

@pytest.mark.parametrize("levels", ["binary", "ternary", "3bit_pm4"])
def test_unit_t_backward_gives_weights_sigma_prime_at_1_times_t(levels):
    x = _weights()
    T = 20.0
    wq = _quantizer(WeightQuantizer, levels, {"unit_t_weight_backward": True}, x)
    paper = _quantizer(WeightQuantizer, levels, None, x)
    lv = LevelSet.from_name(levels)
    alpha, beta, b = wq.alpha.item(), wq.beta.item(), wq.biases.detach()
    y, gx, ga, gb = _run(wq, x, T)
    y_p, gx_p, ga_p, gb_p = _run(paper, x, T)
    # forward and the alpha gradient are the paper's (the fused kernel vs a loop: rounding only)
    torch.testing.assert_close(y, y_p, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ga, ga_p, rtol=1e-12, atol=1e-14)
    # d y / d x = alpha * beta * T * sum s sigma'(beta x - b)
    _, d1 = _independent(x, lv.steps, b, alpha, beta, T, t_grad=1.0)
    c = torch.linspace(-1.0, 1.0, x.numel(), dtype=D)
    torch.testing.assert_close(gx, c * alpha * d1, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(gb, (c * alpha * d1 * x).sum() / beta, rtol=1e-10, atol=1e-12)
    assert (gx - gx_p).abs().max() > 1e-2 * gx_p.abs().max()


def test_unit_t_backward_leaves_activation_gradients_unchanged():
    x = _weights().abs()
    aq = _quantizer(ActivationQuantizer, "act_2bit", {"unit_t_weight_backward": True}, x)
    paper = _quantizer(ActivationQuantizer, "act_2bit", None, x)
    for a, c in zip(_run(aq, x, 20.0), _run(paper, x, 20.0)):
        assert torch.equal(a, c)


# --- 4. strict hard step -----------------------------------------------------------------------

@pytest.mark.parametrize("levels", ["binary", "ternary", "3bit_pm4", "act_2bit"])
def test_strict_step_puts_an_input_on_a_bias_on_the_lower_level(levels):
    lv = LevelSet.from_name(levels)
    biases = torch.linspace(-0.5, 0.5, lv.n, dtype=D) if lv.n > 1 else torch.zeros(1, dtype=D)
    if not lv.zero_centered:
        biases = biases + 1.0
    outputs = torch.tensor(lv.outputs(), dtype=D)
    for cls in (WeightQuantizer, ActivationQuantizer):
        strict = cls(levels, variant={"strict_step": True}).double()
        paper = cls(levels).double()
        for q in (strict, paper):
            q.biases.copy_(biases)
            q.alpha.data.fill_(1.0)
            q.beta.data.fill_(1.0)
            q.state.set_mode("hard")
        on = biases.clone()  # beta = 1: exactly on each bias
        k = torch.arange(lv.n)
        assert torch.equal(strict(on), outputs[k])  # lower level
        assert torch.equal(paper(on), outputs[k + 1])  # Eq. 1: A(0) = 1
        off = torch.randn(1000, dtype=D)
        assert torch.equal(strict(off), paper(off))


# --- 5. point-midpoint k-means biases ------------------------------------------------------------

def test_point_midpoint_init_places_biases_between_clusters_extreme_points():
    u = torch.tensor([-1.0, -0.95, -0.9, -0.2, 0.0, 0.1, 0.8, 0.9, 1.3], dtype=D)
    ternary = LevelSet.from_name("ternary")
    assert kmeans_biases(u, ternary).tolist() == pytest.approx([-0.05, 0.05])  # the paper's band
    assert kmeans_biases(u, ternary, boundaries="points").tolist() == pytest.approx([-0.55, 0.45])
    # centre midpoints differ from point midpoints on the same clusters
    centres = torch.tensor([-0.95, -0.1 / 3, 1.0], dtype=D)
    assert ((centres[:-1] + centres[1:]) / 2).tolist() != pytest.approx([-0.55, 0.45])


@pytest.mark.parametrize("levels", ["ternary", "3bit_pm4", "5bit"])
def test_point_midpoint_init_on_weights_has_no_zero_band(levels):
    x = _weights(64 * 8 * 9)
    q = _quantizer(WeightQuantizer, levels, {"point_midpoint_init": True}, x)
    paper = _quantizer(WeightQuantizer, levels, None, x)
    b, bp = q.biases.detach(), paper.biases.detach()
    assert q.beta.item() == paper.beta.item()
    u = torch.sort((x * q.beta.detach()).float().to(D)).values
    for bias in b.tolist():
        j = int(torch.searchsorted(u, torch.tensor(bias, dtype=D), right=True))
        assert 0 < j < u.numel()
        assert bias == pytest.approx(float(u[j - 1] + u[j]) / 2, abs=1e-6)  # float32 buffer
    assert not any(abs(v) == pytest.approx(0.05) for v in b.tolist())
    assert any(abs(v) == pytest.approx(0.05) for v in bp.tolist())
    if levels == "ternary":
        # the band moves to where the clusters split (SPEC: about -0.178 / 0.175 at beta = 5/(4q))
        assert b[0] < -0.1 and b[1] > 0.1


# --- default: the paper's quantizer, unchanged -------------------------------------------------

def test_default_policy_is_the_papers_quantizer_bit_for_bit(monkeypatch):
    assert QuantPolicy().variant == PAPER == QuantVariant()
    assert QuantPolicy("binary", variant="paper") == QuantPolicy("binary")
    # today's k-means biases of a 3-bit(+-4) weight quantizer (float32 buffers, exact)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 8, 3, 3, generator=g, dtype=D) * 0.05
    q = WeightQuantizer("3bit_pm4")
    q.initialize(w.float())
    assert q.beta.item().hex() == "0x1.9ba6080000000p+4"
    assert [v.hex() for v in q.biases.tolist()] == [
        "-0x1.1848620000000p+1", "-0x1.349f280000000p+0", "-0x1.99999a0000000p-5",
        "0x1.99999a0000000p-5", "0x1.1bd2840000000p+0", "0x1.0a022e0000000p+1"]

    # the paper's modules never take the released path
    def refuse(*a, **k):
        raise AssertionError("the paper's quantizer took the released path")

    monkeypatch.setattr(M, "soft_quantize_released", refuse)
    monkeypatch.setattr(M, "hard_quantize_strict", refuse)
    x = w.reshape(-1).float()
    q.state.set_temperature(30.0)
    xr = x.clone().requires_grad_()
    y = q(xr)
    y.sum().backward()
    xf = x.clone().requires_grad_()
    y_f = F.soft_quantize(xf, q.levels, q.biases, q.alpha, q.beta, q.state.temperature_tensor)
    y_f.sum().backward()
    assert torch.equal(y, y_f) and torch.equal(xr.grad, xf.grad)
    q.state.set_mode("hard")
    assert torch.equal(q(x), F.hard_quantize(x, q.levels, q.biases, q.alpha, q.beta))


def test_released_is_every_choice_and_each_switches_alone():
    assert all(getattr(RELEASED, c) for c in QuantVariant.choices())
    assert QuantPolicy("binary", variant="released").variant == RELEASED
    for c in QuantVariant.choices():
        only = QuantVariant.from_config({c: True})
        assert [getattr(only, d) for d in QuantVariant.choices()] == [d == c for d in QuantVariant.choices()]
        but = QuantVariant.from_config({"base": "released", c: False})
        assert [getattr(but, d) for d in QuantVariant.choices()] == [d != c for d in QuantVariant.choices()]
        assert QuantVariant.from_config(only.to_config()) == only
        assert QuantVariant.from_config(but.to_config()) == but


# --- config: YAML section, checkpoint, export -----------------------------------------------------

_BASE = {"model": {"arch": "resnet18"}, "epochs": {"weights": 1, "joint": 1}}


@pytest.mark.parametrize("variant", ["released", {"clamp": True}, {"base": "released", "strict_step": False}])
def test_variant_round_trips_through_the_quant_section_and_a_checkpoint(variant):
    cfg = Config.from_dict({**_BASE, "quant": {"weights": "binary", "activations": "act_2bit", "variant": variant}})
    want = QuantVariant.from_config(variant)
    assert cfg.quant.method_config().variant == want
    method_cfg = cfg.quant.method_config()
    assert isinstance(method_cfg, QuantPolicy) and method_cfg.variant == want
    resolved = cfg.to_dict()
    buf = io.BytesIO()
    torch.save({"config": resolved}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)["config"]
    assert back == resolved
    again = Config.from_dict(back)
    assert again.quant.method_config().variant == want and again.to_dict() == resolved
    # the method's own section parser
    assert QuantizationNetworks.config_from_section("binary", None, {"variant": variant}).variant == want


def test_the_default_variant_resolves_to_one_config_whichever_way_it_is_written():
    """Omitted, written flat (the older form) or under quant.options: one resolved config
    (config.yaml, cache keys), which names the paper's variant."""
    cfg = Config.from_dict({**_BASE, "quant": {"weights": "binary"}})
    assert cfg.to_dict()["quant"]["options"]["variant"] == "paper"
    for quant in ({"weights": "binary", "variant": "paper"},
                  {"method": "qn", "weights": "binary", "options": {"variant": "paper"}}):
        assert Config.from_dict({**_BASE, "quant": quant}).to_dict() == cfg.to_dict()


def test_other_methods_refuse_the_variant_key():
    with pytest.raises(ConfigError, match=r"^quant\.variant: unknown key \(.*the options of method 'lsq': none\)$"):
        Config.from_dict({**_BASE, "quant": {"method": "lsq", "weights": "ternary", "variant": "released"}})


@pytest.mark.parametrize("bad, key", [
    ("relased", "variant"), (3, "variant"), ({"clamp": "yes"}, "variant.clamp"),
    ({"clamp": 1}, "variant.clamp"), ({"cap": True}, "variant.cap"), ({"base": "paperish"}, "variant.base"),
])
def test_bad_variants_are_one_line_errors_naming_the_key(bad, key):
    with pytest.raises(ValueError) as err:
        QuantPolicy("binary", variant=bad)
    msg = str(err.value)
    assert msg.startswith(f"QuantPolicy.{key}: ") and "\n" not in msg, msg
    with pytest.raises(ConfigError) as err:
        Config.from_dict({**_BASE, "quant": {"weights": "binary", "variant": bad}})
    msg = str(err.value)
    assert msg.startswith(f"quant.{key}: ") and "\n" not in msg, msg
    with pytest.raises(ValueError, match=r"^QuantVariant\.clamp must be true or false"):
        QuantVariant(clamp=1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 10))


def test_export_keeps_the_strict_step():
    policy = QuantPolicy("3bit_pm4", "act_2bit", include=("2",), variant="released")
    model = _net().double()
    quantize_model(model, policy)
    wq = weight_quantizers(model)["2"]
    layer = model.get_submodule("2")
    # a weight exactly on a bias (beta a power of two keeps the product exact)
    with torch.no_grad():
        wq.beta.fill_(4.0)
        layer.parametrizations.weight.original.view(-1)[0] = float(wq.biases[2]) / 4.0
    aq = activation_quantizers(model)["2"]
    aq.initialize(torch.rand(1000, dtype=D))
    exported = export_hard_model(model)
    entry = exported["weights"]["2"]
    assert entry["strict_step"] is True and exported["activations"]["2"]["strict_step"] is True
    assert int(entry["codes"].view(-1)[0]) == 2  # lower level; Eq. 1 would give 3
    wq.state.set_mode("hard")
    with torch.no_grad():
        hard = layer.weight.detach().clone()

    target = _net().double()
    quantize_model(target, QuantPolicy("3bit_pm4", "act_2bit", include=("2",)))
    load_hard_model(target, exported)
    assert torch.equal(target.get_submodule("2").weight, hard)
    assert activation_quantizers(target)["2"].variant.strict_step

    paper = _net().double()
    quantize_model(paper, QuantPolicy("3bit_pm4", "act_2bit", include=("2",)))
    activation_quantizers(paper)["2"].initialize(torch.rand(1000, dtype=D))
    out = export_hard_model(paper)
    assert "strict_step" not in out["weights"]["2"] and "strict_step" not in out["activations"]["2"]
