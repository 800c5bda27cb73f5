"""The quantizer as ``torch.library`` custom ops, so that ``torch.compile`` traces through it.

Three ops in the ``qbench`` namespace:
- ``qbench::soft_quantize`` (Eq. 7), with autograd registered: its backward is
- ``qbench::soft_quantize_backward`` (Eqs. 8-11, recomputed from x);
- ``qbench::hard_quantize`` (Eq. 12, no gradient).

Each op runs ``kernels`` (the native CPU kernel, the Triton kernels on CUDA, or the torch loop
elsewhere; ``kernels.backend_name`` says which). Their fake implementations give dynamo and
inductor the output shapes, dtypes and strides without running anything, so a compiled model
holds each quantizer call as one opaque node in its graph: no graph break, and CUDA graphs can
capture it (nothing in the ops waits for the GPU). Outputs are laid out like ``empty_like(x)``
(channels_last stays channels_last) in x's dtype; parameter gradients in the parameters' dtype.

``soft_quantize`` is the entry point: the op while ``torch.compile`` traces, and outside it an
``autograd.Function`` running the same forward and backward without the op's dispatch layers
(measured cheaper per call; see ``_SoftQuantizeEager``).

``T`` is a one-element tensor on x's device, not a float: a schedule that changes the
temperature updates it in place, so a compiled graph neither recompiles nor keeps a stale
value. The step heights, level outputs and offset are constants of the level set (floats in
the op's schema, guarded by dynamo as constants); their tensors are cached per device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import kernels


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _laid_out_like(y: Tensor, x: Tensor) -> Tensor:
    """y with the strides the fake implementations promise (``empty_like(x)``)."""
    if y.dim() and y.stride() != x.stride():
        like = torch.empty_like(x)
        if like.stride() != y.stride():
            return like.copy_(y)
    return y


def _soft_forward(x, biases, alpha, beta, T, steps, offset) -> Tensor:
    s = kernels.constant(tuple(steps), x.device, _compute_dtype(x))
    return _laid_out_like(kernels.soft_forward(x, s, biases, alpha, beta, T, offset), x)


def _soft_backward_impl(grad_y, x, biases, alpha, beta, T, steps, offset, need_x, need_biases, need_alpha,
                        need_beta):
    s = kernels.constant(tuple(steps), x.device, _compute_dtype(x))
    gx, ga, gb, gbias = kernels.soft_backward(grad_y, x, s, biases, alpha, beta, T, offset,
                                              need_alpha=need_alpha, need_beta=need_beta,
                                              need_biases=need_biases, need_x=need_x)
    return (_laid_out_like(gx, x) if need_x else None,
            gbias.to(device=biases.device, dtype=biases.dtype) if need_biases else None,
            ga.to(device=alpha.device, dtype=alpha.dtype).reshape(()) if need_alpha else None,
            gb.to(device=beta.device, dtype=beta.dtype).reshape(()) if need_beta else None)


@torch.library.custom_op("qbench::soft_quantize", mutates_args=())
def soft_quantize_op(x: Tensor, biases: Tensor, alpha: Tensor, beta: Tensor, T: Tensor,
                     steps: list[float], offset: float) -> Tensor:
    """Eq. 7 on x; ``biases``/``alpha``/``beta`` in float32 (float64 for float64 x)."""
    return _soft_forward(x, biases, alpha, beta, T, steps, offset)


@soft_quantize_op.register_fake
def _soft_quantize_fake(x, biases, alpha, beta, T, steps, offset):
    return torch.empty_like(x)


@torch.library.custom_op("qbench::soft_quantize_backward", mutates_args=())
def soft_quantize_backward_op(grad_y: Tensor, x: Tensor, biases: Tensor, alpha: Tensor, beta: Tensor,
                              T: Tensor, steps: list[float], offset: float, need_x: bool,
                              need_biases: bool, need_alpha: bool,
                              need_beta: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dL/dx, dL/dbiases, dL/dalpha, dL/dbeta); an unrequested one is an empty tensor."""
    grads = _soft_backward_impl(grad_y, x, biases, alpha, beta, T, steps, offset, need_x, need_biases,
                                need_alpha, need_beta)
    return tuple(g if g is not None else like.new_empty(0) for g, like in zip(grads, (x, biases, alpha, beta)))


@soft_quantize_backward_op.register_fake
def _soft_quantize_backward_fake(grad_y, x, biases, alpha, beta, T, steps, offset, need_x, need_biases,
                                 need_alpha, need_beta):
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            torch.empty_like(biases) if need_biases else biases.new_empty(0),
            alpha.new_empty(()) if need_alpha else alpha.new_empty(0),
            beta.new_empty(()) if need_beta else beta.new_empty(0))


def _soft_setup_context(ctx, inputs, output) -> None:
    x, biases, alpha, beta, T, steps, offset = inputs
    # x and the n-element parameters only: the sigmoids are recomputed in backward
    ctx.save_for_backward(x, biases, alpha, beta, T)
    ctx.steps, ctx.offset = steps, offset


def _soft_backward(ctx, grad_y):
    x, biases, alpha, beta, T = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx, gbias, ga, gb = soft_quantize_backward_op(grad_y, x, biases, alpha, beta, T, ctx.steps, ctx.offset,
                                                  need[0], need[1], need[2], need[3])
    return (gx if need[0] else None, gbias if need[1] else None, ga if need[2] else None,
            gb if need[3] else None, None, None, None)


soft_quantize_op.register_autograd(_soft_backward, setup_context=_soft_setup_context)


def _hard_forward(x, biases, alpha, beta, outputs) -> Tensor:
    out = kernels.constant(tuple(outputs), x.device, x.dtype)
    return _laid_out_like(kernels.hard_forward(x, out, biases, alpha, beta), x)


@torch.library.custom_op("qbench::hard_quantize", mutates_args=())
def hard_quantize_op(x: Tensor, biases: Tensor, alpha: Tensor, beta: Tensor, outputs: list[float]) -> Tensor:
    """Eq. 12 on x; ``biases``/``alpha``/``beta`` in x's dtype (the comparisons of the torch
    reference happen in that dtype)."""
    return _hard_forward(x, biases, alpha, beta, outputs)


@hard_quantize_op.register_fake
def _hard_quantize_fake(x, biases, alpha, beta, outputs):
    return torch.empty_like(x)


class _SoftQuantizeEager(torch.autograd.Function):
    """The same forward and backward as the op, without the dispatcher's layers.

    Outside ``torch.compile`` this is what runs: the op's Python dispatch (its autograd wrapper,
    argument conversion and redispatch, twice per call) cost about 15 us per forward and 90 us
    per forward + backward here, a few percent of a small model's training step.
    """

    @staticmethod
    def forward(ctx, x, biases, alpha, beta, T, steps, offset):
        ctx.save_for_backward(x, biases, alpha, beta, T)
        ctx.steps, ctx.offset = steps, offset
        return _soft_forward(x, biases, alpha, beta, T, steps, offset)

    @staticmethod
    def backward(ctx, grad_y):
        x, biases, alpha, beta, T = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gbias, ga, gb = _soft_backward_impl(grad_y, x, biases, alpha, beta, T, ctx.steps, ctx.offset,
                                                need[0], need[1], need[2], need[3])
        return gx, gbias, ga, gb, None, None, None


def soft_quantize(x: Tensor, biases: Tensor, alpha: Tensor, beta: Tensor, T: Tensor, steps, offset: float) -> Tensor:
    """Eq. 7 with its backward: the custom op under ``torch.compile`` (and export), the
    equivalent autograd function in eager mode. Arguments as for ``soft_quantize_op``."""
    if torch.compiler.is_compiling():
        return soft_quantize_op(x, biases, alpha, beta, T, list(steps), offset)
    return _SoftQuantizeEager.apply(x, biases, alpha, beta, T, steps, offset)


def hard_quantize(x: Tensor, biases: Tensor, alpha: Tensor, beta: Tensor, outputs) -> Tensor:
    """Eq. 12: the op while ``torch.compile`` traces, the kernels directly otherwise (an eager
    call of a custom op also imports dynamo, and with it Triton, on CPU-only use)."""
    if torch.compiler.is_compiling():
        return hard_quantize_op(x, biases, alpha, beta, list(outputs))
    return _hard_forward(x, biases, alpha, beta, outputs)
