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
j = i term of the alpha path; we use the full chain rule.

What the authors' released code does instead (allenai/XNOR-Net @ 4006d59, Lua Torch): before
each step (train.lua, lines 169-172) the latent weights of every conv but the first and the last
are mean-centred per filter (util.lua ``meancenterConvParms``, lines 99-108) and clamped to
[-1, 1] (``clampConvParms``, lines 125-132), then replaced by ``alpha_c sign(W)`` with
alpha_c = mean |W| per output filter (``binarizeConvParms``, lines 111-122). After the backward
pass the latent weights are restored and the gradient computed for the binary weights is
multiplied element by element by ``(alpha_c 1[-1 < W_i < 1] + 1/n) (1 - 1/C_in)``, and by n
more under SGD (``updateBinaryGradWeight``, lines 78-94; train.lua line 184): the paper's
per-element j = i form with two extra factors, not the full chain rule. Neither the
mean-centring, the clamp nor those factors are reproduced here: the shared recipe's SGD and
gradient clipping apply to the latent weights as to every method's. BWN has no parameters of
its own (alpha is recomputed from W), so no parameter group; the README trains BWN AlexNet with
the released main.lua defaults (README.md, line 26).
"""

from __future__ import annotations

import torch

from ._common import BaselineQuantizer, BaselineSpec, broadcast_channels, channel_view, codes_dtype, sign_nonzero


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


# the method ``quant.method: bwn`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("bwn", "BWN", lambda b, layer, o: BWNQuantizer(), None, weight_bits=(1, 1),
                      example=("binary", None))
