"""DoReFa-Net (Zhou et al. 2016: quantize_k, k-bit and binary weights, activations) against
literal numpy."""

import math

import numpy as np
import pytest
import torch

from qbench.quant.baselines import DoReFaActivationQuantizer, DoReFaWeightQuantizer


def quantize_k(r: float, k: int) -> float:
    """quantize_k (np.round: half to even, as torch.round)."""
    n = 2 ** k - 1
    return float(np.round(n * r)) / n


def weight_reference(w: np.ndarray, g: np.ndarray, k: int):
    """The tanh form forward; backward: STE through the round, exact derivative of tanh and of the
    max (the max attained at one element j*):
    dL/dW_j = sum_i g_i * 2 * d r_i / dW_j,  r_i = tanh(W_i) / (2M) + 1/2,  M = max |tanh W|."""
    flat, gf = w.reshape(-1), g.reshape(-1)
    t = [math.tanh(v) for v in flat]
    M = max(abs(v) for v in t)
    j_max = max(range(len(t)), key=lambda i: abs(t[i]))
    out = np.array([2 * quantize_k(ti / (2 * M) + 0.5, k) - 1 for ti in t])
    grad = np.zeros_like(flat)
    for j in range(len(t)):
        for i in range(len(t)):
            d = 0.0
            if i == j:
                d += (1 - t[i] ** 2) / (2 * M)
            if j == j_max:
                d -= t[i] / (2 * M * M) * math.copysign(1.0, t[j]) * (1 - t[j] ** 2)
            grad[j] += gf[i] * 2 * d
    return out.reshape(w.shape), grad.reshape(w.shape)


def binary_weight_reference(w: np.ndarray, g: np.ndarray):
    """Binary weights: r_o = E(|r_i|) sign(r_i), dc/dr_i = dc/dr_o."""
    flat = w.reshape(-1)
    e = math.fsum(abs(v) for v in flat) / flat.size
    return np.array([e if v >= 0 else -e for v in flat]).reshape(w.shape), g.copy()


def activation_reference(x: np.ndarray, g: np.ndarray, k: int):
    """Activations: quantize_k(clip(x, 0, 1)); gradient 1 on [0, 1]."""
    flat, gf = x.reshape(-1), g.reshape(-1)
    out = np.array([quantize_k(min(max(v, 0.0), 1.0), k) for v in flat])
    grad = np.array([gf[i] if 0.0 <= v <= 1.0 else 0.0 for i, v in enumerate(flat)])
    return out.reshape(x.shape), grad.reshape(x.shape)


def _pair(seed, shape, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, g


@pytest.mark.parametrize("k", [2, 3, 4, 8])
@pytest.mark.parametrize("seed", range(3))
def test_k_bit_weights_equal_the_tanh_form_forward_and_backward(k, seed):
    w, g = _pair(seed, (3, 17), scale=0.7)
    w[0, :4] = torch.tensor([0.0, 2.5, -9.0, 1e-9], dtype=torch.float64)  # zero, saturating tanh
    w.requires_grad_()
    y = DoReFaWeightQuantizer(k)(w)
    (grad,) = torch.autograd.grad((y * g).sum(), w)
    y_ref, grad_ref = weight_reference(w.detach().numpy(), g.numpy(), k)
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=0, atol=1e-15)
    torch.testing.assert_close(grad, torch.from_numpy(grad_ref), rtol=1e-10, atol=1e-12)
    assert y[0, 2] == -1  # the max |tanh| element (-9) reaches the end level


@pytest.mark.parametrize("seed", range(3))
def test_binary_weights_equal_the_paper(seed):
    w, g = _pair(seed, (4, 9))
    w[0, 0] = 0.0
    w.requires_grad_()
    y = DoReFaWeightQuantizer(1)(w)
    (grad,) = torch.autograd.grad((y * g).sum(), w)
    y_ref, grad_ref = binary_weight_reference(w.detach().numpy(), g.numpy())
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=1e-15, atol=0)
    assert torch.equal(grad, g)
    assert y[0, 0] > 0


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("seed", range(3))
def test_activations_equal_the_paper_forward_and_backward(k, seed):
    x, g = _pair(seed, (2, 3, 8), scale=0.8)
    x = x + 0.4
    n = 2 ** k - 1
    edges = [0.0, 1.0, -0.0, -3.0, 7.0, 0.5 / n, 1.5 / n, 1 - 0.5 / n]  # clip ends, beyond, round ties
    x.view(-1)[: len(edges)] = torch.tensor(edges, dtype=torch.float64)
    x.requires_grad_()
    y = DoReFaActivationQuantizer(k)(x)
    (grad,) = torch.autograd.grad((y * g).sum(), x)
    y_ref, grad_ref = activation_reference(x.detach().numpy(), g.numpy(), k)
    assert torch.equal(y.detach(), torch.from_numpy(y_ref))
    # autograd passes g through "* n" and "/ n": equal up to the last bit
    torch.testing.assert_close(grad, torch.from_numpy(grad_ref), rtol=1e-15, atol=0)
    assert torch.equal(grad == 0, torch.from_numpy(grad_ref) == 0)


def test_two_bit_weight_levels():
    codes, levels = DoReFaWeightQuantizer(2).export(torch.tensor([0.3, -1.0, 0.0]))
    torch.testing.assert_close(levels, torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
    assert codes.tolist() == [2, 0, 2]  # 0 maps to 1/2 -> round(1.5) = 2 (half to even)


def test_all_zero_weight_has_no_nan():
    y = DoReFaWeightQuantizer(3)(torch.zeros(2, 3))
    assert torch.isfinite(y).all()
