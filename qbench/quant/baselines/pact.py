"""PACT: parameterized clipping activation (Choi et al., 2018, arXiv:1805.06085).

Forward (Eqs. 1-2): ``y = 0.5 (|x| - |x - alpha| + alpha)`` (= clip(x, 0, alpha)) and
``y_q = round(y * (2^k - 1) / alpha) * alpha / (2^k - 1)``, alpha a learned per-layer
clipping level.

Backward: straight through the round (``d y_q / d y = 1``) and
- Eq. 3: ``d y_q / d alpha = 0`` for x < alpha, ``1`` for x >= alpha;
- ``d y_q / d x = 1`` for 0 <= x < alpha and 0 elsewhere (the clip's gradient, with x = alpha
  assigned to alpha as in Eq. 3, so each element's gradient goes to exactly one of x, alpha).
The paper's L2 penalty on alpha (Sec. 3.1: alpha is regularised with L2 like the weights, to
trade clipping against quantization error) is the optimizer's weight decay on alpha:
``decay_mult`` = 1 puts alpha in a group with the run's weight decay, ``lr_mult`` = 1 the
network's lr (no separate lr is given for alpha). No released training code of the authors
exists to cite lines from.

Initialisation: the paper starts alpha at a large value (10); ``initialize`` sets it to the
largest activation of a first batch instead, so nothing is clipped at the start on the data's
own scale. The constructor's ``alpha`` is used until then.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaselineQuantizer, BaselineSpec, check_bits, codes_dtype

MAX_BITS = 8
INITIAL_ALPHA = 10.0


class _PACTFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, n):
        codes = torch.round(torch.clamp(x, min=0).clamp(max=alpha) * n / alpha)
        ctx.save_for_backward(x, alpha)
        return codes * alpha / n

    @staticmethod
    def backward(ctx, grad):
        x, alpha = ctx.saved_tensors
        above = x >= alpha
        grad_x = grad * ((x >= 0) & ~above).to(grad.dtype)
        return grad_x, (grad * above).sum().reshape(alpha.shape), None


class PACTQuantizer(BaselineQuantizer):
    """k-bit activations clipped at a learned alpha (nn.Parameter, 0-dim)."""

    kind = "activation"
    lr_mult = 1.0
    decay_mult = 1.0

    def __init__(self, bits: int, alpha: float = INITIAL_ALPHA) -> None:
        super().__init__()
        self.bits = check_bits(bits, 1, MAX_BITS, "bits")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        self.n = 2 ** self.bits - 1
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        top = x.detach().max()
        if not top > 0:
            raise ValueError(f"PACT alpha initialisation needs some positive activation, got max {float(top)}")
        self.alpha.fill_(top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PACTFunction.apply(x, self.alpha.to(x.dtype), self.n)

    @torch.no_grad()
    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.alpha.to(x.dtype)
        codes = torch.round(torch.clamp(x, min=0).clamp(max=alpha) * self.n / alpha)
        levels = torch.arange(self.n + 1, dtype=x.dtype, device=x.device) * alpha / self.n
        return codes.to(codes_dtype(self.n + 1)), levels


# the method ``quant.method: pact`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("pact", "PACT", None, lambda b, layer, o: PACTQuantizer(b), activation_bits=(1, MAX_BITS),
                      example=(None, "act_2bit"))
