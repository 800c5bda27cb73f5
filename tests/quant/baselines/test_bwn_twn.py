"""BWN (XNOR-Net Sec. 3.1) and TWN (Li & Liu 2016, Delta = 0.7 E|W|) against literal loops."""

import math

import numpy as np
import pytest
import torch

from qbench.quant.baselines import BWNQuantizer, TWNQuantizer


def _weights(seed, shape=(4, 2, 3, 3)):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.8
    flat = w.view(shape[0], -1)
    flat[0, :4] = torch.tensor([0.0, 1.0, -1.0, 3.5], dtype=torch.float64)  # zero, STE clip edges, beyond
    flat[1, :3] = torch.tensor([-0.0, 2.0, -7.0], dtype=torch.float64)
    return w


def bwn_reference(w: np.ndarray, g: np.ndarray):
    """alpha_c = (1/n) sum_i |W_ci|, W~ = alpha_c sign(W) (sign(0) = +1); gradient of Sec. 3.1:
    dL/dW_i = alpha g_i 1{|W_i| <= 1} + (d|W_i|/dW_i / n) sum_j g_j sign(W_j)."""
    C = w.shape[0]
    wf, gf = w.reshape(C, -1), g.reshape(C, -1)
    n = wf.shape[1]
    out, grad = np.zeros_like(wf), np.zeros_like(wf)
    for c in range(C):
        alpha = 0.0
        for i in range(n):
            alpha += abs(wf[c, i])
        alpha /= n
        signs = [1.0 if wf[c, i] >= 0 else -1.0 for i in range(n)]
        through_alpha = 0.0
        for j in range(n):
            through_alpha += gf[c, j] * signs[j]
        for i in range(n):
            out[c, i] = alpha * signs[i]
            d_abs = 1.0 if wf[c, i] > 0 else (-1.0 if wf[c, i] < 0 else 0.0)
            ste = 1.0 if abs(wf[c, i]) <= 1 else 0.0
            grad[c, i] = alpha * gf[c, i] * ste + d_abs / n * through_alpha
    return out.reshape(w.shape), grad.reshape(w.shape)


def twn_reference(w: np.ndarray, delta: float | None = None):
    """Delta = 0.7 E|W|, alpha = mean |W| over |W| > Delta, W^t in {-alpha, 0, alpha}.

    ``delta`` given: that threshold (a sum's last bit depends on its order, so a tie test
    passes the threshold the tie was built on)."""
    flat = w.reshape(-1)
    if delta is None:
        delta = 0.7 * (math.fsum(abs(v) for v in flat) / flat.size)
    kept = [abs(v) for v in flat if abs(v) > delta]
    alpha = math.fsum(kept) / len(kept) if kept else 0.0
    out = np.array([alpha if v > delta else (-alpha if v < -delta else 0.0) for v in flat])
    return out.reshape(w.shape), delta, alpha


@pytest.mark.parametrize("seed", range(5))
def test_bwn_forward_and_backward_equal_the_paper(seed):
    w = _weights(seed).requires_grad_()
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    y = BWNQuantizer()(w)
    (grad,) = torch.autograd.grad((y * g).sum(), w)
    y_ref, grad_ref = bwn_reference(w.detach().numpy(), g.numpy())
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=1e-14, atol=0)
    torch.testing.assert_close(grad, torch.from_numpy(grad_ref), rtol=1e-12, atol=1e-14)
    assert torch.equal(y.detach().abs(), y.detach().abs().amax(dim=(1, 2, 3), keepdim=True).expand_as(y))


def test_bwn_scales_are_per_output_channel_and_zero_is_positive():
    w = torch.tensor([[0.0, -2.0], [1.0, 3.0]], dtype=torch.float64)
    assert torch.equal(BWNQuantizer()(w), torch.tensor([[1.0, -1.0], [2.0, 2.0]], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(5))
def test_twn_forward_and_backward_equal_the_paper(seed):
    w = _weights(seed, shape=(3, 50)).requires_grad_()
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = TWNQuantizer()(w)
    (grad,) = torch.autograd.grad((y * g).sum(), w)
    y_ref, delta_ref, _ = twn_reference(w.detach().numpy())
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=1e-14, atol=0)
    assert float(TWNQuantizer().threshold_and_scale(w)[0]) == pytest.approx(delta_ref, rel=1e-15)
    assert torch.equal(grad, g)  # straight through, Delta and alpha constants


def _with_tie(n=32):
    """Weights where one value equals the quantizer's Delta and another -Delta (a fixed point:
    Delta moves by 0.7/n of each change)."""
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(n, generator=gen, dtype=torch.float64)
    for _ in range(200):
        delta = float(TWNQuantizer().threshold_and_scale(w)[0])
        w[0], w[1] = delta, -delta
    delta = float(TWNQuantizer().threshold_and_scale(w)[0])
    assert float(w[0]) == delta and float(w[1]) == -delta
    return w, delta


def test_twn_values_at_the_threshold_are_zero():
    w, delta = _with_tie()
    y = TWNQuantizer()(w)
    assert y[0] == 0 and y[1] == 0
    y_ref, _, alpha_ref = twn_reference(w.numpy(), delta=delta)
    torch.testing.assert_close(y, torch.from_numpy(y_ref), rtol=1e-14, atol=0)
    assert float(TWNQuantizer().threshold_and_scale(w)[1]) == pytest.approx(alpha_ref, rel=1e-14)


def test_twn_threshold_is_per_layer():
    # channel 1 is ten times larger: a per-channel threshold would keep its small entries
    w = torch.tensor([[0.1, -0.1, 0.05, 0.0], [1.0, -1.0, 0.5, 0.2]], dtype=torch.float64)
    delta, alpha = TWNQuantizer().threshold_and_scale(w)
    assert float(delta) == pytest.approx(0.7 * 2.95 / 8)
    assert float(alpha) == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    assert TWNQuantizer()(w)[0].abs().sum() == 0


def test_twn_all_zero_weight_is_zero():
    w = torch.zeros(3, 4)
    assert torch.equal(TWNQuantizer()(w), w)
    codes, levels = TWNQuantizer().export(w)
    assert torch.equal(codes, torch.ones(3, 4, dtype=torch.uint8)) and torch.equal(levels, torch.zeros(3))
