"""The quantization-method interface, its registry and the parts every method shares.

A method is a ``QuantMethod`` subclass with a frozen, validated config dataclass, registered
under a name with ``@register_method(name)``. ``quantize_(model, config)`` finds the method of
the config and puts its quantizers on the model; everything after that (per-epoch schedule,
modes, phase switches, learnable parameters, export, model size) goes through the method.

Where the quantizers live is the same for every method, so layers can be found without
knowing the method: a layer's weight quantizer is a ``torch.nn.utils.parametrize``
parametrization of its ``weight`` (the full-precision weight stays ``original``), its input
quantizer is the module ``layer.input_quantizer``, applied by a forward pre-hook.

A method built from plain quantizer modules only implements ``weight_quantizer`` and/or
``input_quantizer``; the base class wraps each returned module in a ``WeightSlot`` /
``InputSlot`` (which add the on/off switch of the training phases and calibration), and its
default export stores integer codes and a codebook per layer when the weight quantizer has a
``codes(weight) -> (codes, codebook)`` method.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

QUANTIZABLE = (nn.Conv2d, nn.Linear)
PARAM_BITS = 32
KINDS = ("weights", "activations")
CODES_FORMAT = "qbench-codes-v1"


@dataclass
class QuantReport:
    """What quantizing a model did."""

    weight_layers: list[str] = field(default_factory=list)
    activation_layers: list[str] = field(default_factory=list)
    skipped_layers: list[str] = field(default_factory=list)
    weight_levels: str | None = None
    act_levels: str | None = None
    sharing: str = "layerwise"
    init: str = "kmeans"

    def to_dict(self) -> dict:
        return asdict(self)


def select_layers(model: nn.Module, include: Iterable[str] | None, exclude: Iterable[str] | None,
                  key: str = "QuantPolicy") -> tuple[list[str], list[str]]:
    """The Conv2d/Linear layers to quantize, and the candidates left alone.

    Args:
        model: any model.
        include: module names to quantize; None means every Conv2d/Linear.
        exclude: module names to leave alone; None means the paper's default (the first conv
            and the last linear) when ``include`` is None, nothing otherwise.
        key: the config name used in error messages.

    Returns:
        ``(selected, skipped)`` module names.
    """
    modules = dict(model.named_modules())
    candidates = [n for n, m in modules.items() if isinstance(m, QUANTIZABLE)]
    for which, names in (("include", include), ("exclude", exclude)):
        for name in names or ():
            if name not in modules:
                raise ValueError(f"{key}.{which}: no module named {name!r} in the model")
            if not isinstance(modules[name], QUANTIZABLE):
                raise ValueError(f"{key}.{which}: module {name!r} is a "
                                 f"{type(modules[name]).__name__}, not Conv2d/Linear")
    if include is not None:
        chosen = list(include)
        skip = set(exclude or ())
    else:
        chosen = candidates
        if exclude is not None:
            skip = set(exclude)
        else:
            convs = [n for n in candidates if isinstance(modules[n], nn.Conv2d)]
            linears = [n for n in candidates if isinstance(modules[n], nn.Linear)]
            skip = set(convs[:1] + linears[-1:])
    selected = [n for n in chosen if n not in skip]
    return selected, [n for n in candidates if n not in selected]


def quantize_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer sees its input through ``module.input_quantizer``."""
    return (module.input_quantizer(args[0]),) + tuple(args[1:])


def feed(model: nn.Module, batches: Iterable, forward: Callable, num_samples: int, what: str) -> int:
    """Run ``forward(model, batch)`` over ``batches`` until ``num_samples`` samples were seen
    (the last batch whole), for calibration; returns the count. ``what`` names the caller in
    the error when there was no data."""
    seen = 0
    for batch in batches:
        seen += forward(model, batch)
        if seen >= num_samples:
            break
    if seen == 0:
        raise ValueError(f"{what} got no data")
    return seen


@torch.no_grad()
def write_plain_weight(model: nn.Module, name: str, weight: torch.Tensor) -> None:
    """Replace layer ``name``'s (parametrized) weight by the plain tensor ``weight`` of the same
    shape: how every export is loaded back."""
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"exported layer {name!r} is not in the model") from None
    if parametrize.is_parametrized(layer, "weight"):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    if tuple(weight.shape) != tuple(layer.weight.shape):
        raise ValueError(f"layer {name!r}: exported shape {tuple(weight.shape)} != model "
                         f"{tuple(layer.weight.shape)}")
    layer.weight.copy_(weight.to(layer.weight.dtype))


def unique(items: Iterable) -> list:
    """Items in order, each object once (shared quantizers appear under several layers)."""
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


class WeightSlot(nn.Module):
    """Parametrization of ``layer.weight`` around a method's weight quantizer module.

    Args:
        quantizer: ``quantizer(weight) -> quantized weight`` (its parameters are the
            method's learnable weight-quantizer parameters).
    """

    def __init__(self, quantizer: nn.Module) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.quantizer(weight) if self.enabled else weight

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # assigning to layer.weight stores the full-precision value
        return value


class InputSlot(nn.Module):
    """``layer.input_quantizer`` around a method's input quantizer module.

    While ``observing`` (calibration) inputs pass unchanged and are shown to the quantizer's
    ``observe(x)`` when it has one.
    """

    def __init__(self, quantizer: nn.Module) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.enabled = True
        self.observing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            observe = getattr(self.quantizer, "observe", None)
            if observe is not None:
                with torch.no_grad():
                    observe(x.detach())
            return x
        return self.quantizer(x) if self.enabled else x


# config fields that say what to quantize, not how: not options of a method
_LAYER_FIELDS = ("weights", "activations", "include", "exclude")


class SectionError(ValueError):
    """A bad key of a method's ``quant:`` section, ``key`` relative to it (``weights``,
    ``activations``, ``options``); reads ``<key>: <problem>``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


class OptionError(ValueError):
    """One of a method's own options (``quant.options.<key>``) is unknown or bad.

    ``key`` is the option's name (``variant.base`` for a nested one) and ``problem`` the rest of
    the message, so a config loader can name the key the way its file wrote it.
    """

    def __init__(self, key: str, problem: str, unknown: bool = False) -> None:
        super().__init__(f"quant.options.{key}: {problem}")
        self.key, self.problem, self.unknown = key, problem, unknown


def _default_forward(model: nn.Module, batch) -> int:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    model(x.to(next(model.parameters()).device))
    return x.shape[0]


class QuantMethod:
    """One quantization method: its modules, initialisation, schedule, modes, export and size.

    Subclasses set ``config_class`` (a frozen dataclass validated in ``__post_init__``) and are
    registered with ``@register_method(name)``. The defaults below serve methods built from
    plain quantizer modules (``weight_quantizer`` / ``input_quantizer``); a method with its own
    module structure (the paper's shared quantizers) overrides ``quantize`` and the queries.

    Class attributes:
        config_class: the method's config dataclass.
        modes: the method's switchable behaviours (the paper: ``("soft", "hard", "off")``);
            empty for a method that computes one way in training and evaluation.
        train_mode / eval_mode: the mode used for training / for the reported (deployed)
            evaluation; None when the method has no modes.
        uses_temperature: ``on_epoch`` reads the run's temperature schedule
            (``EpochPlan.t_weights`` / ``t_activations``).
        phased_training: the method trains in the paper's phases (weights, then activations,
            then both: Alg. 1); False trains weights and inputs together for as many epochs.
        weight_types / input_types: module classes found at the weight parametrization /
            ``input_quantizer`` places of a layer quantized by this method.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    modes: ClassVar[tuple[str, ...]] = ()
    train_mode: ClassVar[str | None] = None
    eval_mode: ClassVar[str | None] = None
    uses_temperature: ClassVar[bool] = False
    phased_training: ClassVar[bool] = False
    weight_types: ClassVar[tuple[type, ...]] = (WeightSlot,)
    input_types: ClassVar[tuple[type, ...]] = (InputSlot,)

    def __init__(self, config: Any) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"quantization method {self.name!r} takes a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        self.report: QuantReport | None = None  # set by quantize

    # -- building -------------------------------------------------------------------------
    @classmethod
    def config_from_section(cls, weights: str | None, activations: str | None, options: dict) -> Any:
        """The method's config from the YAML ``quant:`` section.

        Args:
            weights: ``quant.weights`` (a level-set name, or None for full-precision weights).
            activations: ``quant.activations`` (likewise).
            options: ``quant.options``, the method's own keys.

        Raises:
            OptionError naming the option when it is unknown; ValueError for a bad value.
        """
        known = cls.option_names()
        for key in options:
            if key not in known:
                raise OptionError(key, f"unknown option of method {cls.name!r} (known: {', '.join(known) or 'none'})",
                                  unknown=True)
        try:
            return cls.config_class(weights=weights, activations=activations, **options)
        except (SectionError, OptionError):
            raise
        except (TypeError, ValueError) as e:
            raise SectionError("options", str(e)) from None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The keys ``quant.options`` may hold: the config's fields but the level sets and layers."""
        return tuple(f.name for f in dataclasses.fields(cls.config_class) if f.name not in _LAYER_FIELDS)

    @classmethod
    def section_options(cls, config: Any) -> dict:
        """The method's own options of ``config`` as plain data, defaults included: the
        ``quant.options`` of a resolved run config (``config.yaml``, cache keys), from which
        ``config_from_section`` builds the same config again."""
        return {key: getattr(config, key) for key in cls.option_names()}

    @classmethod
    def example_config(cls) -> Any:
        """A small valid config that quantizes weights and inputs (binary weights, binary
        activations by default), for the tests that every registered method must pass."""
        return cls.config_from_section("binary", "act_binary", {})

    def weight_quantizer(self, name: str, layer: nn.Module) -> nn.Module | None:
        """A module quantizing ``layer``'s weight, initialised from its FP weight; None: keep FP."""
        return None

    def input_quantizer(self, name: str, layer: nn.Module) -> nn.Module | None:
        """A module quantizing ``layer``'s input; None: keep the input FP."""
        return None

    def quantize(self, model: nn.Module, include: Iterable[str] | None = None) -> QuantReport:
        """Put the method's quantizers on ``model`` in place.

        Args:
            model: any model with Conv2d/Linear layers.
            include: explicit layer names; None: the config's ``include``/``exclude`` if it
                has them, else every Conv2d/Linear but the first conv and the last linear.
        """
        if self.weight_modules(model) or self.input_modules(model):
            raise ValueError("model already has quantizers; quantize a fresh model")
        cfg = self.config
        include = include if include is not None else getattr(cfg, "include", None)
        selected, skipped = select_layers(model, include, getattr(cfg, "exclude", None), self.name)
        report = QuantReport(skipped_layers=skipped, weight_levels=getattr(cfg, "weights", None),
                             act_levels=getattr(cfg, "activations", None), sharing="layerwise", init="")
        for name in selected:
            layer = model.get_submodule(name)
            wq = self.weight_quantizer(name, layer)
            if wq is not None:
                parametrize.register_parametrization(layer, "weight", WeightSlot(wq).to(layer.weight.device))
                report.weight_layers.append(name)
            iq = self.input_quantizer(name, layer)
            if iq is not None:
                layer.input_quantizer = InputSlot(iq).to(layer.weight.device)
                layer.register_forward_pre_hook(quantize_input)
                report.activation_layers.append(name)
        if not report.weight_layers and not report.activation_layers:
            raise ValueError(f"method {self.name!r} put no quantizer on the model (no layer selected, "
                             "or neither weights nor activations quantized)")
        self.report = report
        return report

    # -- finding the method's modules -----------------------------------------------------
    def weight_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """Layer name -> its weight quantizer module (one object for all layers when shared)."""
        out = {}
        for name, m in model.named_modules(remove_duplicate=False):
            if parametrize.is_parametrized(m, "weight"):
                for p in m.parametrizations.weight:
                    if isinstance(p, self.weight_types):
                        out[name] = p
        return out

    def input_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """Layer name -> the module quantizing its input."""
        return {name: m.input_quantizer for name, m in model.named_modules(remove_duplicate=False)
                if isinstance(getattr(m, "input_quantizer", None), self.input_types)}

    def parameters(self, model: nn.Module, kind: str | None = None) -> list[nn.Parameter]:
        """The method's learnable parameters on ``model``, each once.

        Args:
            model: a quantized model.
            kind: "weights" (of weight quantizers), "activations" (of input quantizers) or
                None (both).
        """
        if kind not in (None,) + KINDS:
            raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
        modules = []
        if kind in (None, "weights"):
            modules += list(self.weight_modules(model).values())
        if kind in (None, "activations"):
            modules += list(self.input_modules(model).values())
        return unique(p for m in unique(modules) for p in m.parameters())

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The method's parameters as optimizer groups, each ``{"params", "lr_mult",
        "decay_mult"}`` (times the run's lr / weight decay). Default: one group at the network's
        lr without weight decay (scales and thresholds, not weights)."""
        return [{"params": self.parameters(model), "lr_mult": 1.0, "decay_mult": 0.0}]

    # -- training -------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, model: nn.Module, batches: Iterable, num_samples: int = 1000,
                  forward: Callable[[nn.Module, object], int] | None = None) -> dict[str, float]:
        """Initialise the input quantizers from data seen by the full-precision model.

        The default runs the model with every quantizer off until ``num_samples`` inputs were
        seen, showing each quantized layer's input to its quantizer's ``observe(x)``, then calls
        the quantizer's ``finish_observing()`` (both optional).

        Returns:
            Layer name -> the observed max |input|.
        """
        inputs = self.input_modules(model)
        if not inputs:
            return {}
        forward = forward or _default_forward
        maxima: dict[int, float] = {}

        def record(slot: nn.Module, args: tuple) -> None:
            maxima[id(slot)] = max(maxima.get(id(slot), 0.0), float(args[0].detach().abs().max()))

        slots = unique(inputs.values())
        weights = unique(self.weight_modules(model).values())
        was = [(m, m.enabled) for m in weights]
        hooks = [s.register_forward_pre_hook(record) for s in slots]
        was_training = model.training
        model.eval()
        for m in weights:
            m.enabled = False
        for s in slots:
            s.observing = True
        try:
            feed(model, batches, forward, num_samples, "calibrate")
        finally:
            for h in hooks:
                h.remove()
            for s in slots:
                s.observing = False
            for m, enabled in was:
                m.enabled = enabled
            model.train(was_training)
        for s in slots:
            finish = getattr(s.quantizer, "finish_observing", None)
            if finish is not None:
                finish()
        return {name: maxima.get(id(s), 0.0) for name, s in inputs.items()}

    def on_epoch(self, model: nn.Module, step: Any) -> None:
        """What the method does before each training epoch (``step``: the epoch's
        ``qbench.train.phases.EpochPlan``: phase, epoch in phase, lr, temperatures). Nothing by
        default."""

    def on_epoch_end(self, model: nn.Module, step: Any) -> None:
        """What the method does after each epoch's training steps, before that epoch's
        evaluation and checkpoint (``step`` as in ``on_epoch``). Nothing by default."""

    def set_enabled(self, model: nn.Module, weights: bool | None = None,
                    activations: bool | None = None) -> None:
        """Switch weight and/or input quantization on or off (the training phases)."""
        for modules, on in ((self.weight_modules(model), weights), (self.input_modules(model), activations)):
            if on is not None:
                for m in unique(modules.values()):
                    m.enabled = bool(on)

    def set_mode(self, model: nn.Module, mode: str) -> None:
        """Switch every quantizer of the method to ``mode`` (one of ``modes``)."""
        if mode not in self.modes:
            raise ValueError(f"quantization method {self.name!r} has no mode {mode!r} "
                             f"(modes: {', '.join(self.modes) or 'none'})")

    def current_mode(self, model: nn.Module) -> str | None:
        """The mode the quantizers of ``model`` are in (None for a method without modes)."""
        return None

    # -- export and size --------------------------------------------------------------------
    def _codes(self, model: nn.Module, skip: set[str] = frozenset()) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for name, slot in self.weight_modules(model).items():
            if name in skip:
                continue
            codes = getattr(slot.quantizer, "codes", None)
            if codes is None:
                raise NotImplementedError(f"method {self.name!r}: the weight quantizer of {name!r} "
                                          "has no codes(weight) -> (codes, codebook)")
            original = model.get_submodule(name).parametrizations.weight.original.detach()
            index, codebook = codes(original)
            out[name] = (index, codebook.detach().reshape(-1))
        return out

    @property
    def exports_codes(self) -> bool:
        """The method stores weights as integer codes (export / load_export work); a method
        whose weight quantizers have no ``codes`` sets it False (no model_hard.pt then)."""
        return True

    @torch.no_grad()
    def export(self, model: nn.Module) -> dict:
        """Integer codes and codebook of every quantized weight, and each input quantizer's
        state: only tensors, numbers, strings and lists (``torch.load(..., weights_only=True)``)."""
        weights = {}
        for name, (index, codebook) in self._codes(model).items():
            dtype = torch.uint8 if codebook.numel() <= 256 else torch.int16
            weights[name] = {"codes": index.to(dtype).cpu(), "codebook": codebook.cpu().clone()}
        inputs = {name: {k: v.detach().cpu().clone() for k, v in s.quantizer.state_dict().items()}
                  for name, s in self.input_modules(model).items()}
        return {"format": CODES_FORMAT, "method": self.name, "weights": weights, "activations": inputs}

    @torch.no_grad()
    def load_export(self, model: nn.Module, exported: dict) -> None:
        """Write exported weights into ``model`` as plain float weights (parametrizations
        removed); input quantizers, if the model has them, get their exported state."""
        if exported.get("format") != CODES_FORMAT or exported.get("method") != self.name:
            raise ValueError(f"not a {CODES_FORMAT} export of method {self.name!r} "
                             f"(format={exported.get('format')!r}, method={exported.get('method')!r})")
        for name, entry in exported["weights"].items():
            write_plain_weight(model, name, entry["codebook"][entry["codes"].long()])
        inputs = self.input_modules(model)
        for name, state in exported["activations"].items():
            if name in inputs:
                inputs[name].quantizer.load_state_dict(state)

    def weight_storage_bits(self, model: nn.Module) -> dict[str, int]:
        """Layer name -> bits to store its quantized weight (codes plus the method's numbers
        per quantizer, each shared quantizer counted once). Default: ``ceil(log2 |codebook|)``
        bits per weight plus 32 bits per codebook entry when the weight quantizer has
        ``codes``; else its ``bits`` attribute per weight plus 32 bits per element of its
        parameters."""
        out = {}
        for name, slot in self.weight_modules(model).items():
            quantizer = slot.quantizer
            numel = model.get_submodule(name).parametrizations.weight.original.numel()
            if hasattr(quantizer, "codes"):
                continue
            bits = getattr(quantizer, "bits", None)
            if not isinstance(bits, int) or bits < 1:
                raise NotImplementedError(f"method {self.name!r}: the weight quantizer of {name!r} has "
                                          "neither codes(weight) nor an integer bits attribute")
            out[name] = numel * bits + sum(p.numel() for p in quantizer.parameters()) * PARAM_BITS
        if len(out) < len(self.weight_modules(model)):
            for name, (index, codebook) in self._codes(model, skip=set(out)).items():
                n = codebook.numel()
                out[name] = index.numel() * max(1, math.ceil(math.log2(n))) + n * PARAM_BITS
        return out

    def size_bits(self, model: nn.Module) -> dict:
        """Storage of the model: full precision vs. quantized weights (Table 8).

        Every network parameter costs 32 bits in the FP model (the method's own parameters
        are not part of it); quantized weights cost ``weight_storage_bits``.

        Returns:
            ``{"fp_bits", "quantized_bits", "ratio", "weight_bits", "quantized_weight_bits"}``.
        """
        own = {id(p) for p in self.parameters(model)}
        fp_bits = sum(p.numel() for p in model.parameters() if id(p) not in own) * PARAM_BITS
        weight_bits = sum(model.get_submodule(n).parametrizations.weight.original.numel()
                          for n in self.weight_modules(model)) * PARAM_BITS
        quant_weight_bits = sum(self.weight_storage_bits(model).values())
        quant_bits = fp_bits - weight_bits + quant_weight_bits
        return {"fp_bits": fp_bits, "quantized_bits": quant_bits,
                "ratio": fp_bits / quant_bits if quant_bits else 0.0,
                "weight_bits": weight_bits, "quantized_weight_bits": quant_weight_bits}


def model_size_bits(model: nn.Module, method: QuantMethod | None = None) -> dict:
    """Storage of ``model`` (Table 8): ``method.size_bits(model)`` for a model ``method``
    quantized; for a full-precision model (``method`` None) every parameter costs 32 bits.

    Returns:
        ``{"fp_bits", "quantized_bits", "ratio", "weight_bits", "quantized_weight_bits"}``.
    """
    if method is not None:
        return method.size_bits(model)
    fp_bits = sum(p.numel() for p in model.parameters()) * PARAM_BITS
    return {"fp_bits": fp_bits, "quantized_bits": fp_bits, "ratio": 1.0 if fp_bits else 0.0,
            "weight_bits": 0, "quantized_weight_bits": 0}


_REGISTRY: dict[str, type[QuantMethod]] = {}


def register_method(name: str) -> Callable[[type[QuantMethod]], type[QuantMethod]]:
    """Class decorator: register a ``QuantMethod`` subclass under ``name`` (``quant.method``)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"method name must be an identifier, got {name!r}")

    def register(cls: type[QuantMethod]) -> type[QuantMethod]:
        if not (isinstance(cls, type) and issubclass(cls, QuantMethod)):
            raise TypeError(f"@register_method({name!r}) needs a QuantMethod subclass, got {cls!r}")
        params = getattr(cls.config_class, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise TypeError(f"method {name!r}: config_class must be a frozen dataclass")
        old = _REGISTRY.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"quantization method {name!r} is already registered ({old.__qualname__})")
        for other, registered in _REGISTRY.items():
            if other != name and registered.config_class is cls.config_class:
                raise ValueError(f"method {name!r}: config class {cls.config_class.__name__} already "
                                 f"belongs to method {other!r}")
        if cls.train_mode is not None and cls.train_mode not in cls.modes or \
                cls.eval_mode is not None and cls.eval_mode not in cls.modes:
            raise ValueError(f"method {name!r}: train_mode/eval_mode must be among its modes {cls.modes}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def available_methods() -> tuple[str, ...]:
    """Names of the registered methods, in registration order."""
    return tuple(_REGISTRY)


def get_method(name: str) -> type[QuantMethod]:
    """The method class registered as ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown quantization method {name!r}; known: "
                         f"{', '.join(available_methods())}") from None


def method_for(config: Any) -> QuantMethod:
    """The method whose config class ``config`` is, bound to it."""
    for cls in _REGISTRY.values():
        if type(config) is cls.config_class:
            return cls(config)
    raise ValueError(f"{type(config).__name__} is the config of no registered quantization method; "
                     f"known: {', '.join(available_methods())}")


def quantize_(model: nn.Module, config: Any, include: Iterable[str] | None = None) -> QuantMethod:
    """Quantize ``model`` in place with the method of ``config``; returns the bound method
    (its ``report`` attribute says which layers got quantizers).

    Args:
        model: any model.
        config: a registered method's config (e.g. ``QuantPolicy`` for the paper's method).
        include: explicit layer names (detection quantizes a chosen subset).
    """
    method = method_for(config)
    method.quantize(model, include)
    return method
