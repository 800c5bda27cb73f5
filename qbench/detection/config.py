"""Typed, validated configuration of a detection run (``task: detect``).

The raw YAML dict uses the same sections as classification (docs/CONTRACTS.md) plus a
``detect:`` section for detection-only keys. Every key is checked before any work starts;
an unknown key or an impossible value raises ``ValueError`` naming the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from qbench.quant import LevelSet

DATASETS = ("voc", "fmnist_voc")
ARCHS = ("ssd300_vgg16",)
NUM_CLASSES = {"voc": 20, "fmnist_voc": 10}
AUGMENTS = ("ssd", "light")
EVAL_MODES = ("11points", "area")
PHASES = ("fp", "weights", "activations", "joint")


def default_data_root(dataset: str) -> Path:
    """Where a dataset lives when ``data.root`` is null.

    Args:
        dataset: "voc" (``$QBENCH_DATA/VOCdevkit``) or "fmnist_voc" (``$QBENCH_DATA/fmnist_voc``);
            ``$QBENCH_DATA`` defaults to ``~/.cache/qbench/data``.
    """
    base = Path(os.environ.get("QBENCH_DATA", Path.home() / ".cache" / "qbench" / "data"))
    return base / ("VOCdevkit" if dataset == "voc" else "fmnist_voc")


# the quant: section is the same as for classification (one definition of its keys)
from qbench.train.config import QuantConfig, coerce_numbers  # noqa: E402


def _fail(key: str, msg: str) -> None:
    raise ValueError(f"config key '{key}': {msg}")


def _check_int(key: str, value: Any, minimum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(key, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        _fail(key, f"must be >= {minimum}, got {value}")


def _check_float(key: str, value: Any, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(key, f"must be a finite number, got {value!r}")
    if positive and not value > 0:
        _fail(key, f"must be > 0, got {value}")
    if nonneg and value < 0:
        _fail(key, f"must be >= 0, got {value}")
    return float(value)


def _check_choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        _fail(key, f"must be one of {list(choices)}, got {value!r}")


@dataclass
class ModelConfig:
    """``model:``. Args: arch: only "ssd300_vgg16"; num_classes: null = the dataset's
    (20 VOC, 10 fmnist_voc); in_channels: must be 3 (RGB)."""

    arch: str = "ssd300_vgg16"
    num_classes: int | None = None
    in_channels: int = 3

    def __post_init__(self) -> None:
        _check_choice("model.arch", self.arch, ARCHS)
        if self.num_classes is not None:
            _check_int("model.num_classes", self.num_classes, 1)
        if self.in_channels != 3:
            _fail("model.in_channels", f"SSD takes RGB images, must be 3, got {self.in_channels!r}")


@dataclass
class DataConfig:
    """``data:``.

    Args:
        dataset: "voc" (VOCdevkit with VOC2007 + VOC2012) or "fmnist_voc" (generated).
        root: dataset directory; null = ``default_data_root(dataset)``. For fmnist_voc it is
            where generated sets are kept (one sub-directory per generation parameter set).
        image_size: side of the square network input (300 = SSD300). Other sizes adapt the
            SSD extra levels and anchors (docs/detection.md); at least 96.
        train_size: fmnist_voc: trainval images generated; voc: deterministic subset (null = all).
        test_size: the same for the test split (VOC2007 test).
        subset_seed: fmnist_voc: generator seed; voc: subset seed.
        batch_size: images per training step.
        workers: dataloader worker processes.
    """

    dataset: str = "fmnist_voc"
    root: str | None = None
    image_size: int = 300
    train_size: int | None = None
    test_size: int | None = None
    subset_seed: int = 0
    batch_size: int = 16
    workers: int = 0

    def __post_init__(self) -> None:
        _check_choice("data.dataset", self.dataset, DATASETS)
        if self.root is not None and not isinstance(self.root, str):
            _fail("data.root", f"must be a path string or null, got {self.root!r}")
        _check_int("data.image_size", self.image_size, 96)
        for key in ("train_size", "test_size"):
            value = getattr(self, key)
            if value is not None:
                _check_int(f"data.{key}", value, 1)
        if self.dataset == "fmnist_voc":
            if self.train_size is None or self.test_size is None:
                _fail("data.train_size" if self.train_size is None else "data.test_size",
                      "fmnist_voc is generated: give the number of images (an integer)")
            if self.train_size > 60000 or self.test_size > 10000:
                _fail("data.train_size", "fmnist_voc allows at most 60000 trainval / 10000 test images")
        _check_int("data.subset_seed", self.subset_seed, 0)
        _check_int("data.batch_size", self.batch_size, 1)
        _check_int("data.workers", self.workers, 0)


@dataclass
class StartConfig:
    """``start:``. Args: mode: "pretrained" (load ``checkpoint``, the paper) or "scratch";
    checkpoint: FP model file: a state_dict, or an FP detection run's ``checkpoint.pt``."""

    mode: str = "scratch"
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        _check_choice("start.mode", self.mode, ("pretrained", "scratch"))
        if self.mode == "pretrained":
            if not isinstance(self.checkpoint, str) or not self.checkpoint:
                _fail("start.checkpoint", "start.mode=pretrained needs a checkpoint path")
        elif self.checkpoint is not None:
            _fail("start.checkpoint", "only used with start.mode=pretrained; set it to null")


@dataclass
class TemperatureConfig:
    """``temperature:``. Args: kind: "linear" | "constant" | "exponential"; slope: k in
    T = k * epoch (SSD: 10); cap: optional maximum T; epoch_scale: paper epochs per run epoch
    (as for classification, docs/CONTRACTS.md)."""

    kind: str = "linear"
    slope: float = 10.0
    cap: float | None = None
    epoch_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_choice("temperature.kind", self.kind, ("linear", "constant", "exponential"))
        self.slope = _check_float("temperature.slope", self.slope, positive=True)
        if self.cap is not None:
            self.cap = _check_float("temperature.cap", self.cap, positive=True)
        self.epoch_scale = _check_float("temperature.epoch_scale", self.epoch_scale, positive=True)


@dataclass
class OptimConfig:
    """``optim:``. SGD.

    Args:
        lr: learning rate of the quantized parameters (paper SSD: 1e-5); in an FP run, of
            every parameter.
        momentum: SGD momentum.
        weight_decay: L2 weight decay (not applied to quantizer alpha/beta).
        milestones: epochs after which the lr is multiplied by gamma; in runs of several
            phases each phase runs them compressed to its length (qbench.train.phases).
        gamma: lr decay factor.
        grad_clip: max L2 norm of all gradients (paper SSD: 20); null = no clipping.
    """

    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [70, 90])
    gamma: float = 0.1
    grad_clip: float | None = 20.0

    def __post_init__(self) -> None:
        self.lr = _check_float("optim.lr", self.lr, positive=True)
        self.momentum = _check_float("optim.momentum", self.momentum, nonneg=True)
        self.weight_decay = _check_float("optim.weight_decay", self.weight_decay, nonneg=True)
        if not isinstance(self.milestones, list):
            _fail("optim.milestones", f"must be a list of epochs, got {self.milestones!r}")
        for m in self.milestones:
            _check_int("optim.milestones", m, 1)
        if self.milestones != sorted(set(self.milestones)):
            _fail("optim.milestones", f"must be strictly increasing, got {self.milestones}")
        self.gamma = _check_float("optim.gamma", self.gamma, positive=True)
        if self.grad_clip is not None:
            self.grad_clip = _check_float("optim.grad_clip", self.grad_clip, positive=True)


@dataclass
class EpochsConfig:
    """``epochs:``. Args: fp: FP training epochs (runs without quantization); weights,
    activations, joint: the paper's three phases for quantized runs (run in this order)."""

    fp: int = 0
    weights: int = 0
    activations: int = 0
    joint: int = 0

    def __post_init__(self) -> None:
        for key in PHASES:
            _check_int(f"epochs.{key}", getattr(self, key), 0)

    @property
    def total(self) -> int:
        return self.fp + self.weights + self.activations + self.joint

    def phase_of(self, epoch: int) -> str:
        """Phase name of a 1-based epoch."""
        end = 0
        for key in PHASES:
            end += getattr(self, key)
            if epoch <= end:
                return key
        raise ValueError(f"epoch {epoch} is past the last epoch {self.total}")


@dataclass
class DetectConfig:
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
    """

    lr_other: float = 1e-7
    warmup_iters: int = 0
    eval_interval: int = 1
    augment: str = "ssd"
    eval_mode: str = "11points"
    score_thr: float = 0.02
    voc_years: list[int] = field(default_factory=lambda: [2007, 2012])
    min_objects: int = 1
    max_objects: int = 3
    min_size: int = 48
    max_size: int = 160
    log_interval: int = 50
    width_div: int = 1
    backbone_checkpoint: str | None = None

    def __post_init__(self) -> None:
        self.lr_other = _check_float("detect.lr_other", self.lr_other, nonneg=True)
        _check_int("detect.warmup_iters", self.warmup_iters, 0)
        _check_int("detect.eval_interval", self.eval_interval, 1)
        _check_choice("detect.augment", self.augment, AUGMENTS)
        _check_choice("detect.eval_mode", self.eval_mode, EVAL_MODES)
        self.score_thr = _check_float("detect.score_thr", self.score_thr, nonneg=True)
        if not isinstance(self.voc_years, list) or not self.voc_years:
            _fail("detect.voc_years", f"must be a non-empty list, got {self.voc_years!r}")
        for y in self.voc_years:
            _check_choice("detect.voc_years", y, (2007, 2012))
        for key in ("min_objects", "max_objects", "min_size", "max_size", "log_interval"):
            _check_int(f"detect.{key}", getattr(self, key), 1)
        _check_choice("detect.width_div", self.width_div, (1, 2, 4, 8))
        if self.min_objects > self.max_objects:
            _fail("detect.min_objects", "must be <= detect.max_objects")
        if self.min_size > self.max_size:
            _fail("detect.min_size", "must be <= detect.max_size")
        if self.max_size > 300:
            _fail("detect.max_size", "items must fit the 300x300 canvas")
        if self.backbone_checkpoint is not None and (
                not isinstance(self.backbone_checkpoint, str) or not self.backbone_checkpoint):
            _fail("detect.backbone_checkpoint", f"must be a file path or null, got {self.backbone_checkpoint!r}")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "start": StartConfig, "quant": QuantConfig,
            "temperature": TemperatureConfig, "optim": OptimConfig, "epochs": EpochsConfig,
            "detect": DetectConfig}


@dataclass
class DetectRunConfig:
    """A whole detection run; build it with ``from_dict``."""

    seed: int = 0
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    start: StartConfig = field(default_factory=StartConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: EpochsConfig = field(default_factory=EpochsConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0)
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda") or
                (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            _fail("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.model.num_classes is None:
            self.model.num_classes = NUM_CLASSES[self.data.dataset]
        elif self.model.num_classes != NUM_CLASSES[self.data.dataset]:
            _fail("model.num_classes", f"{self.data.dataset} has {NUM_CLASSES[self.data.dataset]} "
                  f"classes, got {self.model.num_classes}")
        e = self.epochs
        if self.quant.enabled:
            if e.fp:
                _fail("epochs.fp", "must be 0 in a quantized run (use weights/activations/joint)")
            if e.weights + e.activations + e.joint == 0:
                _fail("epochs.joint", "a quantized run needs weights, activations or joint epochs")
            if e.weights and self.quant.weights is None:
                _fail("epochs.weights", "weights phase without quant.weights")
            if e.activations and self.quant.activations is None:
                _fail("epochs.activations", "activations phase without quant.activations")
            if self.quant.activations is not None and not (e.activations or e.joint):
                _fail("quant.activations", "activations are quantized but no activations/joint epochs")
        else:
            if e.weights or e.activations or e.joint:
                _fail("epochs.joint" if e.joint else ("epochs.weights" if e.weights else "epochs.activations"),
                      "quantization phases need quant.weights or quant.activations")
            if e.fp == 0:
                _fail("epochs.fp", "a full-precision run needs epochs.fp >= 1")
        if self.detect.backbone_checkpoint is not None and self.start.mode != "scratch":
            _fail("detect.backbone_checkpoint", "initialises a run from scratch; with "
                  "start.mode=pretrained the whole model comes from start.checkpoint")
        if any(m > e.total for m in self.optim.milestones):
            _fail("optim.milestones", f"{self.optim.milestones} go past the last epoch {e.total}")
        if self.detect.eval_interval > e.total:
            _fail("detect.eval_interval", f"larger than the number of epochs ({e.total})")

    @classmethod
    def from_dict(cls, raw: dict) -> "DetectRunConfig":
        """Validate a raw YAML dict (after ``--set`` overrides).

        Args:
            raw: the parsed config; ``task`` must be "detect".

        Returns:
            The typed config; raises ValueError naming the first bad key.
        """
        if not isinstance(raw, dict):
            raise ValueError("config must be a mapping")
        raw = dict(raw)
        task = raw.pop("task", "detect")
        if task != "detect":
            _fail("task", f"qbench.detection runs task 'detect', got {task!r}")
        top = {f.name for f in fields(cls)}
        for key in raw:
            if key not in top:
                _fail(str(key), f"unknown key; known: {sorted(top | {'task'})}")
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in SECTIONS:
                section_cls = SECTIONS[key]
                if value is None:
                    value = {}
                if not isinstance(value, dict):
                    _fail(key, f"must be a mapping, got {value!r}")
                known = {f.name for f in fields(section_cls)}
                for sub in value:
                    if sub not in known:
                        _fail(f"{key}.{sub}", f"unknown key; known: {sorted(known)}")
                value = coerce_numbers(section_cls, value)  # "1e-3" as YAML 1.1 and --config give it
                try:
                    kwargs[key] = section_cls(**value)
                except TypeError as e:  # pragma: no cover - guarded by the key check above
                    _fail(key, str(e))
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Resolved config as plain data (for ``config.yaml``)."""
        return {"task": "detect", **asdict(self), "quant": self.quant.to_dict()}
