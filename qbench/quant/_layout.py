"""Tensor layout helpers shared by the CPU/torch paths (``kernels``) and the Triton kernels
(``_triton_kernel``): one place, so neither kernel module imports the other's internals."""

from __future__ import annotations

import functools

import torch


def dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when its elements fill their memory densely (contiguous, channels_last, any
    permutation), else a dense copy; either way laid out as ``torch.empty_like(x)``.

    The kernels are elementwise and walk memory linearly, so any dense layout works: outputs
    are allocated with ``empty_like`` and keep the input's layout (channels_last stays
    channels_last, with no copy in either direction).
    """
    x = x.detach()
    if x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    y = torch.empty_like(x)  # other permutations: empty_like keeps the strides of a dense x
    return x if x.stride() == y.stride() else y.copy_(x)


def dense_as(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (same shape as ``like``) laid out with ``like``'s strides, copying only if needed."""
    if t.stride() == like.stride():
        return t.detach()
    return torch.empty_like(like).copy_(t.detach())


@functools.lru_cache(maxsize=256)
def constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small read-only tensor of constants (step heights, level outputs), built once.

    Saves the per-call tensor construction on the hot path; callers must not modify it.
    """
    return torch.tensor(values, device=device, dtype=dtype)
