"""HWGQ (Cai et al. 2017): level tables and the quantizer against literal loops."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from qbench.quant.baselines import HWGQuantizer, half_gaussian_lloyd_max, half_gaussian_uniform_step

# Delta* of the uniform HWGQ as released by the authors with the paper (three decimals)
PUBLISHED_STEPS = {1: 0.799, 2: 0.538, 3: 0.3217, 4: 0.185}


def _mse_by_quadrature(levels):
    """int_0^inf (Q(x) - x)^2 phi(x) dx with levels q_1..q_m, t_1 = 0, midpoints between."""
    t = [0.0] + [(a + b) / 2 for a, b in zip(levels, levels[1:])] + [math.inf]
    return sum(integrate.quad(lambda x, q=q: (x - q) ** 2 * stats.norm.pdf(x), lo, hi, epsabs=1e-13)[0]
               for q, lo, hi in zip(levels, t, t[1:]))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_uniform_step_minimises_the_half_gaussian_error(bits):
    m = 2 ** bits - 1
    best = optimize.minimize_scalar(lambda d: _mse_by_quadrature([i * d for i in range(1, m + 1)]),
                                    bounds=(0.01, 3.0), method="bounded", options={"xatol": 1e-10})
    assert half_gaussian_uniform_step(bits) == pytest.approx(best.x, abs=1e-6)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_uniform_step_matches_the_published_steps(bits):
    assert half_gaussian_uniform_step(bits) == pytest.approx(PUBLISHED_STEPS[bits], abs=1.5e-3)


def test_one_bit_level_is_the_half_normal_mean():
    assert half_gaussian_uniform_step(1) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-14)
    assert half_gaussian_lloyd_max(1) == pytest.approx((math.sqrt(2 / math.pi),), rel=1e-14)


@pytest.mark.parametrize("bits", [2, 3])
def test_lloyd_max_levels_are_centroids_of_their_cells(bits):
    levels = half_gaussian_lloyd_max(bits)
    assert len(levels) == 2 ** bits - 1 and list(levels) == sorted(levels)
    t = [0.0] + [(a + b) / 2 for a, b in zip(levels, levels[1:])] + [math.inf]
    for q, lo, hi in zip(levels, t, t[1:]):
        mass = integrate.quad(stats.norm.pdf, lo, hi, epsabs=1e-14)[0]
        first = integrate.quad(lambda x: x * stats.norm.pdf(x), lo, hi, epsabs=1e-14)[0]
        assert q == pytest.approx(first / mass, abs=1e-9)
    # non-uniform levels fit better than the best uniform ones
    uniform = [i * half_gaussian_uniform_step(bits) for i in range(1, 2 ** bits)]
    assert _mse_by_quadrature(list(levels)) < _mse_by_quadrature(uniform)


def hwgq_reference(x: np.ndarray, g: np.ndarray, levels):
    """Forward: Q(x) = q_i for x in (t_i, t_{i+1}], 0 for x <= 0; backward (clipped ReLU):
    gradient 1 on (0, q_m]."""
    t = [0.0] + [(a + b) / 2 for a, b in zip(levels, levels[1:])] + [math.inf]
    flat, gf = x.reshape(-1), g.reshape(-1)
    out, grad = np.zeros_like(flat), np.zeros_like(flat)
    for n, v in enumerate(flat):
        for q, lo, hi in zip(levels, t, t[1:]):
            if lo < v <= hi:
                out[n] = q
        grad[n] = gf[n] if 0 < v <= levels[-1] else 0.0
    return out.reshape(x.shape), grad.reshape(x.shape)


@pytest.mark.parametrize("bits,uniform", [(1, True), (2, True), (3, True), (2, False)])
@pytest.mark.parametrize("seed", range(3))
def test_quantizer_equals_the_paper_forward_and_backward(bits, uniform, seed):
    q = HWGQuantizer(bits, uniform=uniform).double()
    levels = q.table[1:].tolist()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 40, generator=gen, dtype=torch.float64) * 1.3
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    thresholds = [(a + b) / 2 for a, b in zip(levels, levels[1:])]
    edges = [0.0, -0.0, -1.0, 1e-300, levels[-1], 50.0] + thresholds + [np.nextafter(t, np.inf) for t in thresholds]
    x.view(-1)[: len(edges)] = torch.tensor(edges, dtype=torch.float64)
    x.requires_grad_()
    y = q(x)
    (grad,) = torch.autograd.grad((y * g).sum(), x)
    y_ref, grad_ref = hwgq_reference(x.detach().numpy(), g.numpy(), levels)
    assert torch.equal(y.detach(), torch.from_numpy(y_ref))
    assert torch.equal(grad, torch.from_numpy(grad_ref))


def test_two_bit_uniform_levels():
    step = half_gaussian_uniform_step(2)
    torch.testing.assert_close(HWGQuantizer(2).table, torch.tensor([0.0, step, 2 * step, 3 * step]))
    x = torch.tensor([-1.0, 0.0, 0.01, 1.5 * step + 1e-4, 100.0])
    assert HWGQuantizer(2).export(x)[0].tolist() == [0, 0, 1, 2, 3]
