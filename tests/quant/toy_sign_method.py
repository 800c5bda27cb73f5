"""A toy quantization method, added the way docs/extending.md says: this one module plus its
``@register_method`` entry, nothing else in qbench.

Weights: 1-bit sign times the layer's mean |w| (BWN-like), straight-through gradient.
Inputs: {0, s} with a learnable step s, initialised from calibration data as half the
observed max, straight-through gradient for x and a plain gradient for s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qbench.quant import QuantMethod, register_method


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class SignWeightQuantizer(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _SignSTE.apply(w) * w.abs().mean().detach()

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = w.abs().mean()
        return (w >= 0).long(), torch.stack([-scale, scale])


class StepInputQuantizer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Parameter(torch.tensor(1.0))
        self._max = 0.0

    def observe(self, x: torch.Tensor) -> None:
        self._max = max(self._max, float(x.abs().max()))

    @torch.no_grad()
    def finish_observing(self) -> None:
        self.step.fill_(max(self._max / 2, 1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        on = (x >= self.step / 2).to(x.dtype)
        return on * self.step + (x - x.detach())  # value on * s; gradient 1 for x, on for s


@dataclass(frozen=True)
class SignConfig:
    weights: str | None = "binary"
    activations: str | None = None
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.weights not in (None, "binary"):
            raise ValueError(f"weights: the sign method has 1-bit weights only ('binary'), got {self.weights!r}")
        if self.activations not in (None, "act_binary"):
            raise ValueError(f"activations: the sign method has 'act_binary' inputs only, got {self.activations!r}")


@register_method("sign")
class SignMethod(QuantMethod):
    config_class = SignConfig

    def weight_quantizer(self, name: str, layer: nn.Module) -> nn.Module | None:
        return SignWeightQuantizer() if self.config.weights else None

    def input_quantizer(self, name: str, layer: nn.Module) -> nn.Module | None:
        return StepInputQuantizer() if self.config.activations else None
