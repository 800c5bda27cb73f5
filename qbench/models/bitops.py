"""Multiply-accumulates per layer and analytic bit-operations of a model (Table 8)."""

from __future__ import annotations

import torch
from torch import nn

from . import build_model


def layer_macs(arch: str, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
               stem: str = "imagenet") -> list[tuple[str, int, bool]]:
    """Multiply-accumulates of every Conv2d / Linear of ``arch`` for one image.

    Returns ``(name, macs, quantized)`` per layer; as in the paper (and qbench.quant's default
    policy) the first conv and the last linear layer are not quantized.

    Args:
        arch: model name for ``qbench.models.build_model``.
        num_classes: classifier outputs.
        in_channels: image channels.
        image_size: square input size.
        width, stem: as ``qbench.models.build_model``.
    """
    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, width=width, stem=stem).eval()
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    macs: dict[str, int] = {}

    def hook(name):
        def count(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                macs[name] = int(output.numel() // output.shape[0] * per_out)
            else:
                macs[name] = int(module.in_features * module.out_features)
        return count

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    with torch.no_grad():
        model(torch.zeros(1, in_channels, image_size, image_size))
    for h in handles:
        h.remove()
    first_conv = next(n for n, m in layers if isinstance(m, nn.Conv2d))
    last_linear = [n for n, m in layers if isinstance(m, nn.Linear)][-1]
    return [(n, macs.get(n, 0), n not in (first_conv, last_linear)) for n, _ in layers]


def bit_operations(layers: list[tuple[str, int, bool]], wbits: int, abits: int) -> int:
    """Analytic bit-operations: MACs x weight bits x input-activation bits per layer
    (unquantized layers at 32 x 32).

    Args:
        layers: ``layer_macs`` output.
        wbits: weight bits of the quantized layers.
        abits: input-activation bits of the quantized layers.
    """
    return sum(m * (wbits * abits if q else 32 * 32) for _, m, q in layers)
