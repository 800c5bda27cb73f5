"""SSD300-VGG16 (Table 4), built by mmdetection in ``qbench.detection.model``; imported only
when a detection model is built, so classification never imports mmdet."""

from __future__ import annotations

from typing import Any

from torch import nn

from .registry import register_model


@register_model("ssd300_vgg16", task="detect")
def ssd300_vgg16(config: Any) -> nn.Module:
    """SSD300 with a VGG16 backbone from the run's ``DetectRunConfig``."""
    from qbench.detection.model import build_ssd

    return build_ssd(config)
