"""Elementwise kernels behind the soft and hard quantizers.

Kept apart from ``functional`` so the autograd wiring and the arithmetic can be tuned
independently. All functions take the step heights ``steps`` (n,), sorted ``biases`` (n,),
scalar tensors ``alpha`` and ``beta``, a Python float ``T`` and the offset ``o``.
"""

from __future__ import annotations

import torch


def soft_forward(x: torch.Tensor, steps: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor, T: float, offset: float) -> torch.Tensor:
    """Eq. 7: ``alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)``."""
    u = x * beta
    acc = torch.zeros_like(u)
    for s, b in zip(steps.unbind(), biases.unbind()):
        acc.add_(torch.sigmoid((u - b) * T) * s)
    return (acc - offset) * alpha


def soft_backward(grad_y: torch.Tensor, x: torch.Tensor, steps: torch.Tensor, biases: torch.Tensor,
                  alpha: torch.Tensor, beta: torch.Tensor, T: float, offset: float,
                  need_alpha: bool, need_beta: bool, need_biases: bool):
    """Gradients of Eq. 7 (Eqs. 8-11), recomputed from ``x``.

    Returns ``(grad_x, grad_alpha, grad_beta, grad_biases)``; unrequested ones are ``None``.
    With ``sig_i = sigmoid(T(beta x - b_i))`` and ``d_i = s_i sig_i (1 - sig_i)``:
    ``dy/dx = alpha T beta sum_i d_i``, ``dy/dalpha = sum_i s_i sig_i - o``,
    ``dy/dbeta = alpha T x sum_i d_i``, ``dy/db_i = -alpha T d_i``.
    """
    u = x * beta
    dsum = torch.zeros_like(u)
    ssum = torch.zeros_like(u) if need_alpha else None
    grad_b = torch.zeros_like(biases) if need_biases else None
    for i, (s, b) in enumerate(zip(steps.unbind(), biases.unbind())):
        sig = torch.sigmoid((u - b) * T)
        d = sig * (1 - sig) * s
        dsum.add_(d)
        if ssum is not None:
            ssum.add_(sig * s)
        if grad_b is not None:
            grad_b[i] = -(grad_y * d).sum() * alpha * T
    g = grad_y * dsum
    grad_x = g * (alpha * beta * T)
    grad_alpha = (grad_y * (ssum - offset)).sum() if need_alpha else None
    grad_beta = (g * x).sum() * alpha * T if need_beta else None
    return grad_x, grad_alpha, grad_beta, grad_b


def hard_forward(x: torch.Tensor, outputs: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor) -> torch.Tensor:
    """Eq. 12 as a lookup: ``alpha * outputs[k]``, k = number of biases <= beta * x.

    ``A(z) = 1`` for ``z >= 0`` (paper Eq. 1), hence ``right=True``.
    """
    k = torch.bucketize(x * beta, biases, right=True)
    return outputs[k] * alpha


def hard_codes(x: torch.Tensor, biases: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Integer code k in [0, n] of every element (index into the level set)."""
    return torch.bucketize(x * beta, biases, right=True)
