"""ResNet-18 and ResNet-50: torchvision's networks, at any width and with either stem."""

from __future__ import annotations

import torchvision
from torch import nn

from .alexnet import scaled
from .registry import register_model


def _resnet(arch: str, num_classes: int, in_channels: int, width: float, stem: str) -> nn.Module:
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


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int, width: float, stem: str) -> nn.Module:
    """ResNet-18 (He et al. 2016), torchvision's layout and initialisation."""
    return _resnet("resnet18", num_classes, in_channels, width, stem)


@register_model("resnet50")
def resnet50(num_classes: int, in_channels: int, width: float, stem: str) -> nn.Module:
    """ResNet-50 (bottleneck blocks), torchvision's layout and initialisation."""
    return _resnet("resnet50", num_classes, in_channels, width, stem)


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
