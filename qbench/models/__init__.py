"""Classification models of the paper: AlexNet-BN, ResNet-18, ResNet-50."""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from qbench.io import load_state_dict

from .alexnet import AlexNetBN, FitMaxPool2d, scaled

# the one list of architectures: the pipeline, the configs, the paper's cells and the report read it
ARCHS = ("alexnet_bn", "resnet18", "resnet50")  # classification, built here
DETECTION_ARCHS = ("ssd300_vgg16",)  # built by qbench.detection.model (mmdet)
ARCHS_BY_TASK = {"classify": ARCHS, "detect": DETECTION_ARCHS}
TASKS = tuple(ARCHS_BY_TASK)

__all__ = ["ARCHS", "ARCHS_BY_TASK", "AlexNetBN", "DETECTION_ARCHS", "FitMaxPool2d", "STEMS", "TASKS", "build_model",
           "load_pretrained"]


STEMS = ("imagenet", "small")


def build_model(arch: str, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                stem: str = "imagenet") -> nn.Module:
    """Build a randomly initialised model.

    The same architecture is used at every input size: the ResNets end in adaptive average
    pooling and AlexNet-BN pools adaptively before its classifier. ``width`` and ``stem`` keep
    the paper's topology (depth, blocks, which layers are quantized, module names) and change
    only channel counts and the first conv; ``width=1, stem="imagenet"`` is the paper's network.

    Args:
        arch: one of ``ARCHS``.
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
    if arch not in ARCHS:
        raise ValueError(f"model.arch must be one of {ARCHS}, got {arch!r}")
    if num_classes < 2:
        raise ValueError(f"model.num_classes must be >= 2, got {num_classes}")
    if in_channels not in (1, 3):
        raise ValueError(f"model.in_channels must be 1 or 3, got {in_channels}")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"model.width must be a number in (0, 4], got {width!r}")
    if stem not in STEMS:
        raise ValueError(f"model.stem must be one of {STEMS}, got {stem!r}")
    if arch == "alexnet_bn":
        return AlexNetBN(num_classes, in_channels, width, stem)
    if width == 1:
        net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    else:
        net = _scaled_resnet(arch, num_classes, width)
    if in_channels != 3 or stem != "imagenet":
        old = net.conv1
        kernel, stride, padding = (old.kernel_size, old.stride, old.padding) if stem == "imagenet" else (3, 1, 1)
        net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel, stride, padding, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "small":
        net.maxpool = nn.Identity()
    return net


def _scaled_resnet(arch: str, num_classes: int, width: float) -> nn.Module:
    # torchvision's ResNet with every stage width scaled: its constructor fixes 64-512, so the
    # stages are rebuilt with its own _make_layer (same blocks, names and initialisation)
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block, layers = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}[arch]
    net = ResNet(block, layers, num_classes=num_classes)
    widths = [scaled(c, width) for c in (64, 128, 256, 512)]
    net.inplanes = widths[0]
    net.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
    net.bn1 = nn.BatchNorm2d(widths[0])
    net.layer1 = net._make_layer(block, widths[0], layers[0])
    net.layer2 = net._make_layer(block, widths[1], layers[1], stride=2)
    net.layer3 = net._make_layer(block, widths[2], layers[2], stride=2)
    net.layer4 = net._make_layer(block, widths[3], layers[3], stride=2)
    net.fc = nn.Linear(widths[3] * block.expansion, num_classes)
    for m in net.modules():  # torchvision's initialisation, applied to the rebuilt layers
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
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
