"""AlexNet with BatchNorm, the variant the paper quantizes (Table 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


class FitMaxPool2d(nn.Module):
    """Max pooling whose window shrinks to the feature map when the map is smaller.

    At 224 px this is exactly ``nn.MaxPool2d(3, 2)``; at 28-32 px the third pool would see a
    1x1 map and fail, so there the window is clamped (and the pool becomes the identity).

    Args:
        kernel_size: pooling window.
        stride: pooling stride.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        k = (min(self.kernel_size, h), min(self.kernel_size, w))
        s = (self.stride if h >= self.kernel_size else 1, self.stride if w >= self.kernel_size else 1)
        return F.max_pool2d(x, k, s)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, at least 8 (a rounded, never-empty layer)."""
    return max(8, int(round(channels * width)))


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    # Conv bias is redundant in front of BatchNorm.
    return [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class AlexNetBN(nn.Module):
    """AlexNet (one-tower torchvision layout) with BatchNorm after every conv and hidden FC.

    Five conv-BN-ReLU blocks (pooling after 1, 2 and 5), adaptive average pooling to 6x6,
    two hidden FC-BN-ReLU layers of 4096 units and the classifier. No dropout: BatchNorm
    takes its place, as in the BN variants the paper starts from.

    Args:
        num_classes: output classes.
        in_channels: 1 (grey) or 3 (RGB).
        width: multiplier of every conv's and hidden FC's width (1: the paper's network).
        stem: "imagenet" (the paper's 11x11 stride-4 first conv) or "small" (a 3x3 stride-1
            first conv for 28-32 px inputs, where stride 4 leaves a 1x1 map after the
            second pool).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 stem: str = "imagenet") -> None:
        super().__init__()
        c1, c2, c3, c4, hidden = (scaled(c, width) for c in (64, 192, 384, 256, 4096))
        first = (11, 4, 2) if stem == "imagenet" else (3, 1, 1)
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, c1, *first), FitMaxPool2d(3, 2),
            *_conv_bn_relu(c1, c2, 5, 1, 2), FitMaxPool2d(3, 2),
            *_conv_bn_relu(c2, c3, 3, 1, 1),
            *_conv_bn_relu(c3, c4, 3, 1, 1),
            *_conv_bn_relu(c4, c4, 3, 1, 1), FitMaxPool2d(3, 2),
        )
        # At small inputs the map is 1x1 here; adaptive pooling replicates it to 6x6 so the
        # classifier keeps the paper's shape at every scale.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(c4 * 6 * 6, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("alexnet_bn")
def alexnet_bn(num_classes: int, in_channels: int, width: float, stem: str) -> nn.Module:
    """AlexNet with BatchNorm (``AlexNetBN``), the paper's AlexNet."""
    return AlexNetBN(num_classes, in_channels, width, stem)
