"""Typed, validated configuration of a detection run (``task: detect``).

The sections shared with classification (model, data, start, quant, temperature, optim,
epochs) are the classification models of ``qbench.train.config``, with the same rules,
error type (``ConfigError``) and messages. Detection adds its ``detect:`` section, its
defaults (SSD300 on the generated ``fmnist_voc`` set, the paper's SSD recipe) and the rules
that only hold for detection.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from qbench.data.registry import get_dataset
from qbench.train.config import (ConfigError, Int, IntList, Number, RunConfig, Section, finite, require,
                                 rule)

from .data import ITEM_KEYS, FmnistVocSpec

AUGMENTS = ("ssd", "light")
# SSD input normalisation (detect.pixel_norm) in 0-255 pixel units, as mmdet's data preprocessor
# applies it ((x - mean) / std on RGB): "caffe" is mmdet's SSD300 (the Caffe VGG16's inputs: mean
# subtracted, std 1); "torchvision" is ImageNet's mean and std x 255, i.e. exactly torchvision's
# Normalize(mean, std) of [0, 1] pixels, what torchvision's VGG16 weights were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_NORMS = {
    "caffe": {"mean": [123.675, 116.28, 103.53], "std": [1.0, 1.0, 1.0]},
    "torchvision": {"mean": [255 * m for m in IMAGENET_MEAN], "std": [255 * s for s in IMAGENET_STD]},
}
EVAL_MODES = ("11points", "area")
VOC_YEARS = (2007, 2012)
MIN_IMAGE_SIZE = 96  # the SSD's extra levels need it (docs/detection.md)
AT_LEAST = {n: rule(Int, f"must be an integer >= {n}", lambda v, n=n: v >= n) for n in (0, 1)}


def default_data_root(dataset: str) -> Path:
    """Where a dataset lives when ``data.root`` is null.

    Args:
        dataset: "voc" (``$QBENCH_DATA/VOCdevkit``) or "fmnist_voc" (``$QBENCH_DATA/fmnist_voc``);
            ``$QBENCH_DATA`` defaults to ``~/.cache/qbench/data``.
    """
    base = Path(os.environ.get("QBENCH_DATA", Path.home() / ".cache" / "qbench" / "data"))
    return base / ("VOCdevkit" if dataset == "voc" else "fmnist_voc")


def _checkpoint_path(v: str) -> bool:
    return v != ""


class DetectConfig(Section):
    """``detect:`` (detection-only keys).

    Args:
        lr_other: learning rate of the parameters that are not quantized (paper: 1e-7).
            Only used in quantized runs.
        warmup_iters: linear lr warm-up iterations at the start (0 = none).
        eval_interval: evaluate mAP every this many epochs (the last epoch always).
        augment: "ssd" (mmdet's SSD pipeline: expand, min-IoU crop, photometric distortion,
            flip) or "light" (resize + flip).
        eval_mode: VOC AP: "11points" (VOC2007) or "area".
        score_thr: detection score threshold at test time (mmdet SSD: 0.02).
        voc_years: VOC years whose trainval is used for training (test is always VOC2007).
        min_objects, max_objects, min_size, max_size: fmnist_voc generation (items per
            image, item side in canvas pixels).
        log_interval: iterations between mmengine log lines.
        width_div: divide the channel counts of every SSD conv by this (1, 2, 4 or 8; 1 =
            VGG16 as in the paper). Same layers and quantizer placement; for CPU-sized runs.
        backbone_checkpoint: ImageNet VGG16 state_dict (torchvision's ``vgg16-*.pth`` layout,
            loaded with weights_only) that initialises the backbone's conv layers of an FP
            run started from scratch, as SSD does; null = random initialisation.
        pixel_norm: input normalisation. "torchvision": [0, 1] RGB pixels minus ImageNet's
            mean, divided by its std (what torchvision's VGG16 weights were trained on);
            "caffe": 0-255 RGB pixels minus the mean, std 1 (mmdet's SSD300, made for the
            Caffe VGG16). A backbone_checkpoint (torchvision's layout) needs "torchvision".
    """

    lr_other: rule(Number, "must be >= 0", finite(lambda v: v >= 0)) = 1e-7
    warmup_iters: AT_LEAST[0] = 0
    eval_interval: AT_LEAST[1] = 1
    augment: rule(str, f"must be one of {AUGMENTS}", lambda v: v in AUGMENTS,
                  schema=lambda: {"enum": list(AUGMENTS)}) = "ssd"
    eval_mode: rule(str, f"must be one of {EVAL_MODES}", lambda v: v in EVAL_MODES,
                    schema=lambda: {"enum": list(EVAL_MODES)}) = "11points"
    score_thr: rule(Number, "must be >= 0", finite(lambda v: v >= 0)) = 0.02
    voc_years: rule(IntList, f"must be a non-empty list of {VOC_YEARS}",
                    lambda v: bool(v) and all(y in VOC_YEARS for y in v)) \
        = Field(default_factory=lambda: list(VOC_YEARS))
    # fmnist_voc generation: defaults and rules are FmnistVocSpec's (checked when it is used)
    min_objects: AT_LEAST[1] = FmnistVocSpec.min_objects
    max_objects: AT_LEAST[1] = FmnistVocSpec.max_objects
    min_size: AT_LEAST[1] = FmnistVocSpec.min_size
    max_size: AT_LEAST[1] = FmnistVocSpec.max_size
    log_interval: AT_LEAST[1] = 50
    width_div: rule(Int, "must be 1, 2, 4 or 8", lambda v: v in (1, 2, 4, 8)) = 1
    backbone_checkpoint: rule(str, "must be a file path or null", _checkpoint_path, nullable=True) = None
    pixel_norm: rule(str, f"must be one of {tuple(PIXEL_NORMS)}", lambda v: v in PIXEL_NORMS,
                     schema=lambda: {"enum": list(PIXEL_NORMS)}) = "caffe"

    @model_validator(mode="after")
    def _norm_fits_backbone(self) -> "DetectConfig":
        # torchvision's VGG16 weights on Caffe-scaled inputs see every feature ~58x too large
        require(self.backbone_checkpoint is None or self.pixel_norm == "torchvision", "detect.pixel_norm",
                "must be 'torchvision' with detect.backbone_checkpoint (torchvision's VGG16 weights "
                f"expect [0, 1] pixels normalised by ImageNet's mean and std), got {self.pixel_norm!r}")
        return self


class DetectRunConfig(RunConfig):
    """A whole detection run; build it with ``from_dict``.

    Defaults that differ from classification: SSD300-VGG16 on 3-channel images with the
    dataset's number of classes, the generated fmnist_voc set at 300 px in batches of 16, and
    the paper's SSD recipe (lr 1e-5, milestones 70/90, gradient clipping at 20, T = 10 x epoch).
    """

    TASK: ClassVar[str] = "detect"
    DEFAULTS: ClassVar[dict] = {
        "model": {"arch": "ssd300_vgg16", "num_classes": None, "in_channels": 3},
        "data": {"dataset": "fmnist_voc", "image_size": 300, "batch_size": 16},
        "temperature": {"slope": 10.0},
        "optim": {"lr": 1e-5, "milestones": [70, 90], "grad_clip": 20.0},
    }
    # the SSD's width is detect.width_div; its VGG16 has no stem option
    UNUSED_KEYS: ClassVar[dict] = {"data": ("epoch_test_stride",), "model": ("width", "stem")}

    task: str = "detect"
    detect: DetectConfig = Field(default_factory=DetectConfig)

    @model_validator(mode="after")
    def _check_detect(self) -> "DetectRunConfig":
        m, d, e = self.model, self.data, self.epochs
        classes = get_dataset(d.dataset).num_classes
        if m.num_classes is None:
            m.num_classes = classes
        require(m.num_classes == classes, "model.num_classes",
                f"{d.dataset} has {classes} classes, got {m.num_classes}")
        require(m.in_channels == 3, "model.in_channels", f"SSD takes RGB images, must be 3, got {m.in_channels!r}")
        require(d.image_size >= MIN_IMAGE_SIZE, "data.image_size",
                f"must be >= {MIN_IMAGE_SIZE} for the SSD's feature levels, got {d.image_size}")
        if d.dataset == "fmnist_voc":
            for key in ("train_size", "test_size"):
                require(getattr(d, key) is not None, f"data.{key}", "fmnist_voc is generated: give the number "
                        "of images")
            FmnistVocSpec.from_config(self)  # the generator's own rules, naming the config keys
        require(self.detect.backbone_checkpoint is None or self.start.mode == "scratch",
                "detect.backbone_checkpoint", "initialises a run from scratch; with start.mode=pretrained the "
                "whole model comes from start.checkpoint")
        require(all(mi <= e.total for mi in self.optim.milestones), "optim.milestones",
                f"{self.optim.milestones} go past the last epoch {e.total}")
        require(self.detect.eval_interval <= max(e.total, 1), "detect.eval_interval",
                f"larger than the number of epochs ({e.total})")
        return self


__all__ = ["ConfigError", "DetectConfig", "DetectRunConfig", "default_data_root"]
