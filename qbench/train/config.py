"""Typed, validated run configuration (the YAML schema of docs/CONTRACTS.md).

One stack for every task: the sections model/data/start/quant/temperature/optim/epochs are
defined here once, with one error type (``ConfigError``) and one message style
(``<key>: <what is wrong>``). ``RunConfig`` holds what every run has and checks the phase
schedule; ``Config`` is a classification run, ``qbench.detection.config.DetectRunConfig`` a
detection run that adds only its ``detect:`` section and the rules specific to detection.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from qbench.errors import ConfigError
from qbench.io import FileFormatError, parse_yaml, read_yaml
from qbench.quant import DEFAULT_METHOD, LevelSet, OptionError, available_methods, get_method
from qbench.quant.methods.base import SectionError
from qbench.quant.schedule import KINDS as TEMPERATURE_KINDS, TemperatureSchedule

from ..data import available_datasets
from ..models.registry import STEMS, available_models
from .phases import PHASES


FLOAT32_MAX = 3.4028234663852886e38  # the soft quantizer computes T * (beta x - b) in float32


def require(cond: bool, key: str, msg: str) -> None:
    """Raise ``ConfigError(key, msg)`` unless ``cond``: the one message style of every config
    section (classification, detection, fmnist_voc generation)."""
    if not cond:
        raise ConfigError(key, msg)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_INT_TEXT = re.compile(r"[-+]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BOOL_TEXT = {"true": True, "false": False}


def coerce_numbers(section: type, values: dict) -> dict:
    """Numbers and booleans written as text become numbers where the field wants one.

    YAML 1.1 reads ``1e-3`` as text, and snakemake's ``--config`` passes every nested value as
    text; both are how people write numbers, so they are accepted as such.

    Args:
        section: a config dataclass (its field annotations say what each key wants).
        values: the raw section.
    """
    out = dict(values)
    hints = {f.name: str(f.type) for f in dataclasses.fields(section)}
    for key, v in values.items():
        hint = hints.get(key, "")
        if isinstance(v, list) and hint.startswith("list[int]"):
            out[key] = [int(x) if isinstance(x, str) and _INT_TEXT.fullmatch(x.strip()) else x for x in v]
        if not isinstance(v, str):
            continue
        text = v.strip()
        if "float" in hint and _FLOAT_TEXT.fullmatch(text):
            out[key] = float(text)
        elif re.match(r"int\b", hint) and _INT_TEXT.fullmatch(text):
            out[key] = int(text)
        elif hint == "bool" and text.lower() in _BOOL_TEXT:
            out[key] = _BOOL_TEXT[text.lower()]
        elif text.lower() in ("null", "none", "~") and "None" in hint:
            out[key] = None
    return out


def check_level_set(name: Any, role: str, key: str) -> LevelSet | None:
    """The one check of a quantizer level set, for the trainer and the pipeline alike.

    Weights need a signed (zero-centred) set; activations after ReLU a non-negative one.

    Args:
        name: a level-set name (``LevelSet.from_name``), or None for full precision.
        role: "weights" or "activations".
        key: the config key to name in errors.
    """
    if name is None:
        return None
    try:
        levels = LevelSet.from_name(str(name))
    except ValueError as e:
        raise ConfigError(key, str(e)) from None
    if role == "weights" and not levels.zero_centered:
        raise ConfigError(key, f"{name!r} is an activation level set; weights need a signed set "
                          "such as ternary or 3bit_pm4")
    if role == "activations" and (levels.zero_centered or min(levels.values) < 0):
        raise ConfigError(key, f"{name!r} is a signed set; activations (after ReLU) need a "
                          "non-negative set such as act_2bit")
    return levels


@dataclass
class ModelConfig:
    """``model:``. num_classes null: the dataset's number of classes (detection sets)."""

    arch: str = "resnet18"
    num_classes: int | None = 10
    in_channels: int = 1
    # the paper's topology at another channel width / with a first conv for small inputs
    # (qbench.models.build_model); 1.0 and "imagenet" are the paper's networks
    width: float = 1.0
    stem: str = "imagenet"

    def __post_init__(self) -> None:
        require(self.arch in available_models(), "model.arch",
                f"must be one of {available_models()}, got {self.arch!r}")
        require(is_number(self.width) and 0 < self.width <= 4, "model.width",
                f"must be a number in (0, 4], got {self.width!r}")
        require(self.stem in STEMS, "model.stem", f"must be one of {STEMS}, got {self.stem!r}")
        require(self.num_classes is None or (is_int(self.num_classes) and self.num_classes >= 2),
                "model.num_classes", f"must be null or an integer >= 2, got {self.num_classes!r}")
        require(self.in_channels in (1, 3) and is_int(self.in_channels), "model.in_channels",
                f"must be 1 or 3, got {self.in_channels!r}")


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"
    root: str | None = None
    image_size: int = 32
    train_size: int | None = None
    test_size: int | None = None
    subset_seed: int = 0
    batch_size: int = 128
    workers: int = 0
    # per-epoch evaluations (the curves) see every n-th test image; the final one sees them all
    epoch_test_stride: int = 1

    def __post_init__(self) -> None:
        require(self.dataset in available_datasets(), "data.dataset",
                f"must be one of {available_datasets()}, got {self.dataset!r}")
        require(self.root is None or isinstance(self.root, str), "data.root", "must be a path or null")
        require(is_int(self.image_size) and self.image_size >= 16, "data.image_size",
                f"must be an integer >= 16, got {self.image_size!r}")
        for key in ("train_size", "test_size"):
            v = getattr(self, key)
            require(v is None or (is_int(v) and v >= 1), f"data.{key}",
                    f"must be null or an integer >= 1, got {v!r}")
        require(is_int(self.subset_seed), "data.subset_seed", f"must be an integer, got {self.subset_seed!r}")
        require(is_int(self.batch_size) and self.batch_size >= 1, "data.batch_size",
                f"must be an integer >= 1, got {self.batch_size!r}")
        require(is_int(self.workers) and self.workers >= 0, "data.workers",
                f"must be an integer >= 0, got {self.workers!r}")
        require(is_int(self.epoch_test_stride) and self.epoch_test_stride >= 1, "data.epoch_test_stride",
                f"must be an integer >= 1, got {self.epoch_test_stride!r}")
        require(self.dataset != "imagenet" or self.root is not None, "data.root", "is required for imagenet")


@dataclass
class StartConfig:
    mode: str = "pretrained"
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        require(self.mode in ("pretrained", "scratch"), "start.mode",
                f"must be 'pretrained' or 'scratch', got {self.mode!r}")
        if self.mode == "pretrained":
            require(isinstance(self.checkpoint, str) and self.checkpoint != "", "start.checkpoint",
                    "is required when start.mode is 'pretrained' (a full-precision state-dict file)")
        else:
            require(self.checkpoint is None, "start.checkpoint", "must be null when start.mode is 'scratch'")


@dataclass
class QuantConfig:
    """``quant:``: the method, its level sets and its own options (``quant.options``), and the
    harness's calibration and BatchNorm re-estimation, the same for every method.

    Configs written before every method took ``quant.options`` put the options directly under
    ``quant:``; ``from_raw`` reads both forms, names each key in errors as the file wrote it, and
    resolves both to the one form of ``to_dict`` (config.yaml, cache keys).
    """

    method: str = DEFAULT_METHOD
    weights: str | None = None
    activations: str | None = None
    # the method's own keys (QuantMethod.config_from_section); resolved with their defaults
    options: dict = field(default_factory=dict)
    calib_samples: int = 1000
    # training images over which BatchNorm statistics are re-estimated in the evaluated mode
    # before each evaluation of a method that trains in another mode (the paper's soft vs hard);
    # 0 keeps the statistics gathered in training (docs/training.md, deviation bn_hard_stats)
    bn_reestimate_samples: int = 4096
    # option keys written directly under quant: (named so in errors)
    flat_keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: dict) -> "QuantConfig":
        """Build from the YAML section: keys other than this section's own are options of the
        method (the flat form); given both there and under ``options`` is an error."""
        own = {f.name for f in dataclasses.fields(cls)} - {"flat_keys"}
        flat = {k: v for k, v in raw.items() if k not in own}
        options = raw.get("options")
        options = {} if options is None else options
        require(isinstance(options, dict), "quant.options", f"must be a mapping, got {options!r}")
        for key in sorted(set(flat) & set(options)):
            raise ConfigError(f"quant.{key}", f"given both here and as quant.options.{key}")
        values = coerce_numbers(cls, {k: v for k, v in raw.items() if k in own and k != "options"})
        return cls(**values, options={**flat, **options}, flat_keys=tuple(sorted(flat)))

    def __post_init__(self) -> None:
        require(self.method in available_methods(), "quant.method",
                f"must be one of {available_methods()}, got {self.method!r}")
        require(isinstance(self.options, dict), "quant.options", f"must be a mapping, got {self.options!r}")
        for key in ("weights", "activations"):
            v = getattr(self, key)
            if v in ("32", 32):  # "32" is how the paper's tables write full precision
                v = None
                setattr(self, key, None)
            if v is not None:
                check_level_set(v, key, f"quant.{key}")
                setattr(self, key, str(v))
        require(is_int(self.calib_samples) and self.calib_samples >= 1, "quant.calib_samples",
                f"must be an integer >= 1, got {self.calib_samples!r}")
        require(is_int(self.bn_reestimate_samples) and self.bn_reestimate_samples >= 0,
                "quant.bn_reestimate_samples", f"must be an integer >= 0, got {self.bn_reestimate_samples!r}")
        method = get_method(self.method)
        try:
            self._method_config = method.config_from_section(
                self.weights, self.activations, coerce_numbers(method.config_class, self.options))
        except OptionError as e:
            written = f"quant.{e.key}" if e.key.split(".")[0] in self.flat_keys else f"quant.options.{e.key}"
            if e.unknown and e.key in self.flat_keys:
                own = ", ".join(f.name for f in dataclasses.fields(self) if f.name != "flat_keys")
                raise ConfigError(written, f"unknown key (known: {own}; the options of method "
                                  f"{self.method!r}: {', '.join(method.option_names()) or 'none'})") from None
            raise ConfigError(written, e.problem) from None
        except SectionError as e:
            raise ConfigError(f"quant.{e.key}", e.problem) from None
        self.options = method.section_options(self._method_config)

    @property
    def enabled(self) -> bool:
        return self.weights is not None or self.activations is not None

    def method_config(self):
        """The config of ``method``, built once from this section."""
        return self._method_config

    def to_dict(self) -> dict:
        """Plain data: the method is always named and its options hold their defaults."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "flat_keys"}


@dataclass
class TemperatureConfig:
    kind: str = "linear"
    slope: float = 5.0
    cap: float | None = None
    epoch_scale: float = 1.0  # paper epochs per run epoch (short schedules, see schedule.py)
    # the activation quantizers' own epoch_scale (null: epoch_scale). Short W+A schedules need
    # both: binary weights at T = 5-20 keep about half their hard RMS, while A1 activations
    # trained at T in the hundreds double the training loss (docs/training.md)
    act_epoch_scale: float | None = None

    def __post_init__(self) -> None:
        require(is_number(self.epoch_scale) and self.epoch_scale > 0, "temperature.epoch_scale",
                f"must be > 0, got {self.epoch_scale!r}")
        require(self.act_epoch_scale is None or (is_number(self.act_epoch_scale) and self.act_epoch_scale > 0),
                "temperature.act_epoch_scale", f"must be null or > 0, got {self.act_epoch_scale!r}")
        require(self.kind in TEMPERATURE_KINDS, "temperature.kind",
                f"must be one of {TEMPERATURE_KINDS}, got {self.kind!r}")
        require(is_number(self.slope) and self.slope > 0, "temperature.slope", f"must be > 0, got {self.slope!r}")
        require(self.cap is None or (is_number(self.cap) and self.cap > 0), "temperature.cap",
                f"must be null or > 0, got {self.cap!r}")

    def schedule(self, kind: str) -> TemperatureSchedule:
        """The schedule of the "weights" or the "activations" quantizers."""
        scale = self.act_epoch_scale if kind == "activations" and self.act_epoch_scale is not None \
            else self.epoch_scale
        return TemperatureSchedule(self.kind, self.slope, self.cap, epoch_scale=scale)


@dataclass
class OptimConfig:
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    milestones: list[int] = field(default_factory=lambda: [25, 40])
    gamma: float = 0.1
    grad_clip: float | None = 5.0

    def __post_init__(self) -> None:
        require(is_number(self.lr) and self.lr > 0, "optim.lr", f"must be > 0, got {self.lr!r}")
        require(is_number(self.momentum) and 0 <= self.momentum < 1, "optim.momentum",
                f"must be in [0, 1), got {self.momentum!r}")
        require(is_number(self.weight_decay) and self.weight_decay >= 0, "optim.weight_decay",
                f"must be >= 0, got {self.weight_decay!r}")
        require(isinstance(self.milestones, list) and all(is_int(m) and m >= 1 for m in self.milestones)
                and self.milestones == sorted(set(self.milestones)), "optim.milestones",
                f"must be a strictly increasing list of epochs >= 1, got {self.milestones!r}")
        require(is_number(self.gamma) and 0 < self.gamma <= 1, "optim.gamma", f"must be in (0, 1], got {self.gamma!r}")
        require(self.grad_clip is None or (is_number(self.grad_clip) and self.grad_clip > 0), "optim.grad_clip",
                f"must be null or > 0, got {self.grad_clip!r}")


@dataclass
class EpochsConfig:
    fp: int = 0
    weights: int = 0
    activations: int = 0
    joint: int = 0

    def __post_init__(self) -> None:
        for key in PHASES:
            v = getattr(self, key)
            require(is_int(v) and v >= 0, f"epochs.{key}", f"must be an integer >= 0, got {v!r}")

    @property
    def total(self) -> int:
        return self.fp + self.weights + self.activations + self.joint

    def phases(self) -> list[str]:
        """Phase name of each epoch, in the paper's order: 1-based epoch i -> phases()[i - 1]."""
        return [p for p in PHASES for _ in range(getattr(self, p))]

    def phase_of(self, epoch: int) -> str:
        """Phase name of a 1-based epoch."""
        require(is_int(epoch) and 1 <= epoch <= self.total, "epoch",
                f"{epoch!r} is outside the run's epochs 1..{self.total}")
        return self.phases()[epoch - 1]


PRECISIONS = ("fp32", "bf16")
SECTIONS = {"model": ModelConfig, "data": DataConfig, "start": StartConfig, "quant": QuantConfig,
            "temperature": TemperatureConfig, "optim": OptimConfig, "epochs": EpochsConfig}
DEVICES = "auto, cpu, cuda or cuda:N"


@dataclass
class RunConfig:
    """What every run has: the shared sections and the checks of its phase schedule.

    A task's run config subclasses it, sets ``TASK``, its own defaults (``DEFAULTS``, applied
    under the raw YAML), extra sections (``EXTRA_SECTIONS``) and shared keys it does not read
    (``UNUSED_KEYS``, refused as unknown), and adds its own rules in ``__post_init__``.

    Args:
        task: the task this config runs.
        seed: training seed (data order, augmentation, initialisation).
        device: "auto", "cpu", "cuda" or "cuda:N".
    """

    TASK: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict] = {}
    EXTRA_SECTIONS: ClassVar[dict] = {}
    UNUSED_KEYS: ClassVar[dict] = {}
    # a full-precision run of this task may have no epochs: it evaluates its start checkpoint
    EVALUATE_ONLY: ClassVar[bool] = False

    task: str = ""
    seed: int = 0
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    start: StartConfig = field(default_factory=lambda: StartConfig("scratch", None))
    quant: QuantConfig = field(default_factory=QuantConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: EpochsConfig = field(default_factory=EpochsConfig)

    def __post_init__(self) -> None:
        require(self.task == self.TASK, "task", f"must be {self.TASK!r} here, got {self.task!r}")
        require(is_int(self.seed) and self.seed >= 0, "seed", f"must be an integer >= 0, got {self.seed!r}")
        dev = self.device
        require(isinstance(dev, str) and (dev in ("auto", "cpu", "cuda")
                                         or (dev.startswith("cuda:") and dev[5:].isdigit())),
                "device", f"must be {DEVICES}, got {dev!r}")
        archs, datasets = available_models(self.TASK), available_datasets(self.TASK)
        require(self.model.arch in archs, "model.arch",
                f"task {self.TASK} takes one of {archs}, got {self.model.arch!r}")
        require(self.data.dataset in datasets, "data.dataset",
                f"task {self.TASK} takes one of {datasets}, got {self.data.dataset!r}")
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The phases a run may have (Alg. 1), the same for every task."""
        q, e = self.quant, self.epochs
        if q.enabled:
            require(e.total >= 1, "epochs", "at least one epoch must be set (weights, activations or joint)")
            require(e.fp == 0, "epochs.fp", "must be 0 for a quantized run (use weights/activations/joint)")
            require(q.weights is not None or e.weights == 0, "epochs.weights",
                   "must be 0 when quant.weights is null (nothing to train in phase 1)")
            require(q.activations is not None or e.activations == 0, "epochs.activations",
                   "must be 0 when quant.activations is null (nothing to train in phase 2)")
            require(q.activations is None or e.activations + e.joint > 0, "quant.activations",
                   "is set but no activations or joint epochs switch the activation quantizers on")
        else:
            for key in ("weights", "activations", "joint"):
                require(getattr(e, key) == 0, f"epochs.{key}",
                       "must be 0 without quantization (set quant.weights/activations or use epochs.fp)")
            # zero epochs = evaluate the start checkpoint (FP rows built from imported weights)
            require(e.total >= 1 or (self.EVALUATE_ONLY and self.start.mode == "pretrained"), "epochs",
                   "at least one epoch must be set" + (" (only a full-precision run from a checkpoint "
                                                       "may just evaluate)" if self.EVALUATE_ONLY else ""))
        if q.enabled and e.total:
            t = self.temperature
            # T grows with the epoch: the last one has the largest
            last_T = max(t.schedule(kind).value(e.total) for kind in ("weights", "activations"))
            require(last_T <= FLOAT32_MAX, "temperature",
                   f"T reaches {last_T:.3g} by epoch {e.total}, beyond float32 ({FLOAT32_MAX:.3g}); "
                   "lower temperature.slope / epoch_scale or set temperature.cap")

    def phases(self) -> list[str]:
        """Phase name of each epoch, 1-based epoch i -> phases()[i - 1]."""
        return self.epochs.phases()

    def to_dict(self) -> dict:
        """The resolved config as plain data (``config.yaml`` of the run)."""
        out = {**dataclasses.asdict(self), "quant": self.quant.to_dict()}
        for section, keys in self.UNUSED_KEYS.items():
            for key in keys:
                out[section].pop(key, None)
        return out

    @classmethod
    def sections(cls) -> dict[str, type]:
        """Section name -> dataclass, the shared ones and the task's own."""
        return {**SECTIONS, **cls.EXTRA_SECTIONS}

    @classmethod
    def from_dict(cls, raw: dict) -> "RunConfig":
        """Build and validate from a plain dict (parsed YAML), the task's defaults underneath.

        Args:
            raw: nested config; unknown keys raise ConfigError naming them.
        """
        if not isinstance(raw, dict):
            raise ConfigError("config", f"must be a mapping, got {type(raw).__name__}")
        sections = cls.sections()
        top = {f.name for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in top:
                raise ConfigError(key, f"unknown key (known: {', '.join(sorted(top))})")
        kwargs: dict[str, Any] = {"task": cls.TASK}
        for key, value in {**{k: None for k in cls.DEFAULTS}, **raw}.items():
            if key in sections:
                section = sections[key]
                if value is None:
                    value = {}
                if not isinstance(value, dict):
                    raise ConfigError(key, f"must be a mapping, got {value!r}")
                if hasattr(section, "from_raw"):  # a section that reads its keys itself
                    kwargs[key] = section.from_raw({**cls.DEFAULTS.get(key, {}), **value})
                    continue
                known = {f.name for f in dataclasses.fields(section)} - set(cls.UNUSED_KEYS.get(key, ()))
                for sub in value:
                    if sub not in known:
                        raise ConfigError(f"{key}.{sub}", f"unknown key (known: {', '.join(sorted(known))})")
                value = {**cls.DEFAULTS.get(key, {}), **value}
                if key == "optim" and isinstance(value.get("milestones"), tuple):
                    value = {**value, "milestones": list(value["milestones"])}
                value = coerce_numbers(section, value)
                try:
                    kwargs[key] = section(**value)
                except TypeError as e:
                    raise ConfigError(key, str(e)) from None
            elif key == "seed" and isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
                kwargs[key] = int(value)
            elif key in cls.DEFAULTS and value is None:
                kwargs[key] = cls.DEFAULTS[key]
            else:
                kwargs[key] = value
        if "start" not in kwargs:
            kwargs["start"] = StartConfig("scratch", None)
        return cls(**kwargs)


@dataclass
class Config(RunConfig):
    """A classification run. Every section is validated on construction.

    Args:
        task: "classify" (this package; "detect" runs are ``DetectRunConfig``).
        compile: train through ``torch.compile(model)`` (evaluation stays eager); off by
            default: compiling costs minutes per phase and pays only where launches dominate
            (docs/performance.md).
        precision: "fp32", or "bf16" for bfloat16 autocast of the forward pass (the quantizers
            compute in float32 inside). float16 would need loss scaling and is not offered.
        checkpoint_every_s: 0 saves the resume checkpoint after every epoch (and at epoch 0);
            more saves it only once this many seconds have passed since the last save, and
            after the last epoch. An AlexNet-BN checkpoint is 456 MB (4.7 s to write), longer
            than a mini epoch; a resumed run then repeats at most this much training.
    """

    TASK: ClassVar[str] = "classify"
    EVALUATE_ONLY: ClassVar[bool] = True

    task: str = "classify"
    compile: bool = False
    precision: str = "fp32"
    checkpoint_every_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.compile, bool), "compile", f"must be true or false, got {self.compile!r}")
        require(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        require(is_number(self.checkpoint_every_s) and self.checkpoint_every_s >= 0, "checkpoint_every_s",
                f"must be a number of seconds >= 0, got {self.checkpoint_every_s!r}")
        require(self.model.num_classes is not None, "model.num_classes", "must be an integer >= 2, got None")
        require(self.data.batch_size >= 2, "data.batch_size",
                f"must be an integer >= 2 (BatchNorm needs 2), got {self.data.batch_size!r}")


def set_dotted(raw: dict, assignment: str) -> None:
    """Apply one ``--set key.sub=value`` (value parsed as YAML) to a raw config dict in place.

    Args:
        raw: the parsed config.
        assignment: ``section.key=value``.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: bad key")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p} is not a section")
    try:
        node[parts[-1]] = parse_yaml(text, f"--set {key}") if text.strip() else None
    except FileFormatError as e:
        raise ConfigError(str(e)) from None


def load_raw(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a YAML config and apply ``--set`` overrides.

    Args:
        path: YAML file.
        overrides: ``key=value`` strings.
    """
    path = Path(path)
    try:
        raw = read_yaml(path)
    except FileFormatError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of config keys, got {type(raw).__name__}")
    for o in overrides:
        set_dotted(raw, o)
    return raw
