"""INQ (Zhou et al. 2017): level set, quantization rule and incremental partition against
literal loops."""

import math

import pytest
import torch

from qbench.quant.baselines import INQQuantizer
from qbench.quant.baselines.inq import inq_exponents


def exponents_reference(s: float, bits: int):
    n1 = math.floor(math.log2(4 * s / 3))
    return n1, n1 + 1 - 2 ** (bits - 1) / 2


def rule_reference(v: float, n1: int, n2: int) -> float:
    """beta sgn(v) for adjacent alpha < beta in {0, 2^n2, ..., 2^n1} with
    (alpha + beta)/2 <= |v| < 3 beta / 2; else 0 (above the top: the top, our stated choice)."""
    nonneg = [0.0] + [2.0 ** k for k in range(int(n2), n1 + 1)]
    for alpha, beta in zip(nonneg, nonneg[1:]):
        if (alpha + beta) / 2 <= abs(v) < 3 * beta / 2:
            return math.copysign(beta, v)
    if abs(v) >= 3 * nonneg[-1] / 2:
        return math.copysign(nonneg[-1], v)
    return 0.0


def partition_reference(values, frozen, target):
    """Indices to freeze: the largest |W| not frozen yet (ties by position) up to ``target``."""
    free = sorted((i for i in range(len(values)) if not frozen[i]), key=lambda i: (-abs(values[i]), i))
    return free[: target - sum(frozen)]


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
@pytest.mark.parametrize("s", [0.3411, 1.0, 0.75, 3.0, 1e-3])
def test_exponents(bits, s):
    assert inq_exponents(s, bits) == exponents_reference(s, bits)


@pytest.mark.parametrize("bits", [2, 3, 5])
@pytest.mark.parametrize("seed", range(3))
def test_stages_equal_the_paper(bits, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 4, 3, generator=gen, dtype=torch.float64) * 0.2
    q = INQQuantizer(bits).double()
    q.initialize(w)
    n1, n2 = exponents_reference(float(w.abs().max()), bits)
    assert (q.n1, q.n2) == (n1, n2)
    # boundary values of the rule, zeros, ties in |W| and a weight that outgrew the top level
    edges = [0.0, 2.0 ** (n2 - 1), -(2.0 ** (n2 - 1)), 3 * 2.0 ** (n1 - 1), 3 * 2.0 ** (n1 - 2), 0.05, -0.05,
             4 * 2.0 ** n1]
    w.view(-1)[: len(edges)] = torch.tensor(edges, dtype=torch.float64)
    values = w.reshape(-1).tolist()
    frozen, frozen_values = [False] * len(values), [0.0] * len(values)
    # the paper's accumulated portions: Sec. 3.4 (2 bits; used for 3 and 4 as well), Sec. 3.1 (5 bits)
    portions = ((0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0) if bits < 5 else (0.5, 0.75, 0.875, 1.0))
    assert q.portions == portions
    for stage, portion in enumerate(portions):
        for i in partition_reference(values, frozen, round(portion * len(values))):
            frozen[i], frozen_values[i] = True, rule_reference(values[i], n1, n2)
        share = q.advance(w)
        assert share == pytest.approx(sum(frozen) / len(values)) and q.stage == stage + 1
        assert q.frozen.reshape(-1).tolist() == frozen
        x = w.clone().requires_grad_()
        y = q(x)
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        (grad,) = torch.autograd.grad((y * g).sum(), x)
        expected = [frozen_values[i] if frozen[i] else values[i] for i in range(len(values))]
        assert y.detach().reshape(-1).tolist() == expected
        expected_grad = [0.0 if frozen[i] else float(g.reshape(-1)[i]) for i in range(len(values))]
        assert grad.reshape(-1).tolist() == expected_grad
    levels = {0.0} | {math.copysign(2.0 ** k, s) for k in range(int(n2), n1 + 1) for s in (1, -1)}
    assert set(y.detach().reshape(-1).tolist()) <= levels


def test_export_after_the_last_stage_dequantizes_exactly():
    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    q = INQQuantizer(4)
    q.initialize(w)
    with pytest.raises(ValueError, match="needs every weight quantized"):
        q.export(w)
    for _ in range(len(q.portions)):
        q.advance(w)
    codes, levels = q.export(w)
    assert len(levels) == 2 ** (4 - 1) + 1 == q.num_levels and levels.tolist() == sorted(levels.tolist())
    assert torch.equal(levels[codes.long()], q(w)) and q.bits == 4
    with pytest.raises(ValueError, match="frozen all weights already"):
        q.advance(w)


def test_state_dict_carries_the_schedule():
    w = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    q = INQQuantizer(3)
    q.initialize(w)
    q.advance(w)
    restored = INQQuantizer(3)
    restored.initialize(torch.ones(3, 8))
    restored.load_state_dict(q.state_dict())
    assert restored.stage == 1 and (restored.n1, restored.n2) == (q.n1, q.n2)
    assert torch.equal(restored(w), q(w))


def test_frozen_weights_stay_put_while_the_rest_trains():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4)
    q = INQQuantizer(5)
    q.initialize(layer.weight.detach())
    torch.nn.utils.parametrize.register_parametrization(layer, "weight", q)
    x, target = torch.randn(64, 16), torch.randn(64, 4)
    optim = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(4):
        q.advance(layer.parametrizations.weight.original.detach())
        frozen_before = layer.weight.detach()[q.frozen].clone()
        for _ in range(5):
            optim.zero_grad()
            ((layer(x) - target) ** 2).mean().backward()
            optim.step()
        assert torch.equal(layer.weight.detach()[q.frozen], frozen_before)
    assert bool(q.frozen.all())


@pytest.mark.parametrize("portions", [(), (0.5, 0.4, 1.0), (0.5, 0.9), (0.0, 1.0), (0.5, 0.5, 1.0), (0.5, 1.5)])
def test_invalid_portions(portions):
    with pytest.raises(ValueError, match=r"^portions must be increasing shares in \(0, 1\] ending at 1, got"):
        INQQuantizer(3, portions=portions)


@pytest.mark.parametrize("bits", [1, 9, 2.5, True])
def test_invalid_bits(bits):
    with pytest.raises(ValueError, match=r"^bits must be an integer in 2\.\.8, got"):
        INQQuantizer(bits)


def test_use_before_initialize_is_an_error():
    with pytest.raises(ValueError, match="before initialize"):
        INQQuantizer(3)(torch.ones(2))
    with pytest.raises(ValueError, match="finite nonzero maximum"):
        INQQuantizer(3).initialize(torch.zeros(2))
