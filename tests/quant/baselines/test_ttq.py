"""TTQ (Zhu et al. 2017, Eqs. 6-9) against a literal loop."""

import numpy as np
import pytest
import torch

from qbench.quant.baselines import TTQQuantizer


def ttq_reference(w: np.ndarray, w_p: float, w_n: float, g: np.ndarray, t: float = 0.05):
    """Eq. 6 with Delta = t max|w| (Eq. 9); Eq. 7 (dW_p = sum over I_p, dW_n = -sum over I_n, the
    chain-rule sign for w^t = -W_n); Eq. 8 (latent gradient scaled by W_p, 1, W_n)."""
    flat, gf = w.reshape(-1), g.reshape(-1)
    delta = t * max(abs(v) for v in flat)
    out, grad = np.zeros_like(flat), np.zeros_like(flat)
    grad_p = grad_n = 0.0
    for i, v in enumerate(flat):
        if v > delta:
            out[i], grad[i] = w_p, w_p * gf[i]
            grad_p += gf[i]
        elif v < -delta:
            out[i], grad[i] = -w_n, w_n * gf[i]
            grad_n -= gf[i]
        else:
            out[i], grad[i] = 0.0, gf[i]
    return out.reshape(w.shape), grad.reshape(w.shape), grad_p, grad_n


def _weights(seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 40, generator=gen, dtype=torch.float64) * 0.3
    w[0, 0] = 2.0  # the maximum, so Delta = 0.1 exactly
    w[0, 1:7] = torch.tensor([0.1, -0.1, 0.0, 0.1000001, -0.0999999, -0.5], dtype=torch.float64)
    return w


@pytest.mark.parametrize("seed", range(5))
def test_forward_and_all_gradients_equal_the_paper(seed):
    w = _weights(seed).requires_grad_()
    q = TTQQuantizer().double()
    with torch.no_grad():
        q.w_p.fill_(0.7 + 0.1 * seed)
        q.w_n.fill_(1.3 - 0.1 * seed)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(50 + seed), dtype=torch.float64)
    y = q(w)
    grad_w, grad_p, grad_n = torch.autograd.grad((y * g).sum(), (w, q.w_p, q.w_n))
    y_ref, grad_ref, grad_p_ref, grad_n_ref = ttq_reference(w.detach().numpy(), float(q.w_p.detach()), float(q.w_n.detach()),
                                                            g.numpy())
    assert torch.equal(y.detach(), torch.from_numpy(y_ref))
    assert torch.equal(grad_w, torch.from_numpy(grad_ref))
    assert float(grad_p) == pytest.approx(grad_p_ref, rel=1e-12)
    assert float(grad_n) == pytest.approx(grad_n_ref, rel=1e-12)
    assert y[0, 1] == 0 and y[0, 2] == 0 and y[0, 4] == float(q.w_p.detach()) and y[0, 6] == -float(q.w_n.detach())


def test_gradient_descent_on_the_scales_lowers_the_loss():
    """The sign of Eq. 7 for W_n: a step along -grad fits a target better."""
    w = _weights(0)
    target = torch.where(w > 0.1, 0.4, torch.where(w < -0.1, -0.9, 0.0)).double()
    q = TTQQuantizer().double()
    loss = lambda: ((q(w) - target) ** 2).sum()
    before = loss()
    grads = torch.autograd.grad(before, (q.w_p, q.w_n))
    with torch.no_grad():
        for p, gr in zip((q.w_p, q.w_n), grads):
            p -= 0.01 * gr
    assert loss() < before
    assert float(q.w_n.detach()) < 1.0  # pulled towards 0.9


def test_initialize_starts_the_scales_at_the_released_codes_one():
    """W_p = W_n = 1 (czhu95/ternarynet ternary.py lines 36-37), in the paper's units: the
    weights divided by their maximum m = 2, so the ternary values are +-m."""
    w = torch.tensor([[2.0, 0.05, -0.1, 1.0, -0.5, -0.3]], dtype=torch.float64)
    q = TTQQuantizer().double()
    q.initialize(w)  # Delta = 0.1: I_p = {2, 1}, I_n = {-0.5, -0.3}; -0.1 is at the threshold
    assert float(q.norm) == 2.0
    assert float(q.w_p.detach()) == 1.0 and float(q.w_n.detach()) == 1.0
    assert torch.equal(q(w).detach(), torch.tensor([[2.0, 0, 0, 2.0, -2.0, -2.0]], dtype=torch.float64))


def test_scales_train_at_the_networks_lr_with_its_weight_decay():
    """The CIFAR script's one SGD for every variable (tw-cifar10-resnet.py lines 179-182) and
    its '.*/W' weight decay, which matches Wp and Wn (lines 124-126)."""
    assert (TTQQuantizer.lr_mult, TTQQuantizer.decay_mult) == (1.0, 1.0)


def test_scale_gradients_are_the_papers_in_normalised_units():
    """With m = max |w~|, the forward is m * ternary(w~ / m) and dL/dW_p is Eq. 7 on the
    normalised weights: m times the sum of dL/dw^t over I_p."""
    w = torch.tensor([[2.0, 0.05, -0.1, 1.0, -0.5, -0.3]], dtype=torch.float64, requires_grad=True)
    q = TTQQuantizer().double()
    q.initialize(w.detach())
    with torch.no_grad():
        q.w_p.fill_(0.75)
        q.w_n.fill_(0.2)
    g = torch.tensor([[0.3, -1.0, 2.0, 0.5, -0.2, 0.7]], dtype=torch.float64)
    grad_w, grad_p, grad_n = torch.autograd.grad((q(w) * g).sum(), (w, q.w_p, q.w_n))
    assert float(grad_p) == pytest.approx(2.0 * (0.3 + 0.5))
    assert float(grad_n) == pytest.approx(-2.0 * (-0.2 + 0.7))
    # Eq. 8 in normalised units, back to raw: W_p g on I_p, g on I_z, W_n g on I_n
    expected = torch.tensor([[0.75 * 0.3, -1.0, 2.0, 0.75 * 0.5, 0.2 * -0.2, 0.2 * 0.7]], dtype=torch.float64)
    assert torch.allclose(grad_w, expected)
