"""The baselines of Tables 1-3 (``qbench.quant.baselines``) as quantization methods.

One adapter class (``BaselineMethod``) registered once per module of ``qbench.quant.baselines``
that declares a ``METHOD`` (a ``BaselineSpec``: name, title, weight and/or input quantizer, the
bit widths it supports, its own options and epoch hooks); adding a baseline is that one module.
A run names one in YAML::

    quant: {method: lsq, weights: linear2, activations: act_2bit}

Bit width. ``quant.weights`` / ``quant.activations`` give the bit width b of the method's own
b-bit quantizer; the level values are the method's (2-bit LSQ weights take the four values
{-2, -1, 0, 1} * s, not the three of the paper's ``ternary``):

- weights: ``binary`` (1), ``ternary`` (2), ``linear<b>`` (b), ``5bit`` (5);
- activations: ``act_binary`` (1), ``act_2bit`` (2), ``act_linear<b>`` (b).

``3bit_pm2``, ``3bit_pm4`` and ``pow2_<b>`` name level sets of their own (not a bit width of
a uniform quantizer) and are refused, as is a bit width outside a method's range; the error
is one line naming ``quant.weights`` / ``quant.activations``.

Initialisation: a weight quantizer is initialised from its layer's full-precision weight when
it is built; an input quantizer from the first calibration batch its layer sees (the trainer
calibrates before training when activations are quantized).

Export stores each layer's codes and its level table as the baseline gives them (``codebook``
of shape (L,), or (C, L) with one row per output channel for BWN and LQ-Net); model size counts
``bits`` per weight plus 32 bits per level-table entry.

Optimizer groups (``param_groups``): each quantizer declares the lr and weight-decay
multipliers its authors train its parameters with (TTQ's W_p, W_n and PACT's alpha take the
weight decay; the rest none), cited in its module; the trainer and the detection runner build
their optimizer groups from ``QuantMethod.param_groups``.

Level counts (``level_counts``, ``level_label``): a baseline's b-bit quantizer can take more or
fewer values than the paper's level set of the same name (2-bit LSQ and LQ-Net: 4 against 3);
the tables print the difference next to the method.

INQ's stages span the run (its hooks, ``qbench.quant.baselines.inq``): its accumulated portions (per bit width,
``qbench.quant.baselines.inq.portions_for``: 10 at 2 bits, 50/75/87.5/100 % at 5) are
frozen at the starts of evenly spaced epochs (the first at epoch 1), each followed by
re-training of what is left: after the last portion the full-precision layers and the
BatchNorm statistics adapt to the fully quantized weights. On a mini ResNet-18 W2 run (4
epochs) freezing the last portion only after the final epoch took hard top-1 from 57.4 %
(after epoch 3) to 14.5 %: the BatchNorm statistics had never seen those weights. A run shorter than the number of
portions freezes several at once; ``on_epoch_end`` of the last epoch freezes any rest.

Not implemented: ADMM (Leng et al. 2018) adds its penalty ``(rho/2) ||W - G + mu||^2`` to every
step's loss and projects every few iterations; neither is an epoch-level action of a method, so
its Table 1-4 numbers are cited only.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .. import baselines as B
from .base import CODES_FORMAT, OptionError, QuantMethod, SectionError, available_methods, get_method, register_method, write_plain_weight

WEIGHT_BITS = {"binary": 1, "ternary": 2, "5bit": 5}
ACTIVATION_BITS = {"act_binary": 1, "act_2bit": 2}


def bits_of(name: str | None, key: str) -> int | None:
    """The bit width a level-set name gives a baseline method (None: full precision).

    Args:
        name: ``quant.weights`` or ``quant.activations``.
        key: "weights" or "activations", named in the error.
    """
    if name is None:
        return None
    table, prefix = (WEIGHT_BITS, "linear") if key == "weights" else (ACTIVATION_BITS, "act_linear")
    if name in table:
        return table[name]
    match = re.fullmatch(prefix + r"([0-9]+)", str(name))
    if match:
        return int(match.group(1))
    raise SectionError(key, f"{name!r} is no bit width for a baseline method; use "
                       f"{', '.join(table)} or {prefix}<b>")


class CalibratedInput(nn.Module):
    """A baseline activation quantizer initialised from the first batch it observes in
    calibration (``InputSlot`` shows it each calibration input)."""

    def __init__(self, quantizer: B.BaselineQuantizer) -> None:
        super().__init__()
        self.quantizer = quantizer
        self._seen = False

    @property
    def bits(self) -> int:
        return self.quantizer.bits

    def observe(self, x: torch.Tensor) -> None:
        if not self._seen:
            self.quantizer.initialize(x)
            self._seen = True

    def finish_observing(self) -> None:
        self._seen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer(x)


def discover_baselines(package: ModuleType) -> dict[str, B.BaselineSpec]:
    """The ``METHOD`` of every module of ``package`` that declares one, by name (module order)."""
    specs: dict[str, B.BaselineSpec] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        where = f"{package.__name__}.{info.name}"
        spec = getattr(importlib.import_module(where), "METHOD", None)
        if spec is None:
            continue
        if not isinstance(spec, B.BaselineSpec):
            raise TypeError(f"{where}.METHOD must be a BaselineSpec, got {type(spec).__name__}")
        if spec.name in specs:
            raise ValueError(f"baseline {spec.name!r} is declared twice ({where})")
        specs[spec.name] = spec
    return specs


def is_baseline_method(name: str) -> bool:
    """Whether ``name`` is a registered method built from a ``BaselineSpec``."""
    return name in available_methods() and isinstance(getattr(get_method(name), "spec", None), B.BaselineSpec)


def _spec(name: str) -> B.BaselineSpec:
    if not is_baseline_method(name):
        known = [m for m in available_methods() if is_baseline_method(m)]
        raise ValueError(f"{name!r} is not a baseline method; known: {', '.join(known)}")
    return get_method(name).spec


def _check_config(self) -> None:
    """``__post_init__`` of every baseline config: bit widths in range, options valid."""
    spec = _spec(self.method_name)
    for key, build, (low, high) in (("weights", spec.weight, spec.weight_bits),
                                    ("activations", spec.activation, spec.activation_bits)):
        name = getattr(self, key)
        if name is None:
            continue
        if build is None:
            raise SectionError(key, f"method {self.method_name!r} does not quantize {key}, got {name!r}")
        bits = bits_of(name, key)
        if not low <= bits <= high:
            width = f"{low}-bit" if low == high else f"{low}..{high}-bit"
            raise SectionError(key, f"method {self.method_name!r} has {width} {key}, got {name!r} ({bits}-bit)")
    if self.weights is None and self.activations is None:
        return
    # the baselines validate their own options; build one quantizer of each kind to run them
    options = self.options()
    probe = nn.Linear(1, 1)
    if self.weights is not None:
        spec.weight(bits_of(self.weights, "weights"), probe, options)
    if self.activations is not None:
        spec.activation(bits_of(self.activations, "activations"), probe, options)


def _options(self) -> dict:
    return {key: getattr(self, key) for key in _spec(self.method_name).options}


def _config_class(name: str, spec: B.BaselineSpec) -> type:
    fields = [("weights", str | None, dataclasses.field(default=spec.example[0])),
              ("activations", str | None, dataclasses.field(default=spec.example[1])),
              ("include", tuple[str, ...] | None, dataclasses.field(default=None)),
              ("exclude", tuple[str, ...] | None, dataclasses.field(default=None))]
    fields += [(key, type(value), dataclasses.field(default=value)) for key, value in spec.options.items()]
    cls = dataclasses.make_dataclass(
        f"{spec.title}Config", fields, frozen=True,
        namespace={"method_name": name, "__post_init__": _check_config, "options": _options,
                   "__doc__": f"Config of the baseline method {name!r} (qbench.quant.methods.baselines)."})
    cls.__module__ = __name__
    return cls


class BaselineMethod(QuantMethod):
    """A method made of one baseline weight quantizer and/or one baseline input quantizer
    (its module's ``METHOD``); no modes: the quantizers compute one way in training and eval."""

    spec: B.BaselineSpec

    @classmethod
    def config_from_section(cls, weights: str | None, activations: str | None, options: dict) -> Any:
        known = cls.option_names()
        for key in options:
            if key not in known:
                raise OptionError(key, f"unknown option of method {cls.name!r} "
                                  f"(known: {', '.join(known) or 'none'})", unknown=True)
        try:
            return cls.config_class(weights=weights, activations=activations, **options)
        except (SectionError, OptionError):
            raise
        except (TypeError, ValueError) as e:
            raise SectionError("options", str(e)) from None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(sorted(cls.spec.options))

    @classmethod
    def example_config(cls) -> Any:
        return cls.config_class()

    def on_epoch(self, model: nn.Module, step: Any) -> None:
        if self.spec.on_epoch is not None:
            self.spec.on_epoch(self, model, step)

    def on_epoch_end(self, model: nn.Module, step: Any) -> None:
        if self.spec.on_epoch_end is not None:
            self.spec.on_epoch_end(self, model, step)

    def weight_quantizer(self, name: str, layer: nn.Module) -> nn.Module | None:
        if self.config.weights is None:
            return None
        quantizer = self.spec.weight(bits_of(self.config.weights, "weights"), layer, self.config.options())
        quantizer.to(layer.weight.device)
        quantizer.initialize(layer.weight.detach())
        return quantizer

    def input_quantizer(self, name: str, layer: nn.Module) -> nn.Module | None:
        if self.config.activations is None:
            return None
        return CalibratedInput(self.spec.activation(bits_of(self.config.activations, "activations"), layer,
                                                    self.config.options()))

    def param_groups(self, model: nn.Module) -> list[dict]:
        """One group per (``lr_mult``, ``decay_mult``) that the method's quantizers declare (the
        settings their authors train them with, ``BaselineQuantizer``); always at least one, so
        every run of the method has the same optimizer layout."""
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        seen: set[int] = set()
        slots = list(self.weight_modules(model).values()) + list(self.input_modules(model).values())
        for slot in slots:
            for module in slot.modules():
                if not isinstance(module, B.BaselineQuantizer):
                    continue
                key = (float(module.lr_mult), float(module.decay_mult))
                for p in module.parameters(recurse=False):
                    if id(p) not in seen:
                        seen.add(id(p))
                        groups.setdefault(key, []).append(p)
        if not groups:
            return super().param_groups(model)
        return [{"params": params, "lr_mult": lr_mult, "decay_mult": decay_mult}
                for (lr_mult, decay_mult), params in groups.items()]

    def _exports(self, model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {name: slot.quantizer.export(model.get_submodule(name).parametrizations.weight.original.detach())
                for name, slot in self.weight_modules(model).items()}

    @torch.no_grad()
    def export(self, model: nn.Module) -> dict:
        """Codes and level table (``codebook``: (L,) or (C, L) per output channel) of every
        quantized weight, and each input quantizer's state."""
        weights = {name: {"codes": codes.cpu(), "codebook": levels.detach().cpu().clone()}
                   for name, (codes, levels) in self._exports(model).items()}
        inputs = {name: {k: v.detach().cpu().clone() for k, v in s.quantizer.state_dict().items()}
                  for name, s in self.input_modules(model).items()}
        return {"format": CODES_FORMAT, "method": self.name, "weights": weights, "activations": inputs}

    @torch.no_grad()
    def load_export(self, model: nn.Module, exported: dict) -> None:
        if exported.get("format") != CODES_FORMAT or exported.get("method") != self.name:
            raise ValueError(f"not a {CODES_FORMAT} export of method {self.name!r} "
                             f"(format={exported.get('format')!r}, method={exported.get('method')!r})")
        for name, entry in exported["weights"].items():
            write_plain_weight(model, name, B.dequantize(entry["codes"], entry["codebook"]))
        inputs = self.input_modules(model)
        for name, state in exported["activations"].items():
            if name in inputs:
                inputs[name].quantizer.load_state_dict(state)

    def weight_storage_bits(self, model: nn.Module) -> dict[str, int]:
        """``bits`` per weight plus 32 bits per entry of the layer's level table."""
        return {name: codes.numel() * self.weight_modules(model)[name].quantizer.bits + levels.numel() * 32
                for name, (codes, levels) in self._exports(model).items()}


def level_counts(method: str, weights: str | None, activations: str | None) -> dict[str, int | None]:
    """How many values a baseline's weights and activations take at the given level-set names
    (None: full precision), from the quantizers the method builds: 2-bit LSQ weights 4, TTQ 3,
    3-bit INQ 5, 5-base ABC-Net 6.

    Args:
        method: a registered baseline method name.
        weights, activations: ``quant.weights`` / ``quant.activations`` of the cell.
    """
    spec, probe = _spec(method), nn.Linear(1, 1)
    options = dict(spec.options)
    out: dict[str, int | None] = {"weights": None, "activations": None}
    if weights is not None and spec.weight is not None:
        out["weights"] = spec.weight(bits_of(weights, "weights"), probe, options).num_levels
    if activations is not None and spec.activation is not None:
        out["activations"] = spec.activation(bits_of(activations, "activations"), probe, options).num_levels
    return out


def _paper_levels(name: str | None) -> int | None:
    """Levels of the paper's method at a level-set name (its ``LevelSet``)."""
    if name is None:
        return None
    from ..levels import LevelSet

    return len(LevelSet.from_name(name).values)


def level_label(method: str, weights: str | None, activations: str | None) -> str:
    """The level counts of a baseline cell where they differ from the paper's method at the same
    level-set names, e.g. ``"W 4 lv (QN 3)"``; "" where they agree or ``method`` is not a baseline
    (the tables append it to the method's name)."""
    if not is_baseline_method(method):
        return ""
    own = level_counts(method, weights, activations)
    parts = []
    for key, name in (("weights", weights), ("activations", activations)):
        ours, paper = own[key], _paper_levels(name)
        if ours is not None and paper is not None and ours != paper:
            parts.append(f"{key[0].upper()} {ours} lv (QN {paper})")
    return ", ".join(parts)


def register_baseline(spec: B.BaselineSpec) -> type[BaselineMethod]:
    """Register ``spec`` as the method ``spec.name`` (a ``BaselineMethod`` with its config class)."""
    name = spec.name
    cls = type(f"{spec.title}Method", (BaselineMethod,),
               {"config_class": _config_class(name, spec), "spec": spec, "__module__": __name__,
                "__doc__": f"The baseline {name!r} (qbench.quant.baselines) as a quantization method."})
    return register_method(name)(cls)


# every module of qbench.quant.baselines that declares a METHOD, registered in module order
SPECS: dict[str, B.BaselineSpec] = discover_baselines(B)
METHODS = {name: register_baseline(spec) for name, spec in SPECS.items()}
