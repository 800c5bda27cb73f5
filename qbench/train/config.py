"""Typed, validated run configuration (the YAML schema of docs/CONTRACTS.md).

One stack for every task: the sections model/data/start/quant/temperature/optim/epochs are
pydantic models defined here once (``extra="forbid"``, typed fields), with one error type
(``ConfigError``) and one message style (``<key>: <what is wrong>``, the key being the dotted
location of the bad value). ``RunConfig`` holds what every run has and checks the phase
schedule; ``Config`` is a classification run, ``qbench.detection.config.DetectRunConfig`` a
detection run that adds only its ``detect:`` section and the rules specific to detection.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, WrapValidator
from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

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
    """Raise ``ConfigError(key, msg)`` unless ``cond``: the message style of the rules that
    span keys (and of fmnist_voc generation)."""
    if not cond:
        raise ConfigError(key, msg)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# YAML 1.1 reads ``1e-3`` as text, and snakemake's ``--config`` passes every nested value as
# text; both are how people write numbers, so numbers and booleans written so are accepted.
# The models are strict otherwise: ``true`` is no integer, ``2.0`` no epoch count.
_INT_TEXT = re.compile(r"[-+]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BOOL_TEXT = {"true": True, "false": False}
_NULL_TEXT = ("null", "none", "~")


def _int_text(v: Any) -> Any:
    return int(v.strip()) if isinstance(v, str) and _INT_TEXT.fullmatch(v.strip()) else v


def _float_text(v: Any) -> Any:
    return float(v.strip()) if isinstance(v, str) and _FLOAT_TEXT.fullmatch(v.strip()) else v


def _null_text(v: Any) -> Any:
    return None if isinstance(v, str) and v.strip().lower() in _NULL_TEXT else v


def _as_list(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


Int = Annotated[int, BeforeValidator(_int_text)]
# an int stays an int (config.yaml and cache keys keep what the file wrote)
Number = Annotated[int | float, BeforeValidator(_float_text)]
IntList = Annotated[list[Int], BeforeValidator(_as_list)]


def _problem(text: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{problem}", {"problem": text})


def rule(tp: Any, text: str | Callable[[], str], test: Callable[[Any], bool] = lambda v: True, *, nullable: bool = False,
         got: bool = True, schema: Callable[[], dict] | None = None) -> Any:
    """A field type whose every failure, of type or of ``test``, reads ``<text>, got <value>``.

    Args:
        tp: the value's type (``Int``, ``Number``, ``str``, ...).
        text: what the key must be (a callable where it names a registry, read when it fails).
        test: the rule on a well-typed value (not called on None).
        nullable: null (or its text) is allowed.
        got: append the offending value.
        schema: extra JSON-schema keys, computed when the schema is made (registry names).
    """
    def check(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            out = handler(value)
        except ValidationError:
            out, ok = value, False
        else:
            ok = out is None or test(out)
        if not ok:
            must = text() if callable(text) else text
            raise _problem(f"{must}, got {out!r}" if got else must)
        return out

    meta: list[Any] = [WrapValidator(check)]
    if schema is not None:
        meta.append(Field(json_schema_extra=lambda s: s.update(schema())))
    if nullable:
        return Annotated[tp | None, BeforeValidator(_null_text), *meta]
    return Annotated[tp, *meta]


def finite(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: math.isfinite(v) and test(v)


def one_of(names: Callable[[], Any]) -> Callable[[Any], bool]:
    """Membership in a registry read at validation time (tests and plugins register more)."""
    return lambda v: v in names()


class Section(BaseModel):
    """A config section: unknown keys are errors, values are strictly typed."""

    model_config = ConfigDict(extra="forbid", strict=True)


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


def _names(names: Callable[[], Any]) -> Callable[[], dict]:
    return lambda: {"enum": list(names())}


class ModelConfig(Section):
    """``model:``. num_classes null: the dataset's number of classes (detection sets)."""

    arch: rule(str, lambda: f"must be one of {available_models()}", one_of(available_models),
               schema=_names(available_models)) = "resnet18"
    num_classes: rule(Int, "must be null or an integer >= 2", lambda v: v >= 2, nullable=True) = 10
    in_channels: rule(Int, "must be 1 or 3", lambda v: v in (1, 3)) = 1
    # the paper's topology at another channel width / with a first conv for small inputs
    # (qbench.models.build_model); 1.0 and "imagenet" are the paper's networks
    width: rule(Number, "must be a number in (0, 4]", finite(lambda v: 0 < v <= 4)) = 1.0
    stem: rule(str, f"must be one of {STEMS}", lambda v: v in STEMS, schema=lambda: {"enum": list(STEMS)}) \
        = "imagenet"


class DataConfig(Section):
    dataset: rule(str, lambda: f"must be one of {available_datasets()}", one_of(available_datasets),
                  schema=_names(available_datasets)) = "fashion_mnist"
    root: rule(str, "must be a path or null", nullable=True, got=False) = None
    image_size: rule(Int, "must be an integer >= 16", lambda v: v >= 16) = 32
    train_size: rule(Int, "must be null or an integer >= 1", lambda v: v >= 1, nullable=True) = None
    test_size: rule(Int, "must be null or an integer >= 1", lambda v: v >= 1, nullable=True) = None
    subset_seed: rule(Int, "must be an integer") = 0
    batch_size: rule(Int, "must be an integer >= 1", lambda v: v >= 1) = 128
    workers: rule(Int, "must be an integer >= 0", lambda v: v >= 0) = 0
    # per-epoch evaluations (the curves) see every n-th test image; the final one sees them all
    epoch_test_stride: rule(Int, "must be an integer >= 1", lambda v: v >= 1) = 1

    @model_validator(mode="after")
    def _root_given(self) -> "DataConfig":
        require(self.dataset != "imagenet" or self.root is not None, "data.root", "is required for imagenet")
        return self


START_MODES = ("pretrained", "scratch")


class StartConfig(Section):
    mode: rule(str, "must be 'pretrained' or 'scratch'", lambda v: v in START_MODES,
               schema=lambda: {"enum": list(START_MODES)}) = "pretrained"
    # any value reaches the rule below, whose message says what the mode needs
    checkpoint: Annotated[Any, BeforeValidator(_null_text), Field(json_schema_extra={"type": ["string", "null"]})] \
        = None

    @model_validator(mode="after")
    def _checkpoint_fits_mode(self) -> "StartConfig":
        if self.mode == "pretrained":
            require(isinstance(self.checkpoint, str) and self.checkpoint != "", "start.checkpoint",
                    "is required when start.mode is 'pretrained' (a full-precision state-dict file)")
        else:
            require(self.checkpoint is None, "start.checkpoint", "must be null when start.mode is 'scratch'")
        return self


def _full_precision_as_null(v: Any) -> Any:
    v = _null_text(v)
    return None if v in ("32", 32) else v  # "32" is how the paper's tables write full precision


def level_set(role: str) -> Any:
    """A level-set name for ``role`` (weights or activations); null is full precision."""
    def check(v: Any) -> str | None:
        if v is not None:
            try:
                check_level_set(v, role, f"quant.{role}")
            except ConfigError as e:
                raise _problem(e.problem) from None
            v = str(v)
        return v
    return Annotated[Any, BeforeValidator(check), BeforeValidator(_full_precision_as_null),
                     Field(json_schema_extra={"type": ["string", "null"]})]


def _coerce_options(config_class: type, options: dict) -> dict:
    """A method's options written as text become the numbers or booleans its config wants."""
    hints = {f.name: str(f.type) for f in dataclasses.fields(config_class)}
    out = dict(options)
    for key, v in options.items():
        hint = hints.get(key, "")
        if isinstance(v, list) and hint.startswith("list[int]"):
            out[key] = [_int_text(x) for x in v]
        if not isinstance(v, str):
            continue
        text = v.strip()
        if "float" in hint and _FLOAT_TEXT.fullmatch(text):
            out[key] = float(text)
        elif re.match(r"int\b", hint) and _INT_TEXT.fullmatch(text):
            out[key] = int(text)
        elif hint == "bool" and text.lower() in _BOOL_TEXT:
            out[key] = _BOOL_TEXT[text.lower()]
        elif text.lower() in _NULL_TEXT and "None" in hint:
            out[key] = None
    return out


class QuantConfig(Section):
    """``quant:``: the method, its level sets and its own options (``quant.options``), and the
    harness's calibration and BatchNorm re-estimation, the same for every method.

    Configs written before every method took ``quant.options`` put the options directly under
    ``quant:``; validation reads both forms, names each key in errors as the file wrote it, and
    resolves both to the one form of ``to_dict`` (config.yaml, cache keys).
    """

    method: rule(str, lambda: f"must be one of {available_methods()}", one_of(available_methods),
                 schema=_names(available_methods)) = DEFAULT_METHOD
    weights: level_set("weights") = None
    activations: level_set("activations") = None
    # the method's own keys (QuantMethod.config_from_section); resolved with their defaults
    options: dict = Field(default_factory=dict)
    calib_samples: rule(Int, "must be an integer >= 1", lambda v: v >= 1) = 1000
    # training images over which BatchNorm statistics are re-estimated in the evaluated mode
    # before each evaluation of a method that trains in another mode (the paper's soft vs hard);
    # 0 keeps the statistics gathered in training (docs/training.md, deviation bn_hard_stats)
    bn_reestimate_samples: rule(Int, "must be an integer >= 0", lambda v: v >= 0) = 4096
    _method_config: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _read(cls, raw: Any, handler: Callable[[Any], "QuantConfig"]) -> "QuantConfig":
        """Keys other than this section's own are options of the method (the flat form);
        given both there and under ``options`` is an error."""
        if not isinstance(raw, dict):
            return handler(raw)
        flat = {k: v for k, v in raw.items() if k not in cls.model_fields}
        options = raw.get("options")
        options = {} if options is None else options
        require(isinstance(options, dict), "quant.options", f"must be a mapping, got {options!r}")
        # a key that is no name cannot be named in an error as quant.<key>: name its section
        for section, keys in (("quant", flat), ("quant.options", options)):
            for key in keys:
                require(isinstance(key, str) and key.isidentifier(), section,
                        f"{key!r} is no key of this section (known: {', '.join(cls.model_fields)}; "
                        "a method's options by name)" if section == "quant" else f"{key!r} is no option name")
        for key in sorted(set(flat) & set(options)):
            raise ConfigError(f"quant.{key}", f"given both here and as quant.options.{key}")
        own = {k: v for k, v in raw.items() if k in cls.model_fields and k != "options"}
        self = handler({**own, "options": {**flat, **options}})
        self._resolve(tuple(sorted(flat)))
        return self

    def _resolve(self, flat_keys: tuple[str, ...]) -> None:
        """Build the method's config; its options become the resolved ones."""
        method = get_method(self.method)
        try:
            self._method_config = method.config_from_section(
                self.weights, self.activations, _coerce_options(method.config_class, self.options))
        except OptionError as e:
            written = f"quant.{e.key}" if e.key.split(".")[0] in flat_keys else f"quant.options.{e.key}"
            if e.unknown and e.key in flat_keys:
                own = ", ".join(type(self).model_fields)
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
        return {name: copy.deepcopy(getattr(self, name)) for name in type(self).model_fields}


class TemperatureConfig(Section):
    kind: rule(str, f"must be one of {TEMPERATURE_KINDS}", lambda v: v in TEMPERATURE_KINDS,
               schema=lambda: {"enum": list(TEMPERATURE_KINDS)}) = "linear"
    slope: rule(Number, "must be > 0", finite(lambda v: v > 0)) = 5.0
    cap: rule(Number, "must be null or > 0", finite(lambda v: v > 0), nullable=True) = None
    epoch_scale: rule(Number, "must be > 0", finite(lambda v: v > 0)) = 1.0  # paper epochs per run epoch
    # the activation quantizers' own epoch_scale (null: epoch_scale). Short W+A schedules need
    # both: binary weights at T = 5-20 keep about half their hard RMS, while A1 activations
    # trained at T in the hundreds double the training loss (docs/training.md)
    act_epoch_scale: rule(Number, "must be null or > 0", finite(lambda v: v > 0), nullable=True) = None

    def schedule(self, kind: str) -> TemperatureSchedule:
        """The schedule of the "weights" or the "activations" quantizers."""
        scale = self.act_epoch_scale if kind == "activations" and self.act_epoch_scale is not None \
            else self.epoch_scale
        return TemperatureSchedule(self.kind, self.slope, self.cap, epoch_scale=scale)


def _increasing(v: list[int]) -> bool:
    return all(m >= 1 for m in v) and v == sorted(set(v))


class OptimConfig(Section):
    lr: rule(Number, "must be > 0", finite(lambda v: v > 0)) = 0.001
    momentum: rule(Number, "must be in [0, 1)", finite(lambda v: 0 <= v < 1)) = 0.9
    weight_decay: rule(Number, "must be >= 0", finite(lambda v: v >= 0)) = 0.0005
    milestones: rule(IntList, "must be a strictly increasing list of epochs >= 1", _increasing) \
        = Field(default_factory=lambda: [25, 40])
    gamma: rule(Number, "must be in (0, 1]", finite(lambda v: 0 < v <= 1)) = 0.1
    grad_clip: rule(Number, "must be null or > 0", finite(lambda v: v > 0), nullable=True) = 5.0


EPOCHS = rule(Int, "must be an integer >= 0", lambda v: v >= 0)


class EpochsConfig(Section):
    fp: EPOCHS = 0
    weights: EPOCHS = 0
    activations: EPOCHS = 0
    joint: EPOCHS = 0

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


def _device(dev: str) -> bool:
    return dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())


class RunConfig(Section):
    """What every run has: the shared sections and the checks of its phase schedule.

    A task's run config subclasses it, sets ``TASK``, its own defaults (``DEFAULTS``, applied
    under the raw YAML), extra sections (fields of their own model) and shared keys it does not
    read (``UNUSED_KEYS``, refused as unknown), and adds its own rules as model validators.

    Args:
        task: the task this config runs.
        seed: training seed (data order, augmentation, initialisation).
        device: "auto", "cpu", "cuda" or "cuda:N".
    """

    TASK: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict] = {}
    UNUSED_KEYS: ClassVar[dict] = {}
    # a full-precision run of this task may have no epochs: it evaluates its start checkpoint
    EVALUATE_ONLY: ClassVar[bool] = False

    task: str = ""
    seed: rule(Int, "must be an integer >= 0", lambda v: v >= 0) = 0
    device: rule(str, f"must be {DEVICES}", _device) = "auto"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    start: StartConfig = Field(default_factory=lambda: StartConfig(mode="scratch"))
    quant: QuantConfig = Field(default_factory=QuantConfig)
    temperature: TemperatureConfig = Field(default_factory=TemperatureConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    epochs: EpochsConfig = Field(default_factory=EpochsConfig)

    @field_validator("task", mode="wrap")
    @classmethod
    def _task(cls, value: Any, handler: Callable[[Any], str]) -> str:
        if value != cls.TASK:
            raise _problem(f"must be {cls.TASK!r} here, got {value!r}")
        return handler(value)

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Section name -> model, the shared ones and the task's own."""
        return {name: f.annotation for name, f in cls.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, Section)}

    @model_validator(mode="before")
    @classmethod
    def _with_defaults(cls, raw: Any) -> Any:
        """The task's defaults under each section; a section left empty (null) is all defaults."""
        if not isinstance(raw, dict):
            raise ConfigError("config", f"must be a mapping, got {type(raw).__name__}")
        sections = cls.sections()
        out: dict[str, Any] = {"task": cls.TASK}
        for key, value in {**{k: None for k in cls.DEFAULTS}, **raw}.items():
            if key in sections:
                value = {} if value is None else value
                if not isinstance(value, dict):
                    out[key] = value  # refused by the section's own validation
                    continue
                # an unknown top-level key is reported first, as for any other section's keys
                unused = cls.UNUSED_KEYS.get(key, ()) if set(raw) <= set(cls.model_fields) else ()
                for sub in value:
                    if sub in unused:
                        known = sorted(set(sections[key].model_fields) - set(unused))
                        raise ConfigError(f"{key}.{sub}", f"unknown key (known: {', '.join(known)})")
                value = {**cls.DEFAULTS.get(key, {}), **value}
            out[key] = value
        return out

    @model_validator(mode="after")
    def _check_run(self) -> "RunConfig":
        archs, datasets = available_models(self.TASK), available_datasets(self.TASK)
        require(self.model.arch in archs, "model.arch",
                f"task {self.TASK} takes one of {archs}, got {self.model.arch!r}")
        require(self.data.dataset in datasets, "data.dataset",
                f"task {self.TASK} takes one of {datasets}, got {self.data.dataset!r}")
        self._check_schedule()
        return self

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
        out = {name: copy.deepcopy(getattr(self, name)) for name in type(self).model_fields}
        out = {k: v.model_dump() if isinstance(v, Section) else v for k, v in out.items()}
        out["quant"] = self.quant.to_dict()
        for section, keys in self.UNUSED_KEYS.items():
            for key in keys:
                out[section].pop(key, None)
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "RunConfig":
        """Build and validate from a plain dict (parsed YAML), the task's defaults underneath.

        Args:
            raw: nested config; an unknown key or a bad value raises ConfigError naming it.
        """
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise config_error(cls, exc, raw) from None


def _known_keys(root: type[RunConfig], loc: tuple) -> list[str]:
    """The keys the section at ``loc`` takes (the task's unused ones left out)."""
    model: Any = root
    for part in loc:
        model = model.model_fields[part].annotation
    unused = root.UNUSED_KEYS.get(loc[0], ()) if len(loc) == 1 else ()
    return sorted(set(model.model_fields) - set(unused))


def _rank(root: type[RunConfig], raw: dict) -> Callable[[dict], tuple]:
    """The order in which a reader meets errors: unknown top-level keys, then each section as
    the file gives it (its unknown keys first), then the run's own keys, then rules across
    keys."""
    sections = [k for k in {**root.DEFAULTS, **raw} if k in root.sections()]
    top = list(raw)

    def rank(err: dict) -> tuple:
        loc, extra = err["loc"], err["type"] == "extra_forbidden"
        if not loc:
            return (4,)
        if len(loc) == 1 and extra:
            return (0, top.index(loc[0]) if loc[0] in top else 0)
        if loc[0] in sections:
            return (1, sections.index(loc[0]), not extra)
        return (2 if loc[0] in RunConfig.model_fields else 3,)
    return rank


def config_error(root: type[RunConfig], exc: ValidationError, raw: Any = None) -> ConfigError:
    """The first error of a validation as ``ConfigError``, keyed by its dotted location.

    A rule that spans keys raised its ``ConfigError`` with the key it names.
    """
    err = sorted(exc.errors(), key=_rank(root, raw if isinstance(raw, dict) else {}))[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        return ConfigError(key, f"unknown key (known: {', '.join(_known_keys(root, loc[:-1]))})")
    if err["type"] == "model_type" and len(loc) == 1:  # a section that is no mapping
        return ConfigError(key, f"must be a mapping, got {err['input']!r}")
    return ConfigError(key, err["msg"])


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
    # top-level flags are never passed as text: no conversion here
    compile: rule(bool, "must be true or false") = False
    precision: rule(str, f"must be one of {PRECISIONS}", lambda v: v in PRECISIONS,
                    schema=lambda: {"enum": list(PRECISIONS)}) = "fp32"
    checkpoint_every_s: rule(int | float, "must be a number of seconds >= 0", finite(lambda v: v >= 0)) = 0.0

    @model_validator(mode="after")
    def _check_classify(self) -> "Config":
        require(self.model.num_classes is not None, "model.num_classes", "must be an integer >= 2, got None")
        require(self.data.batch_size >= 2, "data.batch_size",
                f"must be an integer >= 2 (BatchNorm needs 2), got {self.data.batch_size!r}")
        return self


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
