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

Initialisation (``initialize``): W_p = W_n = 1 (``INITIAL_SCALE``), as the authors' released
code starts them (czhu95/ternarynet @ 1a67251, examples/Ternary-Net/ternary.py, lines 36-37,
``tw_ternarize``: ``initializer=1.0``); the paper does not fix them. The released code applies 1.0
to the raw weights (it does not divide by the maximum); here it is in the paper's max-normalised
units, i.e. m in raw units. With BatchNorm after the layer the loss is invariant to the scale, so
``dL/dW_p`` grows as 1 / W_p and the relative SGD step as lr / W_p^2: both starts give the same
relative step at W_p = 1, whereas least-squares starts (0.11-0.19 in these units) made it 30-80x
larger (on mini AlexNet-BN at lr 0.01 a W_p turned negative by step 13; deviation ``ttq_sgd``).

Parameter group (``lr_mult`` = 1, ``decay_mult`` = 1): the authors' CIFAR ResNet script trains
W_p, W_n with the same momentum SGD (lr 0.1, momentum 0.9) as every other variable
(examples/Ternary-Net/tw-cifar10-resnet.py, lines 179-182, schedule line 194) and its weight decay
``regularize_cost('.*/W', tf.nn.l2_loss)`` (lines 124-126) matches ``.../Wp`` and ``.../Wn`` as well
(its log, train_log/cifar10-resnet-20-finetune.log, lists "Apply regularizer for
res1.0/conv1/Wp:0"). Their AlexNet script uses Adam (lr 1e-4, eps 1e-5; tw-imagenet-alexnet.py,
lines 169-174) with weight decay on the fc weights only (line 88); the shared recipe here is SGD,
so the CIFAR script is the one followed (deviation ``ttq_sgd``). Threshold t = 0.05 is the
scripts' default (tw-cifar10-resnet.py, line 207); both scripts leave the first conv and the last
fc full precision (line 50; tw-imagenet-alexnet.py, line 35), as the shared harness does.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import BaselineQuantizer, BaselineSpec, codes_dtype

THRESHOLD_FACTOR = 0.05
INITIAL_SCALE = 1.0


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
    num_levels = 3
    lr_mult = 1.0
    decay_mult = 1.0

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
        self.w_p.fill_(INITIAL_SCALE)
        self.w_n.fill_(INITIAL_SCALE)

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


# the method ``quant.method: ttq`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("ttq", "TTQ", lambda b, layer, o: TTQQuantizer(o["threshold"]), None, weight_bits=(2, 2),
                      options={"threshold": THRESHOLD_FACTOR}, example=("ternary", None))
