"""ABC-Net (Lin et al. 2017, Secs. 3.1-3.2) against literal numpy loops."""

import math

import numpy as np
import pytest
import torch

from qbench.quant.baselines import ABCActivationQuantizer, ABCWeightQuantizer


def weight_reference(w: np.ndarray, g: np.ndarray, m: int):
    """B_i = sign(W - mean + u_i std), u_i = -1 + (i-1) 2/(M-1); alpha = argmin ||W - B alpha||;
    forward sum_i alpha_i B_i; STE backward sum_i alpha_i g."""
    flat = w.reshape(-1)
    mean = math.fsum(flat) / flat.size
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in flat) / flat.size)
    u = [0.0] if m == 1 else [-1 + (i - 1) * 2 / (m - 1) for i in range(1, m + 1)]
    B = np.array([[1.0 if v - mean + ui * std >= 0 else -1.0 for ui in u] for v in flat])  # (numel, M)
    alpha = np.linalg.lstsq(B, flat, rcond=None)[0]
    out = np.array([sum(alpha[i] * B[n, i] for i in range(m)) for n in range(flat.size)])
    return out.reshape(w.shape), g * sum(alpha), alpha


def activation_reference(r: np.ndarray, g: np.ndarray, beta, v):
    """A_n = 1[hclip(R + v_n) >= 0.5], forward sum beta_n A_n; STE 1[0 <= R + v_n <= 1]."""
    flat, gf = r.reshape(-1), g.reshape(-1)
    out, grad_r = np.zeros_like(flat), np.zeros_like(flat)
    grad_beta, grad_v = [[] for _ in beta], [[] for _ in beta]
    for i, value in enumerate(flat):
        for n, (b, s) in enumerate(zip(beta, v)):
            on = min(max(value + s, 0.0), 1.0) >= 0.5
            inside = 0.0 <= value + s <= 1.0
            out[i] += b * on
            grad_beta[n].append(gf[i] * on)
            if inside:
                grad_r[i] += b * gf[i]
                grad_v[n].append(b * gf[i])
    return (out.reshape(r.shape), grad_r.reshape(r.shape), np.array([math.fsum(x) for x in grad_beta]),
            np.array([math.fsum(x) for x in grad_v]))


@pytest.mark.parametrize("m", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", range(3))
def test_weights_equal_the_paper(m, seed):
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64) * 0.1 + 0.01).requires_grad_()
    g = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    q = ABCWeightQuantizer(m)
    y = q(w)
    (grad,) = torch.autograd.grad((y * g).sum(), w)
    y_ref, grad_ref, alpha_ref = weight_reference(w.detach().numpy(), g.numpy(), m)
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, torch.from_numpy(grad_ref), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(q.bases_and_scales(w)[1], torch.from_numpy(alpha_ref), rtol=1e-10, atol=1e-12)
    assert y.detach().unique().numel() <= m + 1


def test_more_bases_fit_better():
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = [float(((ABCWeightQuantizer(m)(w) - w) ** 2).mean()) for m in (1, 2, 3, 5)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 2 * errors[-1]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", range(3))
def test_activations_equal_the_paper(n, seed):
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64) * 1.5
    g = torch.randn(r.shape, generator=gen, dtype=torch.float64)
    q = ABCActivationQuantizer(n).double()
    with torch.no_grad():  # dyadic shifts: R = 0.5 - v and R = -v, 1 - v below are exact ties
        q.v.copy_(torch.tensor([0.5 - 0.25 * (k + 1) for k in range(n)], dtype=torch.float64))
        q.beta.copy_(torch.rand(n, generator=gen, dtype=torch.float64) + 0.1)
    v = q.v.detach().tolist()
    edges = [0.5 - v[0], -v[0], 1 - v[0], 0.5 - v[-1], 0.0, -5.0, 9.0]
    r.view(-1)[: len(edges)] = torch.tensor(edges, dtype=torch.float64)
    r.requires_grad_()
    y = q(r)
    grad_r, grad_beta, grad_v = torch.autograd.grad((y * g).sum(), (r, q.beta, q.v))
    y_ref, grad_r_ref, grad_beta_ref, grad_v_ref = activation_reference(
        r.detach().numpy(), g.numpy(), q.beta.detach().tolist(), v)
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(grad_r, torch.from_numpy(grad_r_ref), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(grad_beta, torch.from_numpy(grad_beta_ref), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(grad_v, torch.from_numpy(grad_v_ref), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("n, thresholds", [(1, [0.0]), (2, [-1.0, 1.0]), (3, [-1.0, 0.0, 1.0])])
def test_activation_thresholds_start_at_the_weight_shifts(n, thresholds):
    """On a standardised input the bases switch on at u_n (Sec. 3.1's shifts): one base is the
    sign of the normalised input, so half of a symmetric input is on."""
    q = ABCActivationQuantizer(n).double()
    assert (0.5 - q.v.detach()).tolist() == pytest.approx(thresholds)
    x = torch.tensor(sorted(thresholds + [t - 0.01 for t in thresholds]), dtype=torch.float64)
    on = [round(float(v) * n) for v in q(x).detach()]  # beta_n = 1/N: the number of bases on
    assert on == [sum(t <= float(xi) for t in thresholds) for xi in x]
    z = torch.randn(10000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(float((q(z) > 0).double().mean()) - (0.5 if n == 1 else 0.84)) < 0.02