"""HWGQ: the half-wave Gaussian quantizer for activations (Cai, He, Sun & Vasconcelos, CVPR 2017).

Forward (the paper's forward approximation of the ReLU): for batch-normalised
pre-activations x ~ N(0, 1),

    Q(x) = q_i if x in (t_i, t_{i+1}],   0 if x <= 0,

with m = 2^bits - 1 positive levels q_1 < ... < q_m, t_1 = 0, t_{m+1} = inf and the decision
thresholds t_i = (q_{i-1} + q_i) / 2 in between. The levels minimise the mean squared error
over the positive half of the Gaussian (the negative half is exact: ReLU maps it to 0):
- uniform (the paper's choice): q_i = i * Delta with the optimal step Delta*;
- non-uniform: the Lloyd-Max levels of the half-normal (Lloyd's algorithm, which the paper
  uses to design the quantizer).
Both are computed here from closed-form Gaussian moments, not typed in; the tests check them
against the steps the authors released (Delta* = 0.799 for 1 bit, 0.538 for 2 bits).
A positive value exactly at a threshold maps to the lower level (the intervals are open on
the left, closed on the right).

Backward (the paper's backward approximation): the clipped ReLU, ``dQ/dx = 1`` for
0 < x <= q_m and 0 elsewhere
(the paper's default; its log-tailed variant is not implemented).

Input (``StandardisedInput``): the levels assume x ~ N(0, 1), and the authors' networks make
it so: in their ResNet-18 (zhaoweicai/hwgq @ ebc706b,
examples/imagenet/res18-hwgq-3ne-clip-poly-320k/train_val.prototxt) every ``Quant`` layer reads
a ``BatchNorm`` with no ``Scale`` layer after it, i.e. without learned affine (bn1 -> qt2a_branch2a,
lines 85-107; bn2a_branch2b -> qt2a_branch2b, lines 141-163; the block input bn2b_branch2a ->
qt2b_branch2a, lines 234-256), while the BatchNorms that feed the residual sums have their
``Scale`` (lines 197-219). ``StandardisedInput`` puts such a BatchNorm (``affine=False``, running
statistics for evaluation) in front of the quantizer of every quantized layer's input, so the
quantizer sees a standardised input in every model of the harness, residual sums included. What
is not done: the harness's models keep their own ReLU (and BatchNorm affine) before the layer,
where the authors' quantizer is the ReLU; the standardised input is then that of a rectified
variable, not of the pre-activation. Weights are binary as BWN (``BinaryConvolution``, line
118), the first conv and the last fc full precision (``Convolution`` conv1, line 45).

The ``Quant`` layers there hold the 2-bit levels 0.538, 1.076, 1.614 and clip at 1.614
(qt2a_branch2a, lines 103-114), the uniform levels computed below.

Schedule of the authors (res18 solver.prototxt): momentum-0.9 SGD, lr 0.1 with poly decay
(power 1) over 320k iterations, weight decay 5e-5; the quantizer has no learned parameters, so
no parameter group of its own, and the shared recipe stands for the schedule.
"""

from __future__ import annotations

import functools
import math

import torch

from ._common import BaselineQuantizer, BaselineSpec, StandardisedInput, check_bits, codes_dtype
from .bwn import BWNQuantizer

MAX_BITS = 8
MAX_LLOYD_BITS = 4  # Lloyd's algorithm converges slowly beyond 15 levels; the paper uses <= 2 bits
_GOLDEN = (math.sqrt(5) - 1) / 2


def _interval_moments(lo: torch.Tensor, hi: torch.Tensor):
    """(P, int x dphi, int x^2 dphi) of the standard normal over (lo, hi], vectorised."""
    pdf = lambda t: torch.where(torch.isinf(t), torch.zeros_like(t), torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi))
    p = torch.special.ndtr(hi) - torch.special.ndtr(lo)
    m1 = pdf(lo) - pdf(hi)
    lo_pdf = torch.where(torch.isinf(lo), torch.zeros_like(lo), lo * pdf(lo))
    hi_pdf = torch.where(torch.isinf(hi), torch.zeros_like(hi), hi * pdf(hi))
    m2 = p + lo_pdf - hi_pdf
    return p, m1, m2


def _thresholds(levels: torch.Tensor) -> torch.Tensor:
    """t_1 = 0, midpoints between levels, t_{m+1} = inf."""
    inner = (levels[1:] + levels[:-1]) / 2
    return torch.cat((levels.new_zeros(1), inner, levels.new_full((1,), math.inf)))


def half_gaussian_mse(levels: torch.Tensor) -> float:
    """E[(Q(x) - x)^2; x > 0] for x ~ N(0, 1) and positive levels ``levels`` (sorted)."""
    t = _thresholds(levels)
    p, m1, m2 = _interval_moments(t[:-1], t[1:])
    return float((m2 - 2 * levels * m1 + levels * levels * p).sum())


@functools.lru_cache(maxsize=None)
def half_gaussian_uniform_step(bits: int) -> float:
    """Delta* of the uniform HWGQ with 2^bits - 1 positive levels (golden-section search)."""
    m = 2 ** check_bits(bits, 1, MAX_BITS, "bits") - 1
    steps = torch.arange(1, m + 1, dtype=torch.float64)
    mse = lambda delta: half_gaussian_mse(steps * delta)
    lo, hi = 1e-4, 4.0
    for _ in range(200):  # the bracket shrinks by 0.618 a step: far below float64 resolution
        a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        if mse(a) <= mse(b):
            hi = b
        else:
            lo = a
    delta = torch.tensor((lo + hi) / 2, dtype=torch.float64)
    # golden section stops near sqrt(eps) (the MSE is flat at its minimum); the stationarity
    # condition dMSE/dDelta = 0, Delta = sum_i i M1_i / sum_i i^2 P_i (thresholds at midpoints),
    # iterated from there reaches float64 resolution
    for _ in range(100):
        t = _thresholds(steps * delta)
        p, m1, _ = _interval_moments(t[:-1], t[1:])
        delta = (steps * m1).sum() / (steps * steps * p).sum()
    return float(delta)


@functools.lru_cache(maxsize=None)
def half_gaussian_lloyd_max(bits: int, iterations: int = 20000, tol: float = 1e-14) -> tuple[float, ...]:
    """The 2^bits - 1 positive Lloyd-Max levels of the half-normal, ascending.

    Lloyd's algorithm from the uniform optimum: thresholds at midpoints, each level the
    conditional mean of its interval, until no level moves by more than ``tol``.
    """
    levels = torch.arange(1, 2 ** check_bits(bits, 1, MAX_LLOYD_BITS, "bits"), dtype=torch.float64)
    levels = levels * half_gaussian_uniform_step(bits)
    for _ in range(iterations):
        t = _thresholds(levels)
        p, m1, _ = _interval_moments(t[:-1], t[1:])
        updated = m1 / p
        done = float((updated - levels).abs().max()) <= tol
        levels = updated
        if done:
            break
    return tuple(levels.tolist())


class _HalfWaveFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, thresholds):
        ctx.save_for_backward(x, table[-1])
        return table[torch.bucketize(x, thresholds, right=False)]

    @staticmethod
    def backward(ctx, grad):
        x, top = ctx.saved_tensors
        return grad * ((x > 0) & (x <= top)).to(grad.dtype), None, None


class HWGQuantizer(BaselineQuantizer):
    """Half-wave Gaussian quantizer of activations (a ReLU and its quantizer in one).

    Args:
        bits: code width; 2^bits levels including 0.
        uniform: the uniform quantizer (the paper's) or the non-uniform Lloyd-Max one.
    """

    kind = "activation"

    def __init__(self, bits: int, uniform: bool = True) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BITS if uniform is True else MAX_LLOYD_BITS, "bits")
        if not isinstance(uniform, bool):
            raise ValueError(f"uniform must be a bool, got {uniform!r}")
        self.uniform = uniform
        if uniform:
            positive = torch.arange(1, 2 ** bits, dtype=torch.float64) * half_gaussian_uniform_step(bits)
        else:
            positive = torch.tensor(half_gaussian_lloyd_max(bits), dtype=torch.float64)
        # table[k] is the value of code k: 0 for x <= 0, then q_1..q_m
        self.register_buffer("table", torch.cat((positive.new_zeros(1), positive)).float())

    def _tables(self, x: torch.Tensor):
        """Levels and the thresholds (0, then midpoints) in x's dtype: midpoints of the levels
        as x's dtype rounds them, so a value at a threshold is a tie in that dtype."""
        table = self.table.to(x.dtype)
        return table, _thresholds(table[1:])[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table, thresholds = self._tables(x)
        return _HalfWaveFunction.apply(x, table, thresholds)

    @torch.no_grad()
    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table, thresholds = self._tables(x)
        return torch.bucketize(x, thresholds, right=False).to(codes_dtype(len(table))), table

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, uniform={self.uniform}"


# the method ``quant.method: hwgq`` (qbench.quant.methods.baselines registers it)
# HWGQ-Net binarises the weights as BWN does (Cai et al. 2017 pair HWGQ activations with BW
# weights); its quantizer reads a BatchNorm without affine, as in the authors' networks
METHOD = BaselineSpec("hwgq", "HWGQ", lambda b, layer, o: BWNQuantizer(),
                      lambda b, layer, o: StandardisedInput(HWGQuantizer(b, uniform=o["uniform"]), layer),
                      weight_bits=(1, 1), activation_bits=(1, MAX_BITS),
                      options={"uniform": True}, example=(None, "act_2bit"))
