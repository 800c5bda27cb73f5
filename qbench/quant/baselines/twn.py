"""TWN: ternary weight networks (Li & Liu, 2016, arXiv:1605.04711).

Forward (the ternary quantizer with the paper's approximate optimum
``Delta* = 0.7 E(|W|)``), one threshold and one scale per layer as in the paper:

    Delta = 0.7 * mean |W|,   I_Delta = {i : |W_i| > Delta},
    alpha = mean_{i in I_Delta} |W_i|,
    W^t_i = +alpha if W_i > Delta, 0 if |W_i| <= Delta, -alpha if W_i < -Delta.

A value exactly at +-Delta maps to 0 (the paper's quantizer uses strict inequalities). With I_Delta empty
(an all-zero weight) alpha is 0.

Backward (the paper's training procedure: the ternary weights are used in the forward and
backward passes, the gradient is applied to the full-precision weights): straight
through, ``dL/dW = dL/dW^t``; Delta and alpha are treated as constants.

As the authors' released code (fengfu-chris/caffe-twns @ 51916a4): Delta = (delta / 10) mean |W|
with delta = 7 by default (src/caffe/binary.cpp line 28; src/caffe/blob.cpp ``set_delta``,
lines 112-118), strict inequalities (src/caffe/util/math_functions.cpp line 289:
``(x > delta) - (x < -delta)``), alpha = <t, W> / <t, t> over the whole blob, i.e. mean |W| on
I_Delta (blob.cpp lines 173-176), recomputed at every forward of a conv (conv_layer.cpp line 38).
No parameters of its own, so no parameter group; their LeNet solver (examples/mnist/
lenet_tn_solver.prototxt, line 12: weight decay 1e-4) is a plain SGD recipe like the shared one.
"""

from __future__ import annotations

import torch

from ._common import BaselineQuantizer, BaselineSpec, codes_dtype

DELTA_FACTOR = 0.7


class _TernarySTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, delta, alpha):
        return torch.where(w > delta, alpha, torch.where(w < -delta, -alpha, torch.zeros_like(w)))

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


class TWNQuantizer(BaselineQuantizer):
    """Ternary weights {-alpha, 0, +alpha} with a per-layer threshold 0.7 * mean|W|."""

    bits = 2
    kind = "weight"
    num_levels = 3

    @torch.no_grad()
    def threshold_and_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Delta, alpha) of the paper for this weight, as 0-dim tensors."""
        a = w.abs()
        delta = DELTA_FACTOR * a.mean()
        above = a > delta
        alpha = (a * above).sum() / above.sum().clamp(min=1)
        return delta, alpha

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        delta, alpha = self.threshold_and_scale(w)
        return _TernarySTE.apply(w, delta, alpha)

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta, alpha = self.threshold_and_scale(w)
        codes = (w > delta).to(codes_dtype(3)) * 2 + (w.abs() <= delta).to(codes_dtype(3))
        return codes, torch.stack((-alpha, torch.zeros_like(alpha), alpha))


# the method ``quant.method: twn`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("twn", "TWN", lambda b, layer, o: TWNQuantizer(), None, weight_bits=(2, 2),
                      example=("ternary", None))
