"""LQ-Net: learned quantization with a learnable basis (Zhang, Yang, Ye & Hua, ECCV 2018).

Quantizer (the paper's Q_ours(x, v)): a K-bit code e in {-1, 1}^K (weights) or {0, 1}^K
(activations) stands for the value v^T e, v in R^K the basis. With the 2^K values sorted,
q_1 <= ... <= q_{2^K}, and t_l = (q_{l-1} + q_l) / 2,

    Q(x, v) = q_l  if x in (t_l, t_{l+1}]     (t_1 = -inf, t_{2^K + 1} = +inf),

so a value exactly between two levels takes the lower one. Weights have one basis per output
channel, activations one per layer, as in the paper.

Basis learning (QEM, the paper's Algorithm 1, with T = 1 step per training iteration): with the
codes B = [b_1 .. b_N] (K x N) of the current x, the least-squares basis is
``v* = (B B^T)^-1 B x`` (the pseudo-inverse where a bit never changes), and v follows
a moving average ``v <- m v + (1 - m) v*`` (momentum m = 0.9). In training mode every forward
first updates v this way and then quantizes with the new v; eval mode only quantizes.
v is a buffer, not an nn.Parameter: it is learned by QEM, not by gradient descent.

Backward, as the authors' released code (microsoft/LQ-Nets @ 4f3ea9b,
learned_quantization.py):
- weights pass straight through, ``dQ/dx = 1`` everywhere (line 253:
  ``y = x + stop_gradient(-x) + stop_gradient(y)``, "gradient: y=x"): no clip, so weights
  outside the level range still learn;
- activations are clipped at the top level only, ``dQ/dx = 1`` for x <= q_{2^K}, else 0
  (lines 111-112, ``x_clip = minimum(x, levels[-1])``; tf.minimum passes the gradient where
  x <= the level).

Initialisation (``initialize``): the paper does not fix it; we start from the uniform basis
v = c (1, 2, ..., 2^{K-1}) with c fitted to mean |x| and run ``INIT_ITERATIONS`` plain QEM steps.
(The released code starts from fixed bases: 0.6745 * sqrt(2/n) / 2^(K-1) * 2^j for weights, with
n the fan of the layer's initialiser, and 0.6745 * 2 / (2^K - 1) * 2^j for activations, lines
31 and 136, then follows the moving average; ours starts at a QEM fit of the actual tensor.)

Parameters and schedule: v is a buffer updated by QEM with moving-average factor 0.9
(``MOVING_AVERAGES_FACTOR``, line 11; ``trainable=False``, lines 53-56 and 164-167); the
quantizer has no optimizer parameters, so nothing of the shared recipe is replaced. The weight
QEM adds ``EPS * I`` to B B^T and ``EPS * v`` to B x (EPS = 1e-4, lines 214 and 239); we use the
pseudo-inverse instead, which coincides unless a bit never changes.
"""

from __future__ import annotations

import itertools

import torch

from ._common import BaselineQuantizer, BaselineSpec, check_bits, codes_dtype

MAX_BITS = 4
MOMENTUM = 0.9
INIT_ITERATIONS = 20


def encodings(bits: int, signed: bool) -> torch.Tensor:
    """All 2^bits codes as rows of {-1, 1} (signed) or {0, 1} entries, shape (2^bits, bits)."""
    values = (-1.0, 1.0) if signed else (0.0, 1.0)
    return torch.tensor(list(itertools.product(values, repeat=bits)), dtype=torch.float64)


class _TopClippedSTE(torch.autograd.Function):
    """The quantized value forward; the gradient passes where x <= ``high`` (activations)."""

    @staticmethod
    def forward(ctx, x, quantized, high):
        ctx.save_for_backward(x, high)
        return quantized

    @staticmethod
    def backward(ctx, grad):
        x, high = ctx.saved_tensors
        return grad * (x <= high).to(grad.dtype), None, None


class _StraightThrough(torch.autograd.Function):
    """The quantized value forward; the gradient passes unchanged (weights)."""

    @staticmethod
    def forward(ctx, x, quantized):
        return quantized

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class LQNetQuantizer(BaselineQuantizer):
    """K-bit quantizer with a QEM-learned basis (buffer ``basis``, (C, K) or (1, K)).

    Args:
        bits: K, 1..4.
        signed: weights ({-1, 1} codes, one basis per output channel, input dim 0 = channels)
            or activations ({0, 1} codes, one basis per layer).
        channels: output channels of the weight (signed only); activations use 1.
        momentum: m of the moving average of v, in [0, 1).
    """

    def __init__(self, bits: int, signed: bool, channels: int = 1, momentum: float = MOMENTUM) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BITS, "bits")
        if not isinstance(signed, bool):
            raise ValueError(f"signed must be a bool, got {signed!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1 or (not signed and channels != 1):
            raise ValueError(f"channels must be a positive integer (1 for activations), got {channels!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.signed, self.momentum = signed, float(momentum)
        self.kind = "weight" if signed else "activation"
        self.register_buffer("codebook", encodings(bits, signed).float())
        uniform = 2.0 ** torch.arange(bits, dtype=torch.float32)
        self.register_buffer("basis", uniform.repeat(channels, 1))

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """x as (groups, n): one row per basis."""
        if not self.signed:
            return x.reshape(1, -1)
        if x.dim() < 1 or x.shape[0] != self.basis.shape[0]:
            raise ValueError(f"weight of shape {tuple(x.shape)} does not have the quantizer's "
                             f"{self.basis.shape[0]} output channels")
        return x.reshape(x.shape[0], -1)

    def _levels(self, dtype: torch.dtype):
        """Sorted levels (G, 2^K), the code index of each ((G, 2^K)), thresholds (G, 2^K - 1)."""
        values = self.basis.to(dtype) @ self.codebook.to(dtype).T
        levels, order = torch.sort(values, dim=1, stable=True)
        return levels, order, (levels[:, 1:] + levels[:, :-1]) / 2

    def _assign(self, rows: torch.Tensor):
        levels, order, thresholds = self._levels(rows.dtype)
        index = torch.searchsorted(thresholds.contiguous(), rows.contiguous(), right=False)
        return levels, order, index

    @torch.no_grad()
    def _qem_target(self, rows: torch.Tensor) -> torch.Tensor:
        """v* = (B B^T)^+ B x per basis, shape (G, K)."""
        _, order, index = self._assign(rows)
        codes = self.codebook.to(rows.dtype)[torch.gather(order, 1, index)]  # (G, n, K)
        gram = codes.transpose(1, 2) @ codes  # B B^T, (G, K, K)
        return (torch.linalg.pinv(gram) @ (codes.transpose(1, 2) @ rows.unsqueeze(2))).squeeze(2)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        rows = self._rows(x.detach()).to(torch.float64)
        scale = rows.abs().mean(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
        uniform = 2.0 ** torch.arange(self.bits, dtype=torch.float64)
        # uniform levels spanning about +-2 mean|x| (weights) or 0..4 mean|x| (activations)
        span = (2 if self.signed else 1) * (2 ** self.bits - 1)
        self.basis.copy_(uniform * 4 * scale / span)
        for _ in range(INIT_ITERATIONS):
            self.basis.copy_(self._qem_target(rows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._rows(x.detach())
        if self.training:
            with torch.no_grad():
                target = self._qem_target(rows).to(self.basis.dtype)
                self.basis.mul_(self.momentum).add_((1 - self.momentum) * target)
        levels, _, index = self._assign(rows)
        quantized = torch.gather(levels, 1, index).reshape(x.shape)
        if self.signed:
            return _StraightThrough.apply(x, quantized)
        return _TopClippedSTE.apply(x, quantized, levels[0, -1])

    @torch.no_grad()
    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes index the sorted level table; code l stands for the K-bit encoding
        ``codebook[order[l]]`` of ``_levels``."""
        levels, _, index = self._assign(self._rows(x))
        codes = index.reshape(x.shape).to(codes_dtype(2 ** self.bits))
        return codes, (levels if self.signed else levels[0])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, signed={self.signed}, momentum={self.momentum}"


# the method ``quant.method: lqnet`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("lqnet", "LQNet",
                      lambda b, layer, o: LQNetQuantizer(b, signed=True, channels=layer.weight.shape[0],
                                                         momentum=o["momentum"]),
                      lambda b, layer, o: LQNetQuantizer(b, signed=False, momentum=o["momentum"]),
                      weight_bits=(1, MAX_BITS), activation_bits=(1, MAX_BITS),
                      options={"momentum": MOMENTUM})
