"""Classification models of the paper: AlexNet-BN, ResNet-18, ResNet-50."""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from qbench.io import load_state_dict

from .alexnet import AlexNetBN, FitMaxPool2d

# the one list of architectures: the pipeline, the configs, the paper's cells and the report read it
ARCHS = ("alexnet_bn", "resnet18", "resnet50")  # classification, built here
DETECTION_ARCHS = ("ssd300_vgg16",)  # built by qbench.detection.model (mmdet)
ARCHS_BY_TASK = {"classify": ARCHS, "detect": DETECTION_ARCHS}
TASKS = tuple(ARCHS_BY_TASK)

__all__ = ["ARCHS", "ARCHS_BY_TASK", "AlexNetBN", "DETECTION_ARCHS", "FitMaxPool2d", "TASKS", "build_model",
           "load_pretrained"]


def build_model(arch: str, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """Build a randomly initialised model.

    The same architecture is used at every input size: the ResNets end in adaptive average
    pooling and AlexNet-BN pools adaptively before its classifier.

    Args:
        arch: one of ``ARCHS``.
        num_classes: size of the classifier output.
        in_channels: input channels of the first conv (1 or 3).

    Returns:
        The model (training mode, CPU).
    """
    if arch not in ARCHS:
        raise ValueError(f"model.arch must be one of {ARCHS}, got {arch!r}")
    if num_classes < 2:
        raise ValueError(f"model.num_classes must be >= 2, got {num_classes}")
    if in_channels not in (1, 3):
        raise ValueError(f"model.in_channels must be 1 or 3, got {in_channels}")
    if arch == "alexnet_bn":
        return AlexNetBN(num_classes, in_channels)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                              old.padding, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


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
