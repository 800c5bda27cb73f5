"""ABC-Net: accurate binary convolutional networks (Lin, Zhao & Pan, NeurIPS 2017).

ABC-Net writes a layer as a sum of binary convolutions; by linearity, conv(sum_i alpha_i B_i,
sum_n beta_n A_n) equals the layer applied to the two sums, so the method is simulated exactly
by a weight quantizer and an activation quantizer.

Weights (Sec. 3.1): ``W ~ sum_{i=1..M} alpha_i B_i`` with
``B_i = sign(W - mean(W) + u_i std(W))``, ``u_i = -1 + (i - 1) * 2 / (M - 1)`` (u = 0 for
M = 1), and alpha the least-squares fit ``min ||vec(W) - B alpha||^2`` (pseudo-inverse where
two B_i coincide), one set per layer as in the paper. std is the population std; sign(0) = +1.
Backward (the paper's STE): ``dc/dW = sum_i alpha_i dc/dB_i = (sum_i alpha_i) * g``; alpha is
recomputed from W in every forward and carries no gradient.

Activations (Sec. 3.2): ``R ~ sum_{n=1..N} beta_n A_n`` with
``A_n = H_{v_n}(R) = 1[hclip(R + v_n) >= 0.5]`` (hclip = clip to [0, 1]), beta and the shifts v
learned (nn.Parameter). Backward with the paper's STE ``d H_v(R) / dR = 1[0 <= R + v <= 1]``:
``dc/dR = sum_n beta_n g 1[0 <= R + v_n <= 1]``, ``dc/dbeta_n = sum g A_n``,
``dc/dv_n = sum beta_n g 1[0 <= R + v_n <= 1]``.
The STE window is one unit wide in R, so the method expects activations of order 1: the paper
binarizes batch-normalised inputs, and in the harness the quantizer reads a BatchNorm without
learned affine (``StandardisedInput``, as HWGQ's does) instead of the layer's raw input.
Start values (our choice; the paper does not fix them): the thresholds 0.5 - v_n of the
standardised input at the weights' shifts u_n of Sec. 3.1 (0 for one base: the sign of the
normalised input; -1, 0, +1 for three), beta_n = 1 / N. An earlier start, a uniform quantizer
of the raw [0, max R] (one base: a threshold at max R / 2; 3.8 after training in the first
block of the mini ResNet-18), switched most units off: ResNet-18 1/1 ended at 12.9 / 13.2 /
11.7 % at mini.

Both sums take M + 1 (N + 1) values because the binary bases switch on in a fixed order as the
input grows, so codes count the bases that are on; ``bits`` is M (N), the binary tensors the
paper stores.

No released code of the authors exists; every choice above is the paper's (Lin et al. 2017,
Secs. 3.1-3.2), and beta, v train with the network's optimizer and lr without weight decay
(the default parameter group: the paper gives none of its own).
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaselineQuantizer, BaselineSpec, StandardisedInput, check_bits, codes_dtype

MAX_BASES = 5


def shifts(bases: int) -> list[float]:
    """u_i = -1 + (i - 1) * 2 / (M - 1), i = 1..M (0 for a single base)."""
    if bases == 1:
        return [0.0]
    return [-1 + (i - 1) * 2 / (bases - 1) for i in range(1, bases + 1)]


class _TableSTE(torch.autograd.Function):
    """table[codes] forward, ``grad * scale`` backward (scale: sum of alphas)."""

    @staticmethod
    def forward(ctx, w, values, scale):
        ctx.save_for_backward(scale)
        return values

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return grad * scale, None, None


class ABCWeightQuantizer(BaselineQuantizer):
    """Weights as a sum of M scaled binary tensors with shifted thresholds.

    Args:
        bits: M, the number of binary bases (1..5).
    """

    kind = "weight"

    @property
    def num_levels(self) -> int:
        """M + 1: the bases switch on in a fixed order (the module docstring)."""
        return self.bits + 1

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BASES, "bits")
        self.u = shifts(bits)

    @torch.no_grad()
    def bases_and_scales(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """B (M, numel) in {-1, +1} and alpha (M,) of the least-squares fit."""
        flat = w.detach().reshape(-1)
        centred, std = flat - flat.mean(), flat.std(correction=0)
        bases = torch.stack([torch.where(centred + u * std >= 0, 1.0, -1.0).to(flat.dtype) for u in self.u])
        alpha = torch.linalg.pinv(bases @ bases.T) @ (bases @ flat)
        return bases, alpha

    @torch.no_grad()
    def _codes_and_table(self, w: torch.Tensor):
        bases, alpha = self.bases_and_scales(w)
        # B_i is +1 for the k bases with the largest u (B_M first) as W grows: code k
        codes = (bases > 0).sum(dim=0)
        signs = torch.tensor([[1.0 if i >= self.bits - k else -1.0 for i in range(self.bits)]
                              for k in range(self.bits + 1)], dtype=w.dtype, device=w.device)
        table = signs @ alpha
        return codes.reshape(w.shape), table, alpha

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        codes, table, alpha = self._codes_and_table(w)
        return _TableSTE.apply(w, table[codes], alpha.sum())

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, table, _ = self._codes_and_table(w)
        return codes.to(codes_dtype(self.bits + 1)), table


class _ABCActivationFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, beta, v):
        shifted = r.unsqueeze(-1) + v  # (..., N)
        on = shifted >= 0.5
        ctx.save_for_backward(shifted, on, beta)
        return (on.to(r.dtype) * beta).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        shifted, on, beta = ctx.saved_tensors
        inside = ((shifted >= 0) & (shifted <= 1)).to(grad.dtype)
        g = grad.unsqueeze(-1)
        grad_r = (g * inside * beta).sum(-1)
        dims = tuple(range(grad.dim()))
        grad_beta = (g * on.to(grad.dtype)).sum(dims)
        grad_v = (g * inside * beta).sum(dims)
        return grad_r, grad_beta, grad_v


class ABCActivationQuantizer(BaselineQuantizer):
    """Activations as a sum of N scaled binary maps with learned shifts.

    Args:
        bits: N, the number of binary bases (1..5).
    """

    kind = "activation"

    @property
    def num_levels(self) -> int:
        """M + 1: the bases switch on in a fixed order (the module docstring)."""
        return self.bits + 1

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BASES, "bits")
        self.beta = nn.Parameter(torch.full((bits,), 1.0 / bits))
        # thresholds 0.5 - v_n = u_n on a standardised input (the module docstring)
        self.v = nn.Parameter(0.5 - torch.tensor(shifts(bits)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ABCActivationFunction.apply(x, self.beta.to(x.dtype), self.v.to(x.dtype))

    @torch.no_grad()
    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes count the bases that are on; base order by threshold 0.5 - v (largest v first)."""
        beta, v = self.beta.to(x.dtype), self.v.to(x.dtype)
        on = (x.unsqueeze(-1) + v) >= 0.5
        order = torch.sort(v, descending=True, stable=True).indices
        # level k: the k bases with the lowest thresholds on, summed in base order as forward does
        masks = torch.zeros(self.bits + 1, self.bits, dtype=x.dtype, device=x.device)
        for k in range(1, self.bits + 1):
            masks[k, order[:k]] = 1
        table = (masks * beta).sum(-1)
        return on.sum(-1).to(codes_dtype(self.bits + 1)), table


# the method ``quant.method: abcnet`` (qbench.quant.methods.baselines registers it)
# ABC-Net's thresholds, like HWGQ's levels, are for a batch-normalised input
METHOD = BaselineSpec("abcnet", "ABCNet", lambda b, layer, o: ABCWeightQuantizer(b),
                      lambda b, layer, o: StandardisedInput(ABCActivationQuantizer(b), layer),
                      weight_bits=(1, MAX_BASES), activation_bits=(1, MAX_BASES))
