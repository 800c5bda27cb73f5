"""Pieces every baseline quantizer shares: the module contract, bit-width checks, the
straight-through round and the level-table export format.

Export format: ``export(x) -> (codes, levels)``. ``codes`` is an integer tensor of x's shape;
``levels`` holds the value of each code, either ``(L,)`` for the whole tensor or ``(C, L)``
with one row per output channel (dim 0 of x). ``dequantize(codes, levels)`` gives back the
quantizer's eval-mode forward output bit for bit: every forward below computes its output as
a lookup or a product that the level table repeats exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


def check_bits(bits, low: int, high: int, name: str = "bits") -> int:
    """``bits`` as an int in ``low..high``; otherwise a one-line ValueError naming ``name``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}")
    return bits


def codes_dtype(num_levels: int) -> torch.dtype:
    """The smallest integer dtype that holds ``num_levels`` codes (0-based)."""
    return torch.uint8 if num_levels <= 256 else torch.int16


def dequantize(codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Values of ``codes`` under ``levels`` ((L,) per tensor or (C, L) per output channel)."""
    index = codes.long()
    if levels.dim() == 1:
        return levels[index]
    if levels.dim() != 2 or index.shape[0] != levels.shape[0]:
        raise ValueError(f"levels of shape {tuple(levels.shape)} do not match codes of shape "
                         f"{tuple(codes.shape)}: per-channel levels need one row per output channel")
    flat = index.reshape(index.shape[0], -1)
    return torch.gather(levels, 1, flat).reshape(codes.shape)


def sign_nonzero(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, so a binary quantizer has exactly two levels."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _RoundSTE(torch.autograd.Function):
    """round(x) forward (half to even, as torch.round), identity backward (Bengio et al. 2013)."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round with a straight-through gradient; the forward value is exactly ``torch.round(x)``
    (``x + (round(x) - x).detach()`` would not be, which breaks exact export)."""
    return _RoundSTE.apply(x)


def channel_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` as (C, rest) with C = x.shape[0] (output channels of a weight)."""
    if x.dim() < 1:
        raise ValueError(f"a per-channel quantizer needs a tensor with an output-channel dim, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def broadcast_channels(per_channel: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(C,) values shaped to broadcast against ``like`` along dim 0."""
    return per_channel.reshape((-1,) + (1,) * (like.dim() - 1))


class BaselineQuantizer(nn.Module):
    """Contract of a baseline quantizer.

    Attributes:
        bits: bits one code takes in storage (ternary codes take 2).
        kind: "weight" (input is a layer's weight, dim 0 = output channels) or "activation".
        num_levels: how many values the quantizer's output can take (per tensor, or per output
            channel where the level table is per channel): 2-bit LSQ has 4, TTQ 3.
        lr_mult / decay_mult: the optimizer settings of the quantizer's own parameters, times
            the run's lr / weight decay, as the method's authors train them (each quantizer's
            docstring cites where); default: the network's lr and no weight decay.

    ``forward(x)`` returns the quantized x (float, x's shape) with the method's gradient;
    ``initialize(x)`` sets data-dependent parameters (a no-op where the method has none);
    ``export(x)`` returns ``(codes, levels)`` (see the module docstring).
    """

    bits: int
    kind: str
    lr_mult: float = 1.0
    decay_mult: float = 0.0

    @property
    def num_levels(self) -> int:
        """2^bits unless the method's level set says otherwise."""
        return 2 ** self.bits

    def initialize(self, x: torch.Tensor) -> None:
        """Nothing to set from data for this method."""

    def export(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def dequantize(codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return dequantize(codes, levels)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, kind={self.kind}"


class StandardisedInput(nn.Module):
    """A layer's input standardised before its quantizer: a BatchNorm without learned affine
    (``BatchNorm2d`` for a conv's input, ``BatchNorm1d`` for a linear's; running statistics for
    evaluation), then the quantizer. For the methods whose quantizer is designed for a
    batch-normalised input (HWGQ's fixed Gaussian levels, ABC-Net's thresholds): the harness's
    models feed a quantized layer post-ReLU values or residual sums of any scale.

    Args:
        quantizer: the activation quantizer, whose start values are set for a standardised input.
        layer: the Conv2d/Linear whose input it quantizes (its input channels size the norm).
    """

    def __init__(self, quantizer: nn.Module, layer: nn.Module) -> None:
        super().__init__()
        if isinstance(layer, nn.Conv2d):
            self.norm = nn.BatchNorm2d(layer.in_channels, affine=False)
        elif isinstance(layer, nn.Linear):
            self.norm = nn.BatchNorm1d(layer.in_features, affine=False)
        else:
            raise ValueError(f"a standardised input belongs to a Conv2d or Linear, got {type(layer).__name__}")
        self.quantizer = quantizer

    @property
    def bits(self) -> int:
        return self.quantizer.bits

    @property
    def num_levels(self) -> int:
        return self.quantizer.num_levels

    def initialize(self, x: torch.Tensor) -> None:
        """Nothing to fit: the quantizer starts at values for a standardised input and the norm
        keeps running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.norm(x))


@dataclass(frozen=True)
class BaselineSpec:
    """A baseline as a quantization method: what its module's ``METHOD`` declares, and all that
    ``qbench.quant.methods.baselines`` needs to register it (``quant.method: <name>``).

    Attributes:
        name: the method's registry name (``quant.method``).
        title: the name as its paper writes it (the config and method class names).
        weight: ``weight(bits, layer, options) -> quantizer`` or None (weights stay FP).
        activation: ``activation(bits, layer, options) -> quantizer`` or None (inputs stay FP).
        weight_bits / activation_bits: the supported bit widths (low, high).
        options: the method's own options and their defaults (``quant.options``).
        example: (weights, activations) of the method's example config (the contract test).
        on_epoch / on_epoch_end: ``hook(method, model, step)``, the method's epoch actions
            (``QuantMethod.on_epoch`` / ``on_epoch_end``); None: nothing.
    """

    name: str
    title: str
    weight: Callable[[int, nn.Module, dict], nn.Module] | None
    activation: Callable[[int, nn.Module, dict], nn.Module] | None
    weight_bits: tuple[int, int] = (1, 8)
    activation_bits: tuple[int, int] = (1, 8)
    options: dict = dataclasses.field(default_factory=dict)
    example: tuple[str | None, str | None] = ("linear2", "act_2bit")
    on_epoch: Callable[[Any, nn.Module, Any], None] | None = None
    on_epoch_end: Callable[[Any, nn.Module, Any], None] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.title.isidentifier():
            raise ValueError(f"baseline {self.name!r}: name and title must be identifiers, got {self.title!r}")
        if self.weight is None and self.activation is None:
            raise ValueError(f"baseline {self.name!r} quantizes neither weights nor activations")

