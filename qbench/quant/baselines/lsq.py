"""LSQ: learned step size quantization (Esser et al., ICLR 2020).

Forward (Eqs. 1-2): ``v_bar = round(clip(v / s, -Q_N, Q_P))``, ``v_hat = v_bar * s``; signed
data (weights) use Q_N = 2^(b-1), Q_P = 2^(b-1) - 1, unsigned data (activations after ReLU)
Q_N = 0, Q_P = 2^b - 1. round is half to even (torch.round).

Backward:
- straight through for v: ``d v_hat / d v = 1`` if -Q_N < v/s < Q_P, else 0.
- Eq. 3: ``d v_hat / d s = -v/s + round(v/s)`` if -Q_N < v/s < Q_P, ``-Q_N`` if v/s <= -Q_N,
  ``Q_P`` if v/s >= Q_P;
- Sec. 2.2: the gradient of s is multiplied by ``g = 1 / sqrt(N * Q_P)``, N the number of
  weights of the layer (weights) or of features per example (activations: x[0].numel()).

Initialisation (the paper's): ``s = 2 <|v|> / sqrt(Q_P)`` from the initial weights or the first
batch of activations (``initialize``).

No released code of the authors exists; every choice above is the paper's (Esser et al. 2020,
Eqs. 1-3, Sec. 2.1-2.2). The step size trains with the network's optimizer and lr (the paper
trains all parameters with one SGD), without weight decay (the default parameter group: the
paper gives no decay of its own for s).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import BaselineQuantizer, BaselineSpec, check_bits, codes_dtype

MAX_BITS = 8


class _LSQFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, s, q_n, q_p, grad_scale):
        scaled = v / s
        codes = torch.round(torch.clamp(scaled, -q_n, q_p))
        ctx.save_for_backward(scaled, codes)
        ctx.q_n, ctx.q_p, ctx.grad_scale = q_n, q_p, grad_scale
        return codes * s

    @staticmethod
    def backward(ctx, grad):
        scaled, codes = ctx.saved_tensors
        low, high = scaled <= -ctx.q_n, scaled >= ctx.q_p
        inside = ~(low | high)
        d_s = torch.where(low, -float(ctx.q_n), torch.where(high, float(ctx.q_p), codes - scaled))
        grad_s = (grad * d_s).sum() * ctx.grad_scale
        return grad * inside.to(grad.dtype), grad_s.reshape(()), None, None, None


class LSQQuantizer(BaselineQuantizer):
    """Uniform quantizer with a learned step size s (nn.Parameter, 0-dim).

    Args:
        bits: code width b (2..8 signed, 1..8 unsigned).
        signed: weights (True) or non-negative activations (False).
    """

    def __init__(self, bits: int, signed: bool) -> None:
        super().__init__()
        if not isinstance(signed, bool):
            raise ValueError(f"signed must be a bool, got {signed!r}")
        self.bits = check_bits(bits, 2 if signed else 1, MAX_BITS, "bits")
        self.signed = signed
        self.kind = "weight" if signed else "activation"
        self.q_n = 2 ** (bits - 1) if signed else 0
        self.q_p = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
        self.step = nn.Parameter(torch.ones(()))

    def _features(self, x: torch.Tensor) -> int:
        """N of the gradient scale: all weights, or the features of one example."""
        if self.signed or x.dim() < 2:
            return x.numel()
        return x[0].numel()

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        s = 2 * x.detach().abs().mean() / math.sqrt(self.q_p)
        if not s > 0:
            raise ValueError(f"LSQ step initialisation needs data with some nonzero value, got {tuple(x.shape)} "
                             f"of mean |x| = {float(x.abs().mean())}")
        self.step.fill_(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad_scale = 1 / math.sqrt(self._features(x) * self.q_p)
        return _LSQFunction.apply(x, self.step.to(x.dtype), self.q_n, self.q_p, grad_scale)

    @torch.no_grad()
    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.step.to(x.dtype)
        codes = torch.round(torch.clamp(x / s, -self.q_n, self.q_p)) + self.q_n
        levels = torch.arange(-self.q_n, self.q_p + 1, dtype=x.dtype, device=x.device) * s
        return codes.to(codes_dtype(2 ** self.bits)), levels

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, signed={self.signed}"


# the method ``quant.method: lsq`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("lsq", "LSQ", lambda b, layer, o: LSQQuantizer(b, signed=True),
                      lambda b, layer, o: LSQQuantizer(b, signed=False),
                      weight_bits=(2, MAX_BITS), activation_bits=(1, MAX_BITS))
