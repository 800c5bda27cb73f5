"""LSQ (Esser et al. 2020, Eqs. 1-3 and the gradient scale) and PACT (Choi et al. 2018, Eqs. 1-3) against literal loops."""

import math

import numpy as np
import pytest
import torch

from qbench.quant.baselines import LSQQuantizer, PACTQuantizer


def lsq_reference(v: np.ndarray, s: float, g: np.ndarray, bits: int, signed: bool, n_features: int):
    """Eqs. 1-2 forward; straight through for v; Eq. 3 for s, times g_s = 1 / sqrt(N Q_P)."""
    q_n, q_p = (2 ** (bits - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    flat, gf = v.reshape(-1), g.reshape(-1)
    out, grad_v = np.zeros_like(flat), np.zeros_like(flat)
    terms = []
    for i, value in enumerate(flat):
        r = value / s
        out[i] = float(np.round(min(max(r, -q_n), q_p))) * s
        if r <= -q_n:
            terms.append(gf[i] * -q_n)
        elif r >= q_p:
            terms.append(gf[i] * q_p)
        else:
            terms.append(gf[i] * (-r + float(np.round(r))))
            grad_v[i] = gf[i]
    grad_s = math.fsum(terms) / math.sqrt(n_features * q_p)
    return out.reshape(v.shape), grad_v.reshape(v.shape), grad_s


@pytest.mark.parametrize("bits,signed", [(2, True), (3, True), (4, True), (8, True), (1, False), (2, False),
                                         (4, False)])
@pytest.mark.parametrize("seed", range(3))
def test_lsq_equals_eqs_1_to_3(bits, signed, seed):
    q = LSQQuantizer(bits, signed=signed).double()
    gen = torch.Generator().manual_seed(seed)
    shape = (6, 3, 2, 2) if signed else (4, 3, 5)
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    v = v if signed else v.abs() * 0.8
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        q.step.fill_(0.25)  # a power of two: v = k s + s/2 below is an exact tie of the round
    q_n, q_p = q.q_n, q.q_p
    edges = [0.0, -q_n * 0.25, q_p * 0.25, 0.375, -0.125, 0.625, q_p * 0.25 + 1e-9, 40.0, -40.0]
    v.view(-1)[: len(edges)] = torch.tensor(edges, dtype=torch.float64)
    v.requires_grad_()
    y = q(v)
    grad_v, grad_s = torch.autograd.grad((y * g).sum(), (v, q.step))
    n_features = v.numel() if signed else v[0].numel()
    y_ref, grad_v_ref, grad_s_ref = lsq_reference(v.detach().numpy(), 0.25, g.numpy(), bits, signed, n_features)
    assert torch.equal(y.detach(), torch.from_numpy(y_ref))
    assert torch.equal(grad_v, torch.from_numpy(grad_v_ref))
    assert float(grad_s) == pytest.approx(grad_s_ref, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("bits,signed", [(2, True), (4, True), (3, False)])
def test_lsq_initial_step(bits, signed):
    v = torch.tensor([[0.5, -1.5, 2.0], [0.0, 1.0, -3.0]], dtype=torch.float64)
    q = LSQQuantizer(bits, signed=signed).double()
    q.initialize(v)
    q_p = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    assert float(q.step.detach()) == pytest.approx(2 * (8.0 / 6) / math.sqrt(q_p), rel=1e-15)


def test_lsq_initialize_rejects_all_zero_data():
    with pytest.raises(ValueError, match="nonzero"):
        LSQQuantizer(2, signed=True).initialize(torch.zeros(3, 3))


def pact_reference(x: np.ndarray, alpha: float, g: np.ndarray, bits: int):
    """Eq. 1 y = 0.5(|x| - |x - alpha| + alpha); Eq. 2 y_q = round(y n / alpha) alpha / n;
    Eq. 3 d y_q / d alpha = 1{x >= alpha}; d y_q / d x = 1{0 <= x < alpha} (STE through round)."""
    n = 2 ** bits - 1
    flat, gf = x.reshape(-1), g.reshape(-1)
    out, grad_x = np.zeros_like(flat), np.zeros_like(flat)
    grad_alpha = []
    for i, value in enumerate(flat):
        y = 0.5 * (abs(value) - abs(value - alpha) + alpha)
        out[i] = float(np.round(y * n / alpha)) * alpha / n
        if value >= alpha:
            grad_alpha.append(gf[i])
        elif value >= 0:
            grad_x[i] = gf[i]
    return out.reshape(x.shape), grad_x.reshape(x.shape), math.fsum(grad_alpha)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("seed", range(3))
def test_pact_equals_eqs_1_to_3(bits, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 30, generator=gen, dtype=torch.float64) * 2
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    alpha = 1.5 + 0.5 * seed
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, alpha, -alpha, 100.0, np.nextafter(alpha, 0)], dtype=torch.float64)
    x.requires_grad_()
    q = PACTQuantizer(bits, alpha=alpha).double()
    y = q(x)
    grad_x, grad_alpha = torch.autograd.grad((y * g).sum(), (x, q.alpha))
    y_ref, grad_x_ref, grad_alpha_ref = pact_reference(x.detach().numpy(), alpha, g.numpy(), bits)
    # Eq. 1 literally can round its last bit differently from clip(x, 0, alpha)
    torch.testing.assert_close(y.detach(), torch.from_numpy(y_ref), rtol=0, atol=1e-14)
    assert torch.equal(grad_x, torch.from_numpy(grad_x_ref))
    assert float(grad_alpha) == pytest.approx(grad_alpha_ref, rel=1e-12)
    assert y[0, 2] == alpha and y[0, 4] == alpha and y[0, 0] == 0


def test_pact_initialize_takes_the_largest_activation():
    q = PACTQuantizer(2)
    assert float(q.alpha.detach()) == 10.0  # the paper's starting value until data is seen
    q.initialize(torch.tensor([[0.5, 3.0], [-1.0, 2.0]]))
    assert float(q.alpha.detach()) == 3.0
    with pytest.raises(ValueError, match="positive activation"):
        q.initialize(torch.zeros(2, 2))
