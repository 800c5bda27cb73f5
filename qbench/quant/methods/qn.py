"""The paper's method, *Quantization Networks*: soft (Eq. 7) / hard (Eq. 12) quantizers with
learnable alpha/beta, k-means biases and a temperature that grows with the epoch.

The config is ``QuantPolicy``; the modules, calibration, export and size are those of
``qbench.quant.{modules,model,export}``, which this class only routes the interface to.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

from torch import nn

from .. import export as qexport
from .. import model as qmodel
from ..init import ALPHA_INITS
from ..model import SHARINGS, QuantPolicy
from ..modules import INITS, MODES, ActivationQuantizer, WeightQuantizer
from ..variant import QuantVariant
from .base import PARAM_BITS, OptionError, QuantMethod, QuantReport, SectionError, register_method, unique

# the keys of the YAML quant: section that configure this method (QuantPolicy fields)
SECTION_KEYS = ("init", "sharing", "learn_biases", "weight_alpha_init", "act_alpha_init", "act_init", "variant",
                "act_lr_mult")


def _check_options(options: dict) -> None:
    """Each option's own one-line error (``QuantPolicy`` would name its field, not the key)."""
    choices = {"init": INITS, "sharing": SHARINGS, "weight_alpha_init": ALPHA_INITS, "act_alpha_init": ALPHA_INITS}
    for key, allowed in choices.items():
        if key in options and options[key] not in allowed:
            raise OptionError(key, f"must be one of {allowed}, got {options[key]!r}")
    if options.get("act_init") is not None and options["act_init"] not in INITS:
        raise OptionError("act_init", f"must be null or one of {INITS}, got {options['act_init']!r}")
    if "learn_biases" in options and not isinstance(options["learn_biases"], bool):
        raise OptionError("learn_biases", "must be true or false")
    mult = options.get("act_lr_mult", 1.0)
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 0 <= mult < math.inf:
        raise OptionError("act_lr_mult", f"must be a number >= 0, got {mult!r}")
    if "variant" in options:
        try:
            QuantVariant.from_config(options["variant"], "variant")
        except ValueError as e:
            # "variant: ..." or "variant.<choice>: ...", as from_config names it
            key, problem = str(e).split(": ", 1)
            raise OptionError(key, problem) from None


def set_quantizer_temperatures(model: nn.Module, t_weights: float | None, t_activations: float | None) -> None:
    """T of the weight quantizers and of the activation quantizers (None: leave it)."""
    for quantizers, T in ((qmodel.weight_quantizers(model), t_weights),
                          (qmodel.activation_quantizers(model), t_activations)):
        if T is None:
            continue
        for q in unique(quantizers.values()):
            q.state.set_temperature(T)


@register_method("qn")
class QuantizationNetworks(QuantMethod):
    """Quantization Networks (Yang et al., CVPR 2019). Modes: "soft" (training), "hard"
    (the deployed network) and "off"."""

    config_class = QuantPolicy
    modes = MODES
    train_mode = "soft"
    eval_mode = "hard"
    uses_temperature = True
    phased_training = True
    weight_types = (WeightQuantizer,)
    input_types = (ActivationQuantizer,)

    @classmethod
    def config_from_section(cls, weights: str | None, activations: str | None, options: dict) -> QuantPolicy:
        for key in options:
            if key not in SECTION_KEYS:
                raise OptionError(key, f"unknown option of method {cls.name!r} (known: {', '.join(SECTION_KEYS)})",
                                  unknown=True)
        _check_options(options)
        try:
            return QuantPolicy(weights, activations, **options)
        except ValueError as e:
            raise SectionError("options", str(e)) from None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return SECTION_KEYS

    @classmethod
    def section_options(cls, config: QuantPolicy) -> dict:
        out = {key: getattr(config, key) for key in SECTION_KEYS}
        out["variant"] = config.variant.to_config()  # "paper", "released" or its mapping of choices
        return out

    def quantize(self, model: nn.Module, include: Iterable[str] | None = None) -> QuantReport:
        policy = self.config
        if include is not None:
            policy = dataclasses.replace(policy, include=tuple(include))
        self.report = qmodel.quantize_model(model, policy)
        return self.report

    def parameters(self, model: nn.Module, kind: str | None = None) -> list[nn.Parameter]:
        if kind is None:
            # model order, as optimizers of existing checkpoints hold them
            return qmodel.quant_parameters(model)
        return super().parameters(model, kind)

    def param_groups(self, model: nn.Module) -> list[dict]:
        """One group at the network's lr; with ``act_lr_mult`` != 1 the activation quantizers'
        alpha and beta get a group of their own at that multiple."""
        mult = float(self.config.act_lr_mult)
        if mult == 1.0:
            return super().param_groups(model)
        act = {id(p) for p in self.parameters(model, "activations")}
        params = self.parameters(model)
        return [{"params": [p for p in params if id(p) not in act], "lr_mult": 1.0, "decay_mult": 0.0},
                {"params": [p for p in params if id(p) in act], "lr_mult": mult, "decay_mult": 0.0}]

    def calibrate(self, model: nn.Module, batches: Iterable, num_samples: int = 1000,
                  forward: Callable[[nn.Module, object], int] | None = None) -> dict[str, float]:
        return qmodel.calibrate_activations(model, batches, num_samples, forward=forward)

    def on_epoch(self, model: nn.Module, step: Any) -> None:
        """T of each kind of quantizer from the epoch plan (T = k x the epochs it has trained)."""
        set_quantizer_temperatures(model, step.t_weights, step.t_activations)

    def set_enabled(self, model: nn.Module, weights: bool | None = None,
                    activations: bool | None = None) -> None:
        qmodel.set_enabled(model, weights=weights, activations=activations)

    def set_mode(self, model: nn.Module, mode: str) -> None:
        super().set_mode(model, mode)
        qmodel.set_mode(model, mode)

    def current_mode(self, model: nn.Module) -> str | None:
        for m in model.modules():
            if isinstance(m, (WeightQuantizer, ActivationQuantizer)):
                return m.state.mode
        return None

    def export(self, model: nn.Module) -> dict:
        return qexport.export_hard_model(model)

    def load_export(self, model: nn.Module, exported: dict) -> None:
        qexport.load_hard_model(model, exported)

    def weight_storage_bits(self, model: nn.Module) -> dict[str, int]:
        """``ceil(log2 |Y|)`` bits per weight plus 32 bits per alpha, beta and bias of each
        quantizer (a shared quantizer once, with its first layer)."""
        out, counted = {}, set()
        for name, q in qmodel.weight_quantizers(model).items():
            numel = model.get_submodule(name).parametrizations.weight.original.numel()
            out[name] = numel * q.levels.bits
            if id(q) not in counted:
                counted.add(id(q))
                out[name] += (2 + q.levels.n) * PARAM_BITS
        return out
