"""TTQ: trained ternary quantization (Zhu, Han, Mao & Dally, ICLR 2017).

Forward (Eq. 6 with the threshold of Eq. 9): with latent full-precision weights w~ and
``Delta = t * max |w~|`` (t = 0.05),

    w^t = W_p if w~ > Delta,   0 if |w~| <= Delta,   -W_n if w~ < -Delta,

where W_p, W_n > 0 are two learned scales per layer. The paper first divides each layer's
weights by their maximum to reach [-1, 1], and W_p, W_n live in those units: the quantizer
divides by m = max |w~| taken once (``initialize``, a buffer; 1 before it) and multiplies the
ternary output by m again. The ternarization is scale invariant, but the learned scales'
SGD steps are not: in raw units a step on W_p would be 1/m^2 times the paper's relative to
W_p. Values exactly at +-Delta map to 0.

Backward:
- Eq. 7: ``dL/dW_p = sum_{i in I_p} dL/dw^t(i)`` and, for the negative scale,
  ``dL/dW_n = -sum_{i in I_n} dL/dw^t(i)``. The paper prints a plus sign for both, but its
  Eq. 6 uses -W_n; taken literally that moves W_n against the loss, so we use the
  chain-rule sign (the paper's rule for the signed scale -W_n).
- Eq. 8: ``dL/dw~(i) = W_p * g_i`` on I_p, ``g_i`` on I_z (|w~| <= Delta), ``W_n * g_i`` on
  I_n (with g = dL/dw^t); Delta is a constant.

Initialisation (``initialize``): the paper starts from a full-precision model but does not fix
W_p, W_n; we take the least-squares scales of the initial ternarization, the mean of w~ over
I_p and of -w~ over I_n (1 where a side is empty).
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaselineQuantizer, codes_dtype

THRESHOLD_FACTOR = 0.05


class _TTQFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, w_p, w_n, delta):
        pos, neg = w > delta, w < -delta
        ctx.save_for_backward(pos, neg, w_p, w_n)
        zero = torch.zeros((), dtype=w.dtype, device=w.device)
        return torch.where(pos, w_p, torch.where(neg, -w_n, zero))

    @staticmethod
    def backward(ctx, grad):
        pos, neg, w_p, w_n = ctx.saved_tensors
        grad_w_p = (grad * pos).sum().reshape(w_p.shape)
        grad_w_n = -(grad * neg).sum().reshape(w_n.shape)
        scale = torch.where(pos, w_p, torch.where(neg, w_n, torch.ones_like(w_p)))
        return grad * scale, grad_w_p, grad_w_n, None


class TTQQuantizer(BaselineQuantizer):
    """Ternary weights {-W_n, 0, W_p} with learned W_p, W_n (nn.Parameter, 0-dim).

    Args:
        threshold: t of ``Delta = t * max |w~|`` (the paper's 0.05), in (0, 1).
    """

    bits = 2
    kind = "weight"

    def __init__(self, threshold: float = THRESHOLD_FACTOR) -> None:
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)
        self.w_p = nn.Parameter(torch.ones(()))
        self.w_n = nn.Parameter(torch.ones(()))
        self.register_buffer("norm", torch.ones(()))  # m: the paper's normalisation to [-1, 1]

    def delta(self, w: torch.Tensor) -> torch.Tensor:
        return self.threshold * w.detach().abs().max()

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        top = float(w.detach().abs().max())
        self.norm.fill_(top if top > 0 else 1.0)
        w = w / self.norm.to(w.dtype)
        delta = self.delta(w)
        pos, neg = w > delta, w < -delta
        for param, values in ((self.w_p, w[pos]), (self.w_n, -w[neg])):
            param.fill_(values.mean() if values.numel() else 1.0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        m = self.norm.to(w.dtype)
        w = w / m
        return m * _TTQFunction.apply(w, self.w_p.to(w.dtype), self.w_n.to(w.dtype), self.delta(w))

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta = self.delta(w)
        codes = (w > delta).to(codes_dtype(3)) * 2 + (w.abs() <= delta).to(codes_dtype(3))
        m = self.norm.to(w.dtype)
        w_p, w_n = m * self.w_p.detach().to(w.dtype), m * self.w_n.detach().to(w.dtype)
        return codes, torch.stack((-w_n, torch.zeros_like(w_p), w_p))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, threshold={self.threshold}"
