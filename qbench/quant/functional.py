"""The quantization function of the paper as pure functions (Eqs. 7-12).

``soft_quantize`` (Eq. 7, training) is the custom op ``qbench::soft_quantize`` (``ops``) whose
backward is the closed form of Eqs. 8-11; it keeps only ``x`` for backward and recomputes the
sigmoids.
``hard_quantize`` (Eq. 12, inference) maps every element onto ``alpha * (Y_k - Y_0 - o)``.
``soft_quantize_reference`` is Eq. 7 written literally under plain autograd: the ground
truth the fast path is tested against.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import kernels
from .levels import LevelSet, as_level_set
from . import ops


class NonFiniteError(ValueError):
    """A quantizer input holds NaN (diverged weights): Eq. 12 would hide it on the lowest level."""


def _as_scalar(v, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:  # module parameters pass as they are: a reshape adds an autograd node
            return v
        if v.numel() != 1:
            raise ValueError(f"alpha/beta must be scalars, got shape {tuple(v.shape)}")
        return v.reshape(())
    return torch.tensor(float(v), dtype=dtype or like.dtype, device=like.device)


def _float_input(x: torch.Tensor, fn: str) -> torch.Tensor:
    """x as a floating tensor: integer and bool inputs are promoted to the default float dtype
    (computed in their own dtype, alpha and the biases were cast to integers: all zeros)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(f"{fn}: complex input is not supported (dtype {x.dtype})")
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _check_temperature_tensor(T: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """A tensor T checked like a float T (positive, within dt's range). Inside a compiled graph
    it is left as it is: the quantizer modules validate T where it is set."""
    if T.numel() != 1:
        raise ValueError(f"temperature must be a one-element tensor, got shape {tuple(T.shape)}")
    T = T.reshape(())
    if torch.compiler.is_compiling():
        return T
    ok = (T > 0) & (T <= torch.finfo(dt).max)  # NaN fails both
    if T.device.type == "cuda":  # no host sync on the training path
        torch._assert_async(ok, "temperature must be positive and finite")
    elif not bool(ok):
        raise ValueError(f"temperature must be positive and within the range of {dt}, got {T.item()}")
    return T


def _is_sorted(biases: torch.Tensor) -> bool:
    if biases.is_cpu:  # a few Python comparisons cost less than three tensor ops
        v = biases.tolist()
        return all(a <= b for a, b in zip(v, v[1:]))
    return not bool((biases[1:] < biases[:-1]).any())


def _check_biases(biases: torch.Tensor | Sequence[float], levels: LevelSet) -> torch.Tensor:
    if not isinstance(biases, torch.Tensor):
        biases = torch.as_tensor(biases, dtype=torch.get_default_dtype())
    if biases.dim() != 1 or biases.numel() != levels.n:
        raise ValueError(
            f"level set {levels.name!r} has n={levels.n} steps, so it needs {levels.n} biases; "
            f"got shape {tuple(biases.shape)}")
    return biases


def soft_quantize(x: torch.Tensor, levels: LevelSet | str | Sequence[float], biases: torch.Tensor,
                  alpha, beta, T: float) -> torch.Tensor:
    """Soft quantization function, Eq. 7.

    Args:
        x: values to quantize (weights or activations), any shape.
        levels: target level set Y (a LevelSet, its name, or the levels).
        biases: sorted step positions ``b_i`` in units of ``beta * x``, shape (n,).
        alpha: output scale (scalar tensor or float).
        beta: input scale (scalar tensor or float).
        T: temperature; larger is closer to the ideal step function. A float, or a
            one-element tensor on x's device (what the quantizer modules pass: a schedule
            updates it in place, so compiled graphs stay valid).

    Returns:
        ``alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)``: x's shape, dtype and
        layout; float16/bfloat16 x is computed in float32.
    """
    x = _float_input(x, "soft_quantize")
    levels = as_level_set(levels)
    biases = _check_biases(biases, levels)
    # parameters in float32 also for float16/bfloat16 x (autocast): the op computes in float32
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    if isinstance(T, torch.Tensor):
        T = _check_temperature_tensor(T, dt)
    else:
        if not T > 0:
            raise ValueError(f"temperature must be positive, got {T}")
        if not T <= torch.finfo(dt).max:  # T * (beta x - b) would turn into inf * 0 = NaN
            raise ValueError(f"temperature {T:.3g} is beyond the range of {dt}; cap it (temperature.cap)")
        T = kernels.constant((float(T),), x.device, dt).reshape(())  # float64 x: T not rounded
    alpha, beta = _as_scalar(alpha, x, dt).to(dt), _as_scalar(beta, x, dt).to(dt)
    return ops.soft_quantize(x, biases.to(dt), alpha, beta, T, levels.steps, levels.offset)


def _hard_inputs(name: str, x, levels, biases, alpha, beta):
    # the checks of Eq. 12's inputs, shared by the paper's step and the released code's strict one
    x = _float_input(x, name)
    levels = as_level_set(levels)
    biases = _check_biases(biases, levels).detach()
    if levels.n > 1 and not _is_sorted(biases):
        raise ValueError(f"biases must be sorted ascending, got {biases.tolist()}")
    if torch.isnan(x).any():
        raise NonFiniteError(f"{name}: NaN in an input of shape {tuple(x.shape)}")
    return x, levels, biases, _as_scalar(alpha, x).detach(), _as_scalar(beta, x).detach()


def hard_quantize(x: torch.Tensor, levels: LevelSet | str | Sequence[float], biases: torch.Tensor,
                  alpha, beta) -> torch.Tensor:
    """Ideal quantization function, Eq. 12 (unit steps, ``A(0) = 1``).

    Args:
        x: values to quantize, any shape.
        levels: target level set Y.
        biases: step positions ``b_i`` (n,), sorted ascending (the lookup below relies on it;
            unsorted biases raise ValueError).
        alpha: output scale.
        beta: input scale.

    Returns:
        ``alpha * (Y_k - Y_0 - o)`` with k the number of biases not above ``beta * x``.
        Carries no gradient.
    """
    x, levels, biases, alpha, beta = _hard_inputs("hard_quantize", x, levels, biases, alpha, beta)
    with torch.no_grad():
        return ops.hard_quantize(x.detach(), biases.to(x.dtype), alpha.to(x.dtype), beta.to(x.dtype),
                                 levels.outputs())


def soft_quantize_reference(x: torch.Tensor, levels: LevelSet | str | Sequence[float],
                            biases: torch.Tensor, alpha, beta, T: float) -> torch.Tensor:
    """Eq. 7 written literally (a loop of n sigmoids under plain autograd).

    Slow and memory-hungry on purpose: it is the definition the fast path must match.
    """
    levels = as_level_set(levels)
    biases = _check_biases(biases, levels)
    alpha, beta = _as_scalar(alpha, x), _as_scalar(beta, x)
    y = 0
    for i, s in enumerate(levels.steps):
        y = y + s * torch.sigmoid(T * (beta * x - biases[i]))
    return alpha * (y - levels.offset)


def hard_quantize_reference(x: torch.Tensor, levels: LevelSet | str | Sequence[float],
                            biases: torch.Tensor, alpha, beta) -> torch.Tensor:
    """Eq. 12 written literally with n unit steps ``A(z) = [z >= 0]``."""
    levels = as_level_set(levels)
    alpha, beta = _as_scalar(alpha, x), _as_scalar(beta, x)
    y = 0
    for i, s in enumerate(levels.steps):
        y = y + s * (beta * x - biases[i] >= 0).to(x.dtype)
    return alpha * (y - levels.offset)


# --- the released code's quantizer (qbench.quant.variant) --------------------------------
# A separate torch path: the fused kernels (native CPU, Triton) compute the paper's function
# only, so the default path pays nothing for these choices; this one loops over the n steps
# like the kernels' torch fallback (slower, used only by a non-paper QuantVariant).

class _ReleasedSoftQuantize(torch.autograd.Function):
    """Eq. 7 with the released code's choices: sigmoid argument clamped to [-clamp, clamp]
    (forward and backward: a saturated element keeps ``sigma'(clamp) * T``), T already capped
    by the caller, and optionally the backward's sigmoid derivative taken at T = 1 (times T)."""

    @staticmethod
    def forward(ctx, x, biases, alpha, beta, T, steps, offset, clamp, unit_t_backward):
        ctx.save_for_backward(x, biases, alpha, beta, T)
        ctx.steps, ctx.offset, ctx.clamp, ctx.unit_t = steps, offset, clamp, unit_t_backward
        u = x * beta
        acc = torch.zeros_like(u)
        for s, b in zip(steps, biases.unbind()):
            z = (u - b) * T
            if clamp is not None:
                z = z.clamp(-clamp, clamp)
            acc.add_(torch.sigmoid(z) * s)
        return (acc - offset) * alpha

    @staticmethod
    def backward(ctx, grad_y):
        x, biases, alpha, beta, T = ctx.saved_tensors
        need = ctx.needs_input_grad
        clamp = ctx.clamp
        u = x * beta
        dsum = torch.zeros_like(u)
        ssum = torch.zeros_like(u) if need[2] else None
        grad_b = torch.zeros_like(biases) if need[1] else None
        for i, (s, b) in enumerate(zip(ctx.steps, biases.unbind())):
            z = (u - b) * T
            if clamp is not None:
                z = z.clamp(-clamp, clamp)
            sig = torch.sigmoid(z)
            if ssum is not None:
                ssum.add_(sig * s)
            if ctx.unit_t:  # the derivative at T = 1; the factor T follows below as for Eq. 8
                z1 = u - b
                if clamp is not None:
                    z1 = z1.clamp(-clamp, clamp)
                sig = torch.sigmoid(z1)
            d = sig * (1 - sig) * s
            dsum.add_(d)
            if grad_b is not None:
                grad_b[i] = -(grad_y * d).sum() * alpha * T
        g = grad_y * dsum
        grad_x = g * (alpha * beta * T) if need[0] else None
        grad_alpha = (grad_y * (ssum - ctx.offset)).sum().reshape(alpha.shape) if need[2] else None
        grad_beta = ((g * x).sum() * alpha * T).reshape(beta.shape) if need[3] else None
        return grad_x, grad_b, grad_alpha, grad_beta, None, None, None, None, None


def soft_quantize_released(x: torch.Tensor, levels: LevelSet | str | Sequence[float], biases: torch.Tensor,
                           alpha, beta, T, clamp: float | None = None, t_cap: float | None = None,
                           unit_t_backward: bool = False) -> torch.Tensor:
    """Eq. 7 as the authors' released code computes it (``qbench.quant.variant``).

    Args:
        x, levels, biases, alpha, beta, T: as for ``soft_quantize``.
        clamp: bound of the sigmoid argument ``T (beta x - b)`` in forward and backward; None:
            unclamped.
        t_cap: use ``min(T, t_cap)`` throughout; None: the real T.
        unit_t_backward: the backward's sigmoid derivative at T = 1, multiplied by T.

    Returns:
        x's shape and dtype; computed in float64 for float64 x, float32 otherwise.
    """
    x = _float_input(x, "soft_quantize_released")
    levels = as_level_set(levels)
    biases = _check_biases(biases, levels)
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    if isinstance(T, torch.Tensor):
        T = _check_temperature_tensor(T, dt).to(dt)
    else:
        if not 0 < T <= torch.finfo(dt).max:
            raise ValueError(f"temperature must be positive and within the range of {dt}, got {T}")
        T = torch.tensor(float(T), dtype=dt, device=x.device)
    if t_cap is not None:
        T = torch.clamp(T, max=float(t_cap))
    alpha, beta = _as_scalar(alpha, x, dt).to(dt), _as_scalar(beta, x, dt).to(dt)
    y = _ReleasedSoftQuantize.apply(x.to(dt), biases.to(dt), alpha, beta, T, tuple(levels.steps),
                                    float(levels.offset), None if clamp is None else float(clamp),
                                    bool(unit_t_backward))
    return y.to(x.dtype)


def hard_quantize_strict(x: torch.Tensor, levels: LevelSet | str | Sequence[float], biases: torch.Tensor,
                         alpha, beta) -> torch.Tensor:
    """Eq. 12 with the released code's strict step ``A(z) = [z > 0]``: an input exactly on a
    bias takes the lower level (``hard_quantize`` has Eq. 1's ``A(0) = 1``). Same checks and
    result dtype as ``hard_quantize``; a torch lookup, not the fused kernel."""
    x, levels, biases, alpha, beta = _hard_inputs("hard_quantize_strict", x, levels, biases, alpha, beta)
    with torch.no_grad():
        xd = x.detach()
        out = kernels.constant(tuple(levels.outputs()), x.device, x.dtype)
        k = torch.bucketize(xd * beta.to(x.dtype), biases.to(x.dtype), right=False)
        return out[k] * alpha.to(x.dtype)
