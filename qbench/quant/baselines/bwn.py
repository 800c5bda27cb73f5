"""BWN: the binary-weight network of XNOR-Net (Rastegari et al., ECCV 2016, Sec. 3.1).

Forward: ``W~ = alpha_c * sign(W)`` with ``alpha_c = mean |W|`` over output channel c (the
closed-form optimum of ``||W - alpha B||^2`` derived in Sec. 3.1, one alpha per filter).
sign(0) = +1, so the codes are binary.

Backward ("Training Binary-Weights-Networks", Sec. 3.1): the gradient of ``alpha * sign(W)``
with alpha a function of W, and sign replaced by the straight-through estimator the paper
takes from Hubara et al., ``d sign(r)/dr = 1_{|r| <= 1}`` (hard-tanh STE):

    dL/dW_i = alpha_c * g_i * 1_{|W_i| <= 1} + (sgn(W_i) / n) * sum_j g_j sign(W_j),

with n the weights per channel and ``sgn`` the derivative of |.| (0 at 0, autograd's choice).
The paper prints this per element as ``g_i (1/n + alpha * d sign/dW_i)``, which keeps only the
j = i term of the alpha path; we use the full chain rule, as the authors' released code does.
"""

from __future__ import annotations

import torch

from ._common import BaselineQuantizer, broadcast_channels, channel_view, codes_dtype, sign_nonzero


class _SignClippedSTE(torch.autograd.Function):
    """sign (with sign(0) = +1) forward; gradient passed where |x| <= 1 (hard-tanh STE)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign_nonzero(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class BWNQuantizer(BaselineQuantizer):
    """Binary weights with one scale per output channel (dim 0 of the weight)."""

    bits = 1
    kind = "weight"

    def scales(self, w: torch.Tensor) -> torch.Tensor:
        """alpha_c = mean |W| per output channel, shape (C,)."""
        return channel_view(w).abs().mean(dim=1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = broadcast_channels(self.scales(w), w)
        return alpha * _SignClippedSTE.apply(w)

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.scales(w)
        codes = (w >= 0).to(codes_dtype(2))
        return codes, torch.stack((-alpha, alpha), dim=1)
