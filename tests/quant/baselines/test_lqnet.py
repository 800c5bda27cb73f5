"""LQ-Net (Zhang et al. 2018: the quantizer Q(x, v) and QEM, Algorithm 1) against literal numpy."""

import numpy as np
import pytest
import torch

from qbench.quant.baselines import LQNetQuantizer


def all_codes(bits: int, signed: bool) -> np.ndarray:
    """Every code e in {-1, 1}^K or {0, 1}^K, one row each (bit j of the integer is e_j)."""
    low = -1.0 if signed else 0.0
    return np.array([[1.0 if (i >> j) & 1 else low for j in range(bits)] for i in range(2 ** bits)])


def quantize_reference(x: np.ndarray, v: np.ndarray, signed: bool):
    """Q(x, v) for one basis: levels v^T e sorted, x in (t_l, t_{l+1}] -> q_l; also each
    value's code e (for QEM)."""
    codes = all_codes(len(v), signed)
    values = [float(np.dot(v, e)) for e in codes]
    order = sorted(range(len(values)), key=lambda i: values[i])
    levels = [values[i] for i in order]
    t = [-np.inf] + [(a + b) / 2 for a, b in zip(levels, levels[1:])] + [np.inf]
    out, chosen = np.zeros_like(x), np.zeros((x.size, len(v)))
    for n, value in enumerate(x):
        for l in range(len(levels)):
            if t[l] < value <= t[l + 1]:
                out[n], chosen[n] = levels[l], codes[order[l]]
    return out, chosen, levels


def qem_reference(x: np.ndarray, v: np.ndarray, signed: bool) -> np.ndarray:
    """QEM: v* = (B B^T)^+ B x with B (K x N) the codes of the current quantization."""
    _, chosen, _ = quantize_reference(x, v, signed)
    B = chosen.T
    return np.linalg.pinv(B @ B.T) @ B @ x


def _set_basis(q, basis):
    with torch.no_grad():
        q.basis.copy_(torch.as_tensor(basis, dtype=q.basis.dtype))


@pytest.mark.parametrize("bits", [1, 2, 3])
@pytest.mark.parametrize("signed", [True, False])
def test_eval_forward_and_backward_equal_the_paper_with_ties(bits, signed):
    """A dyadic basis makes every level and threshold exact, so ties are ties for both. The
    edges include values beyond both ends of the level range: weights there still get their
    gradient (microsoft/LQ-Nets learned_quantization.py line 253), activations above the top
    level do not (line 111)."""
    channels = 3 if signed else 1
    basis = np.array([[0.25 * 2 ** j * (c + 1) for j in range(bits)] for c in range(channels)])
    q = LQNetQuantizer(bits, signed=signed, channels=channels).double().eval()
    _set_basis(q, basis)
    gen = torch.Generator().manual_seed(bits)
    x = torch.randn(channels, 2, 12, generator=gen, dtype=torch.float64) * 1.5
    x = x if signed else x.abs()
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    y_ref, grad_ref = np.zeros(x.shape), np.zeros(x.shape)
    for c in range(channels):
        _, _, levels = quantize_reference(np.zeros(1), basis[c], signed)
        ties = [(a + b) / 2 for a, b in zip(levels, levels[1:])]
        edges = ties + [levels[0], levels[-1], levels[-1] + 3.0, levels[0] - 3.0, 0.0]
        x[c].view(-1)[: len(edges)] = torch.tensor(edges, dtype=torch.float64)
    x.requires_grad_()
    y = q(x)
    (grad,) = torch.autograd.grad((y * g).sum(), x)
    for c in range(channels):
        xs = x.detach()[c].reshape(-1).numpy() if signed else x.detach().reshape(-1).numpy()
        out, _, levels = quantize_reference(xs, basis[c], signed)
        gs = g[c].reshape(-1).numpy() if signed else g.reshape(-1).numpy()
        # the released code: weights straight through, activations clipped at the top level
        inside = np.ones_like(xs, dtype=bool) if signed else xs <= levels[-1]
        if signed:
            y_ref[c], grad_ref[c] = out.reshape(x.shape[1:]), (gs * inside).reshape(x.shape[1:])
        else:
            y_ref, grad_ref = out.reshape(x.shape), (gs * inside).reshape(x.shape)
    assert torch.equal(y.detach(), torch.from_numpy(y_ref))
    assert torch.equal(grad, torch.from_numpy(grad_ref))
    assert torch.equal(q.basis, torch.from_numpy(basis))  # eval mode leaves the basis alone


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("signed", [True, False])
def test_training_step_is_one_qem_step_with_moving_average(bits, signed):
    channels = 2 if signed else 1
    gen = torch.Generator().manual_seed(10 + bits)
    x = torch.randn(channels, 64, generator=gen, dtype=torch.float64)
    x = x if signed else torch.relu(x)
    q = LQNetQuantizer(bits, signed=signed, channels=channels, momentum=0.9).double()
    basis = (0.3 + torch.rand(channels, bits, generator=gen, dtype=torch.float64)) * 2.0 ** torch.arange(bits) / 4
    _set_basis(q, basis)
    y = q.train()(x)
    for c in range(channels):
        xs = x[c].numpy() if signed else x.reshape(-1).numpy()
        target = qem_reference(xs, basis[c].numpy(), signed)
        expected = 0.9 * basis[c].numpy() + 0.1 * target
        np.testing.assert_allclose(q.basis[c].numpy(), expected, rtol=1e-10, atol=1e-12)
        out, _, _ = quantize_reference(xs, q.basis[c].numpy(), signed)  # quantized with the new basis
        np.testing.assert_allclose(y.detach()[c].numpy() if signed else y.detach().reshape(-1).numpy(), out,
                                   rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("signed", [True, False])
def test_qem_without_momentum_never_raises_the_error(signed):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 500, generator=gen, dtype=torch.float64)
    x = x if signed else torch.relu(x)
    q = LQNetQuantizer(2, signed=signed, momentum=0.0).double()
    errors = []
    for _ in range(8):
        with torch.no_grad():
            errors.append(float(((q.eval()(x) - x) ** 2).sum()))
            q.train()(x)
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]


def test_initialize_fits_each_channel_and_beats_the_uniform_start():
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3, 200, generator=gen, dtype=torch.float64) * torch.tensor([[0.01], [0.1], [1.0]],
                                                                                dtype=torch.float64)
    q = LQNetQuantizer(2, signed=True, channels=3).double().eval()
    q.initialize(w)
    per_channel_error = ((q(w) - w) ** 2).mean(dim=1) / (w ** 2).mean(dim=1)
    assert (per_channel_error < 0.15).all()  # 2-bit fit of a Gaussian: about 0.12 relative error
    top = q.basis.abs().sum(dim=1)  # largest level per channel follows the channel's scale
    assert top[0] < top[1] < top[2]


def test_weight_with_other_channel_count_is_rejected():
    with pytest.raises(ValueError, match="output channels"):
        LQNetQuantizer(2, signed=True, channels=4)(torch.zeros(3, 5))
