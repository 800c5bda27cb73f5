"""DoReFa-Net (Zhou et al., 2016, arXiv:1606.06160): k-bit weights and activations.

``quantize_k(r) = round((2^k - 1) r) / (2^k - 1)`` for r in [0, 1], with the straight-through
gradient ``d quantize_k(r) / dr = 1`` (the paper's quantize_k and its STE, Sec. 2).

Weights (Sec. 2, low bitwidth weights):
- k = 1: ``r_o = E(|r_i|) * sign(r_i)``, E the mean of |W| over the whole layer; backward
  ``dc/dr_i = dc/dr_o`` (identity, E a constant). sign(0) = +1, so the codes are binary.
- k > 1: ``r_o = 2 quantize_k(tanh(r_i) / (2 max|tanh(r_i)|) + 1/2) - 1``; the gradient flows
  through tanh and the max (plain autograd) and straight through the round.

Activations (Sec. 2, low bitwidth activations): ``r_o = quantize_k(clip(r_i, 0, 1))``, the
activation bounded to [0, 1] before it is quantized. The gradient of the clip
is 1 on [0, 1] (both ends included) and 0 outside.

As the released code (tensorpack/tensorpack @ 1547a54, examples/DoReFa-Net/dorefa.py):
quantize_k with an identity gradient (lines 12-19); 1-bit weights E sign(W) with E = mean |W| of
the layer, sign(0) = +1, identity gradient (lines 25-32); k-bit weights through tanh and the max
(lines 34-36); activations quantize_k of ``clip(x, 0, 1)`` (lines 38-41 and alexnet-dorefa.py
lines 83-89). The first conv and the last fc stay full precision (alexnet-dorefa.py line 77), as
in the shared harness. No parameters of its own, so no parameter group; their AlexNet trains
with Adam lr 2e-4, eps 1e-5 (alexnet-dorefa.py lines 136-137), where the shared recipe is SGD
(deviation ``dorefa_sgd``).
"""

from __future__ import annotations

import torch

from ._common import BaselineQuantizer, BaselineSpec, check_bits, codes_dtype, round_ste, sign_nonzero

MAX_BITS = 8


class _ScaledSignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, scale):
        return scale * sign_nonzero(w)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _Clip01(torch.autograd.Function):
    """clip(x, 0, 1) with gradient 1 on the closed interval [0, 1] (stated, not left to
    the autograd formula of torch.clamp at the ends)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.clamp(x, 0, 1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x >= 0) & (x <= 1)).to(grad.dtype)


def _quantize_k(r: torch.Tensor, n: int) -> torch.Tensor:
    """quantize_k with n = 2^k - 1, STE through the round."""
    return round_ste(r * n) / n


class DoReFaWeightQuantizer(BaselineQuantizer):
    """k-bit DoReFa weights (the tanh form; E(|W|) sign(W) for k = 1)."""

    kind = "weight"

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BITS, "bits")
        self.n = 2 ** self.bits - 1

    def _normalized(self, w: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(w)
        # an all-zero weight has max|tanh| = 0: every value is then at the midpoint 1/2
        return t / (2 * t.abs().max().clamp(min=torch.finfo(t.dtype).tiny)) + 0.5

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits == 1:
            return _ScaledSignSTE.apply(w, w.detach().abs().mean())
        return 2 * _quantize_k(self._normalized(w), self.n) - 1

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bits == 1:
            scale = w.abs().mean()
            return (w >= 0).to(codes_dtype(2)), torch.stack((-scale, scale))
        codes = torch.round(self._normalized(w) * self.n)
        steps = torch.arange(self.n + 1, dtype=w.dtype, device=w.device)
        return codes.to(codes_dtype(self.n + 1)), 2 * (steps / self.n) - 1


class DoReFaActivationQuantizer(BaselineQuantizer):
    """k-bit DoReFa activations, quantize_k(clip(x, 0, 1))."""

    kind = "activation"

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BITS, "bits")
        self.n = 2 ** self.bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _quantize_k(_Clip01.apply(x), self.n)

    @torch.no_grad()
    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.round(torch.clamp(x, 0, 1) * self.n)
        steps = torch.arange(self.n + 1, dtype=x.dtype, device=x.device)
        return codes.to(codes_dtype(self.n + 1)), steps / self.n


# the method ``quant.method: dorefa`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("dorefa", "DoReFa", lambda b, layer, o: DoReFaWeightQuantizer(b),
                      lambda b, layer, o: DoReFaActivationQuantizer(b),
                      weight_bits=(1, MAX_BITS), activation_bits=(1, MAX_BITS))
