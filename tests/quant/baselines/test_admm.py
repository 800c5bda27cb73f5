"""ADMM (Leng et al. 2018): projection onto alpha * L, the G/mu updates and the penalty against
literal loops."""

import math

import numpy as np
import pytest
import torch

from qbench.quant.baselines import ADMMQuantizer
from qbench.quant.baselines.admm import LEVEL_SETS


def projection_reference(v: np.ndarray, levels, steps=50):
    """alpha_0 = mean|v|; Q_i = the nearest level of v_i / alpha (ties: the lower one, i.e. the
    first l with v_i <= alpha (L_l + L_{l+1}) / 2); alpha = <v, Q> / <Q, Q>; until Q is stable."""
    flat = v.reshape(-1)
    alpha = math.fsum(abs(x) for x in flat) / flat.size
    codes = None
    for _ in range(steps):
        new = []
        for x in flat:
            k = len(levels) - 1
            for l in range(len(levels) - 1):
                if x <= (levels[l] + levels[l + 1]) / 2 * alpha:
                    k = l
                    break
            new.append(k)
        if new == codes:
            break
        codes = new
        q = [levels[k] for k in codes]
        alpha = math.fsum(x * y for x, y in zip(flat, q)) / math.fsum(y * y for y in q)
    return np.array([levels[k] * alpha for k in codes]).reshape(v.shape), alpha


@pytest.mark.parametrize("name", list(LEVEL_SETS))
@pytest.mark.parametrize("seed", range(3))
def test_projection_equals_the_alternating_minimisation(name, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 4, 3, generator=gen, dtype=torch.float64) * 0.2
    w.view(-1)[:3] = torch.tensor([0.0, 1.5, -2.0], dtype=torch.float64)
    q = ADMMQuantizer(name).double().eval()
    y = q(w)
    y_ref, alpha_ref = projection_reference(w.numpy(), LEVEL_SETS[name])
    torch.testing.assert_close(y, torch.from_numpy(y_ref), rtol=1e-12, atol=1e-14)
    # a fixed point of both steps: alpha is the least-squares scale of the final codes
    codes, levels = q.export(w)
    unit = torch.tensor(LEVEL_SETS[name], dtype=torch.float64)[codes.long()]
    alpha = float(levels[-1]) / LEVEL_SETS[name][-1]
    assert alpha == pytest.approx(float((w * unit).sum() / (unit * unit).sum()), rel=1e-12)


@pytest.mark.parametrize("name", ["binary", "ternary", "pm4"])
def test_admm_step_and_penalty(name):
    gen = torch.Generator().manual_seed(7)
    w0 = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    q = ADMMQuantizer(name, rho=0.5).double()
    q.initialize(w0)
    g0, _ = projection_reference(w0.numpy(), LEVEL_SETS[name])
    torch.testing.assert_close(q.target, torch.from_numpy(g0), rtol=1e-12, atol=1e-14)
    assert torch.equal(q.dual, torch.zeros_like(w0))
    w1 = (w0 + 0.1 * torch.randn(w0.shape, generator=gen, dtype=torch.float64)).requires_grad_()
    q.admm_step(w1)
    g1, _ = projection_reference(w1.detach().numpy(), LEVEL_SETS[name])  # W + mu with mu = 0
    mu1 = w1.detach().numpy() - g1
    torch.testing.assert_close(q.target, torch.from_numpy(g1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(q.dual, torch.from_numpy(mu1), rtol=1e-12, atol=1e-14)
    w2 = w1.detach() * 0.9
    q.admm_step(w2)
    g2, _ = projection_reference(w2.numpy() + mu1, LEVEL_SETS[name])
    torch.testing.assert_close(q.target, torch.from_numpy(g2), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(q.dual, torch.from_numpy(mu1 + w2.numpy() - g2), rtol=1e-12, atol=1e-13)
    # penalty (rho/2)||W - G + mu||^2 and its gradient rho (W - G + mu)
    w3 = w2.clone().requires_grad_()
    p = q.penalty(w3)
    residual = w2.numpy() - g2 + (mu1 + w2.numpy() - g2)
    assert float(p.detach()) == pytest.approx(0.25 * float((residual ** 2).sum()), rel=1e-12)
    (grad,) = torch.autograd.grad(p, w3)
    torch.testing.assert_close(grad, 0.5 * torch.from_numpy(residual), rtol=1e-12, atol=1e-14)


def test_training_forward_is_the_full_precision_weight():
    w = torch.randn(3, 4, requires_grad=True)
    q = ADMMQuantizer("ternary")
    q.initialize(w.detach())
    assert q.train()(w) is w
    assert q.eval()(w).unique().numel() <= 3


def test_admm_drives_the_weights_onto_the_level_set():
    """f(W) = ||W - W*||^2 with the penalty: W ends on its projection (for a penalty large
    against the curvature of f, 2 here; rho = 1 stalls at half the gap)."""
    gen = torch.Generator().manual_seed(3)
    w_star = torch.randn(200, generator=gen, dtype=torch.float64)
    w = w_star.clone().requires_grad_()
    q = ADMMQuantizer("ternary", rho=4.0).double()
    q.initialize(w.detach())
    gap = lambda: float((w.detach() - q.projection(w.detach())).norm())
    start = gap()
    optim = torch.optim.SGD([w], lr=0.05)
    for _ in range(30):
        for _ in range(10):
            optim.zero_grad()
            (((w - w_star) ** 2).sum() + q.penalty(w)).backward()
            optim.step()
        q.admm_step(w)
    assert gap() < 1e-9 * start


def test_invalid_arguments():
    with pytest.raises(ValueError) as info:
        ADMMQuantizer("pm8")
    assert str(info.value) == "levels must be one of ['binary', 'pm2', 'pm4', 'ternary'], got 'pm8'"
    with pytest.raises(ValueError, match=r"^rho must be a positive number, got 0$"):
        ADMMQuantizer("binary", rho=0)
    with pytest.raises(ValueError, match="before initialize"):
        ADMMQuantizer("binary").penalty(torch.ones(2))


def test_all_zero_weight_projects_to_zero():
    y = ADMMQuantizer("ternary").eval()(torch.zeros(2, 3))
    assert torch.equal(y, torch.zeros(2, 3))
