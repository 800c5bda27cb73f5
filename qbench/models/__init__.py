"""Models of the paper, one registry (``registry.register_model``): AlexNet-BN, ResNet-18,
ResNet-50 (classification, built here) and SSD300-VGG16 (detection, built by mmdet).

A new architecture is one module with a ``@register_model`` builder plus its import below.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from qbench.io import load_state_dict

from . import alexnet, resnet, ssd  # noqa: F401  (each registers its architectures, in this order)
from .alexnet import AlexNetBN, FitMaxPool2d
from .registry import STEMS, TASKS, ModelEntry, available_models, get_model, register_model

__all__ = ["AlexNetBN", "FitMaxPool2d", "ModelEntry", "STEMS", "TASKS", "available_models", "build_model",
           "get_model", "load_pretrained", "register_model"]


def build_model(arch: str, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                stem: str = "imagenet") -> nn.Module:
    """Build a randomly initialised model.

    The same architecture is used at every input size: the ResNets end in adaptive average
    pooling and AlexNet-BN pools adaptively before its classifier. ``width`` and ``stem`` keep
    the paper's topology (depth, blocks, which layers are quantized, module names) and change
    only channel counts and the first conv; ``width=1, stem="imagenet"`` is the paper's network.

    Args:
        arch: a registered classification architecture (``available_models("classify")``).
        num_classes: size of the classifier output.
        in_channels: input channels of the first conv (1 or 3).
        width: multiplier of every layer's channels (ResNet stage widths 64-512 and their
            expansions, AlexNet's convs and hidden FCs), rounded, at least 8.
        stem: "imagenet" (the paper's first conv: ResNet 7x7 stride 2 + max pool, AlexNet 11x11
            stride 4) or "small" (a 3x3 stride-1 first conv, ResNets without the max pool: at
            32 px the ImageNet stem leaves 1x1 maps in ResNet's last stage).

    Returns:
        The model (training mode, CPU).
    """
    if arch not in available_models("classify"):
        raise ValueError(f"model.arch must be one of {available_models('classify')}, got {arch!r}")
    if num_classes < 2:
        raise ValueError(f"model.num_classes must be >= 2, got {num_classes}")
    if in_channels not in (1, 3):
        raise ValueError(f"model.in_channels must be 1 or 3, got {in_channels}")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"model.width must be a number in (0, 4], got {width!r}")
    if stem not in STEMS:
        raise ValueError(f"model.stem must be one of {STEMS}, got {stem!r}")
    return get_model(arch).build(num_classes, in_channels, width, stem)


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load full-precision weights from a file into ``model`` (never downloads).

    Tensors whose shape differs are adapted where that is well defined: a 3-channel first conv
    loaded into a 1-channel model gets its kernels summed over the colour channels (a grey
    image replicated to RGB gives the same response). A classifier of another size is left
    at its initialisation. Every other mismatch is an error.

    Args:
        model: a model from ``build_model``.
        path: a state-dict file (e.g. torchvision's ``resnet18-f37072fd.pth``) or a qbench
            ``checkpoint.pt`` of a full-precision run.

    Returns:
        ``{"adapted": [...], "skipped": [...]}`` key names.
    """
    path = Path(path)
    src = load_state_dict(path, "start.checkpoint")
    dst = model.state_dict()
    if any(".parametrizations." in k for k in src):
        raise ValueError(f"{path}: holds a quantized model; start from a full-precision checkpoint")
    missing = [k for k in dst if k not in src]
    unexpected = [k for k in src if k not in dst]
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    last_linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    first_conv = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][0]
    out, adapted, skipped = {}, [], []
    for k, v in src.items():
        if v.shape == dst[k].shape:
            out[k] = v
        elif k == f"{first_conv}.weight" and v.dim() == 4 and v.shape[1] == 3 and dst[k].shape[1] == 1 \
                and v.shape[0] == dst[k].shape[0]:
            out[k] = v.sum(dim=1, keepdim=True)
            adapted.append(k)
        elif k.startswith(f"{last_linear}."):
            out[k] = dst[k]
            skipped.append(k)
        else:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the model wants {tuple(dst[k].shape)}")
    model.load_state_dict(out)
    return {"adapted": adapted, "skipped": skipped}
