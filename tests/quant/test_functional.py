"""Eq. 7 / Eq. 12: the custom backward equals plain autograd; hard is the T -> inf limit."""

import pytest
import torch

from qbench.quant import (LevelSet, hard_quantize, hard_quantize_reference, kmeans_biases,
                          soft_quantize, soft_quantize_reference)
from qbench.quant.levels import PAPER_ACTIVATION_SETS, PAPER_WEIGHT_SETS

ALL_SETS = PAPER_WEIGHT_SETS + PAPER_ACTIVATION_SETS + ("act_linear8",)


def _biases(levels: LevelSet, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Sorted, well separated random biases spread over the level range."""
    n = levels.n
    lo, hi = levels.values[0], levels.values[-1]
    base = torch.linspace(lo, hi, n + 2, dtype=dtype)[1:-1]
    gap = (hi - lo) / (n + 1)
    return base + (torch.rand(n, generator=gen, dtype=dtype) - 0.5) * 0.4 * gap


def _params(levels, gen, dtype=torch.float64, learn=True):
    b = _biases(levels, gen, dtype).requires_grad_(learn)
    alpha = (0.2 + torch.rand((), generator=gen, dtype=dtype)).requires_grad_()
    beta = (0.5 + torch.rand((), generator=gen, dtype=dtype) * levels.p).requires_grad_()
    return b, alpha, beta


def _inputs(levels, beta, gen, numel=40, dtype=torch.float64, near=None, T=1.0):
    """Inputs spread over the levels, points deep in the saturated region and, with
    ``near`` biases, points within a few 1/T of them (where the steep sigmoids live)."""
    lo, hi = levels.values[0], levels.values[-1]
    u = lo + (hi - lo) * torch.rand(numel, generator=gen, dtype=dtype)
    far = torch.tensor([lo - 1e3, hi + 1e3, lo - 50.0, hi + 50.0], dtype=dtype)
    parts = [u, far]
    if near is not None:
        offsets = torch.tensor([-3.0, -1.0, 0.5, 2.0], dtype=dtype) / T
        parts.append((near.detach()[:, None] + offsets[None]).reshape(-1))
    return (torch.cat(parts) / beta.detach()).requires_grad_()


@pytest.mark.parametrize("name", ALL_SETS)
@pytest.mark.parametrize("T", [1.0, 3.0, 10.0, 100.0, 1e3, 1e4])
def test_gradcheck_against_finite_differences(name, T):
    levels = LevelSet.from_name(name)
    gen = torch.Generator().manual_seed(int(T) + len(name))
    for _ in range(3):
        b, alpha, beta = _params(levels, gen)
        # finite differences need eps * T * beta << 1 to resolve the steep sigmoids
        x = _inputs(levels, beta, gen, numel=12, near=b[:4], T=T)
        assert torch.autograd.gradcheck(
            lambda x, b, a, be: soft_quantize(x, levels, b, a, be, T), (x, b, alpha, beta),
            eps=1e-3 / (T * float(beta.detach())), atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("name", ALL_SETS)
@pytest.mark.parametrize("T", [1.0, 10.0, 100.0, 1e3, 1e4])
def test_custom_backward_equals_autograd_of_eq7(name, T):
    levels = LevelSet.from_name(name)
    gen = torch.Generator().manual_seed(7 + int(T))
    for _ in range(5):
        b, alpha, beta = _params(levels, gen)
        x = _inputs(levels, beta, gen, numel=200)
        w = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        y = soft_quantize(x, levels, b, alpha, beta, T)
        y_ref = soft_quantize_reference(x, levels, b, alpha, beta, T)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad((y * w).sum(), (x, b, alpha, beta))
        grads_ref = torch.autograd.grad((y_ref * w).sum(), (x, b, alpha, beta))
        for g, g_ref, what in zip(grads, grads_ref, ("x", "biases", "alpha", "beta")):
            assert torch.isfinite(g).all(), what
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9, msg=f"grad {what}, T={T}")


def test_eqs_8_to_11_closed_form():
    """The paper's Eqs. 8-11 with g_id = alpha * s_i * sigmoid(.) (see docs/quantizer.md)."""
    levels = LevelSet.bits3_pm4()
    gen = torch.Generator().manual_seed(3)
    b, alpha, beta = _params(levels, gen)
    x = _inputs(levels, beta, gen, numel=50)
    T = 4.0
    y = soft_quantize(x, levels, b, alpha, beta, T)
    gx, gb, ga, gbeta = torch.autograd.grad(y.sum(), (x, b, alpha, beta))
    s = levels.steps_tensor(dtype=torch.float64)
    with torch.no_grad():
        g = alpha * s[:, None] * torch.sigmoid(T * (beta * x[None] - b[:, None]))  # g_id
        term = (g * (alpha * s[:, None] - g)) / (alpha * s[:, None])
        torch.testing.assert_close(gx, (T * beta * term).sum(0))            # Eq. 8
        torch.testing.assert_close(ga, (y / alpha).sum())                   # Eq. 9
        torch.testing.assert_close(gbeta, (T * x[None] * term).sum())       # Eq. 10
        torch.testing.assert_close(gb, (-T * term).sum(1))                  # Eq. 11


@pytest.mark.parametrize("T", [1e4, 1e6, 1e9])
def test_saturated_inputs_give_no_nan(T):
    levels = LevelSet.bits5()
    b = _biases(levels, torch.Generator().manual_seed(0), torch.float32).requires_grad_()
    alpha = torch.tensor(0.1, requires_grad=True)
    beta = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor([-1e30, -1e6, -20.0, 0.0, 20.0, 1e6, 1e30], requires_grad=True)
    y = soft_quantize(x, levels, b, alpha, beta, T)
    y.sum().backward()
    for t in (y, x.grad, b.grad, alpha.grad, beta.grad):
        assert torch.isfinite(t).all()
    assert y[0].item() == pytest.approx(-1.5) and y[-1].item() == pytest.approx(1.5)


@pytest.mark.parametrize("name", ALL_SETS)
def test_hard_outputs_are_levels(name):
    levels = LevelSet.from_name(name)
    gen = torch.Generator().manual_seed(1)
    b = _biases(levels, gen, torch.float32)
    alpha = torch.tensor(0.37)
    x = torch.randn(10000, generator=gen) * levels.p * 2
    y = hard_quantize(x, levels, b, alpha, 1.0)
    allowed = torch.tensor(levels.values) * alpha
    assert torch.isin(y, allowed).all()
    assert torch.equal(y, hard_quantize_reference(x, levels, b, alpha, 1.0))
    assert not y.requires_grad


def test_hard_step_is_closed_on_the_right():
    # A(0) = 1 (Eq. 1): an input exactly on a bias takes the upper level
    levels = LevelSet.ternary()
    b = torch.tensor([-0.5, 0.5])
    y = hard_quantize(torch.tensor([-0.5, 0.5, 0.49]), levels, b, 1.0, 1.0)
    assert y.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("name", ALL_SETS)
def test_soft_tends_to_hard(name):
    levels = LevelSet.from_name(name)
    gen = torch.Generator().manual_seed(2)
    b = _biases(levels, gen)
    x = torch.randn(5000, generator=gen, dtype=torch.float64) * levels.p
    # keep inputs away from the biases so the limit is reached at finite T
    x = x[(x[:, None] - b[None]).abs().min(1).values > 1e-3]
    hard = hard_quantize(x, levels, b, 0.5, 1.0)
    errors = [(soft_quantize(x, levels, b, 0.5, 1.0, T) - hard).abs().max().item()
              for T in (1.0, 10.0, 100.0, 1e4, 1e5)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-6


def test_kmeans_biases_feed_hard_quantizer():
    levels = LevelSet.bits3_pm4()
    w = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    b = kmeans_biases(w * 5, levels).float()
    y = hard_quantize(w, levels, b, 1.0, 5.0)
    assert set(torch.unique(y).tolist()) <= set(levels.values)


def test_argument_errors():
    levels = LevelSet.ternary()
    x = torch.randn(4)
    with pytest.raises(ValueError, match="needs 2 biases"):
        soft_quantize(x, levels, torch.zeros(3), 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="temperature"):
        soft_quantize(x, levels, torch.tensor([-0.1, 0.1]), 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="sorted"):
        hard_quantize(x, levels, torch.tensor([0.1, -0.1]), 1.0, 1.0)
    with pytest.raises(ValueError, match="scalars"):
        soft_quantize(x, levels, torch.tensor([-0.1, 0.1]), torch.ones(2), 1.0, 1.0)
