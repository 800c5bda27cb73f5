"""Putting quantizers on a whole model: policy, placement, calibration, global switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from .levels import LevelSet
from .init import ALPHA_INITS
from .methods.base import QUANTIZABLE, QuantReport, feed, quantize_input, select_layers, unique
from .modules import INITS, ActivationQuantizer, QuantState, Quantizer, WeightQuantizer
from .variant import QuantVariant

SHARINGS = ("layerwise", "shared")


@dataclass(frozen=True)
class QuantPolicy:
    """Which layers get which quantizers.

    Args:
        weight_levels: level-set name for weights, or None to keep weights full precision.
        act_levels: level-set name for activations (inputs of quantized layers), or None.
        init: "kmeans" (paper) or "linear" (Table 5 ablation) bias initialisation.
        act_init: bias initialisation of the activation quantizers; None means ``init``.
        sharing: "layerwise" (one quantizer per layer and kind) or "shared" (one for all
            layers, Table 6).
        include: module names to quantize; None means every Conv2d/Linear.
        exclude: module names to leave alone; None means the paper's default (the first conv
            and the last linear) when ``include`` is None, nothing otherwise.
        learn_biases: train the biases too (the paper freezes them).
        weight_alpha_init: alpha of weight quantizers: "inverse_beta" (the paper) or
            "least_squares".
        act_alpha_init: alpha of activation quantizers: "inverse_beta" (the paper) or
            "least_squares" (docs/quantizer.md).
        variant: the paper's quantization function ("paper", the default) or the authors'
            released code's choices: "released" (all of them), a mapping of choices such as
            ``{"clamp": True}`` or ``{"base": "released", "strict_step": False}``, or a
            ``QuantVariant`` (qbench.quant.variant; held as one after construction).
        act_lr_mult: learning-rate multiplier of the activation quantizers' own parameters
            (alpha, beta; 1 = the network's lr, the paper). beta's gradient sums over every
            activation of a batch and grows with T, so at the network's lr a few steps can move
            it by a fifth of its value (docs/quantizer.md); 0 freezes them at their calibration.
    """

    weight_levels: str | None = None
    act_levels: str | None = None
    init: str = "kmeans"
    sharing: str = "layerwise"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    learn_biases: bool = False
    weight_alpha_init: str = "inverse_beta"
    act_alpha_init: str = "inverse_beta"
    act_init: str | None = None
    variant: QuantVariant = QuantVariant()
    act_lr_mult: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", QuantVariant.from_config(self.variant, "QuantPolicy.variant"))
        if isinstance(self.act_lr_mult, bool) or not isinstance(self.act_lr_mult, (int, float)) \
                or not 0 <= self.act_lr_mult < float("inf"):
            raise ValueError(f"QuantPolicy.act_lr_mult must be a number >= 0, got {self.act_lr_mult!r}")
        for key in ("weight_levels", "act_levels"):
            name = getattr(self, key)
            if name is not None:
                try:
                    LevelSet.from_name(name)
                except ValueError as e:
                    raise ValueError(f"QuantPolicy.{key}: {e}") from None
        if self.act_levels is not None and LevelSet.from_name(self.act_levels).values[0] < 0:
            raise ValueError(f"QuantPolicy.act_levels: {self.act_levels!r} has negative levels; "
                             "activations after ReLU need a non-negative set (act_*)")
        if self.init not in INITS:
            raise ValueError(f"QuantPolicy.init must be one of {INITS}, got {self.init!r}")
        if self.act_init is not None and self.act_init not in INITS:
            raise ValueError(f"QuantPolicy.act_init must be one of {INITS} or None, got {self.act_init!r}")
        for key in ("weight_alpha_init", "act_alpha_init"):
            if getattr(self, key) not in ALPHA_INITS:
                raise ValueError(f"QuantPolicy.{key} must be one of {ALPHA_INITS}, "
                                 f"got {getattr(self, key)!r}")
        if self.sharing not in SHARINGS:
            raise ValueError(f"QuantPolicy.sharing must be one of {SHARINGS}, got {self.sharing!r}")
        for key in ("include", "exclude"):
            names = getattr(self, key)
            if names is not None:
                if isinstance(names, str):
                    raise ValueError(f"QuantPolicy.{key} must be a list of module names, not a string")
                object.__setattr__(self, key, tuple(names))


def quantize_model(model: nn.Module, policy: QuantPolicy) -> QuantReport:
    """Attach the paper's quantizers to ``model`` in place and initialise the weight quantizers.

    Weight quantizers are parametrizations of ``layer.weight`` (so the model class and its
    forward stay unchanged); activation quantizers quantize each selected layer's input
    (the paper's ``X^(m)``, the output of the preceding ReLU/pooling). Activation quantizers
    still need ``calibrate_activations`` before training.

    Args:
        model: any PyTorch model.
        policy: what to quantize and how.

    Returns:
        A ``QuantReport`` listing the quantized layers.
    """
    if any(isinstance(m, Quantizer) for m in model.modules()):
        raise ValueError("model already has quantizers; quantize a fresh model")
    selected, skipped = select_layers(model, policy.include, policy.exclude)
    if not selected and (policy.weight_levels or policy.act_levels):
        raise ValueError("QuantPolicy selects no layer to quantize")
    modules = dict(model.named_modules())
    # one state per kind: the paper's phases give weights and activations their own T (weights
    # keep the T they reached while activations start soft), so the kinds must not share one
    weight_state, act_state = QuantState(), QuantState()
    report = QuantReport(skipped_layers=skipped, weight_levels=policy.weight_levels,
                         act_levels=policy.act_levels, sharing=policy.sharing, init=policy.init)

    if policy.weight_levels is not None:
        shared = None
        if policy.sharing == "shared":
            shared = WeightQuantizer(policy.weight_levels, weight_state, policy.learn_biases,
                                     policy.weight_alpha_init,
                                     policy.variant).to(modules[selected[0]].weight.device)
            weights = torch.cat([modules[n].weight.detach().reshape(-1) for n in selected])
            shared.initialize(weights, init=policy.init)
        for name in selected:
            layer = modules[name]
            wq = shared
            if wq is None:
                # on the layer's device: a quantizer left on the CPU would make every GPU
                # call take the torch path and copy its alpha/beta gradients back (a sync each)
                wq = WeightQuantizer(policy.weight_levels, weight_state, policy.learn_biases,
                                     policy.weight_alpha_init, policy.variant).to(layer.weight.device)
                wq.initialize(layer.weight.detach(), init=policy.init)
            parametrize.register_parametrization(layer, "weight", wq)
            report.weight_layers.append(name)

    if policy.act_levels is not None:
        def new_act_quantizer(device: torch.device) -> ActivationQuantizer:
            return ActivationQuantizer(policy.act_levels, act_state, policy.learn_biases,
                                       policy.act_init or policy.init,
                                       alpha_init=policy.act_alpha_init, variant=policy.variant).to(device)

        shared = (new_act_quantizer(modules[selected[0]].weight.device) if policy.sharing == "shared"
                  else None)
        for name in selected:
            layer = modules[name]
            layer.input_quantizer = shared or new_act_quantizer(layer.weight.device)
            layer.register_forward_pre_hook(quantize_input)
            report.activation_layers.append(name)
    return report


def weight_quantizers(model: nn.Module) -> dict[str, WeightQuantizer]:
    """Layer name -> its weight quantizer (the same object for every layer when shared)."""
    out = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:
                if isinstance(p, WeightQuantizer):
                    out[name] = p
    return out


def activation_quantizers(model: nn.Module) -> dict[str, ActivationQuantizer]:
    """Layer name -> the quantizer of its input."""
    return {name: m.input_quantizer for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(getattr(m, "input_quantizer", None), ActivationQuantizer)}


def _all_quantizers(model: nn.Module) -> Iterator[Quantizer]:
    return iter(unique(m for m in model.modules() if isinstance(m, Quantizer)))


def set_temperature(model: nn.Module, T: float) -> None:
    """Set T of Eq. 7 for every quantizer of ``model``."""
    for q in _all_quantizers(model):
        q.state.set_temperature(T)


def set_mode(model: nn.Module, mode: str) -> None:
    """"soft" (Eq. 7), "hard" (Eq. 12) or "off" for every quantizer of ``model``."""
    for q in _all_quantizers(model):
        q.state.set_mode(mode)


def set_enabled(model: nn.Module, weights: bool | None = None, activations: bool | None = None) -> None:
    """Switch weight and/or activation quantization on or off (the paper's training phases)."""
    for q in _all_quantizers(model):
        if isinstance(q, WeightQuantizer) and weights is not None:
            q.enabled = bool(weights)
        if isinstance(q, ActivationQuantizer) and activations is not None:
            q.enabled = bool(activations)


def quant_parameters(model: nn.Module) -> list[nn.Parameter]:
    """alpha, beta (and learnable biases) of every quantizer, each once."""
    params, seen = [], set()
    for q in _all_quantizers(model):
        for p in q.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _default_forward(model: nn.Module, batch) -> int:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    model(x.to(next(model.parameters()).device))
    return x.shape[0]


@torch.no_grad()
def calibrate_activations(model: nn.Module, batches: Iterable, num_samples: int = 1000,
                          init: str | None = None,
                          forward: Callable[[nn.Module, object], int] | None = None) -> dict[str, float]:
    """Initialise every activation quantizer from the full-precision model (Sec. 4.1).

    Runs the model with all quantization off until ``num_samples`` inputs were seen, records
    each quantized layer's input max (q) and a sample of its values for the k-means biases.

    Args:
        model: a model prepared by ``quantize_model``.
        batches: input tensors or (input, target) pairs, or anything ``forward`` understands.
        num_samples: how many samples to look at (the paper uses 1000); the last batch is
            used whole.
        init: "kmeans" or "linear"; defaults to each quantizer's own (the policy's).
        forward: ``forward(model, batch) -> number of samples in the batch``, for models
            that are not called as ``model(x)`` (e.g. detectors).

    Returns:
        Layer name -> observed max activation.
    """
    acts = activation_quantizers(model)
    if not acts:
        return {}
    forward = forward or _default_forward
    quantizers = unique(acts.values())
    # the full-precision model: every quantizer off, the weights' too (they have their own state)
    states = {id(q.state): (q.state, q.state.mode) for q in _all_quantizers(model)}
    was_training = model.training
    model.eval()
    for q in quantizers:
        q.start_observing()
    for st, _ in states.values():
        st.set_mode("off")
    try:
        feed(model, batches, forward, num_samples, "calibrate_activations")
    finally:
        for st, mode in states.values():
            st.set_mode(mode)
        model.train(was_training)
    maxima = {id(q): q.finish_observing(init) for q in quantizers}
    return {name: maxima[id(q)] for name, q in acts.items()}


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def batchnorm_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BatchNorm's running statistics (``load_state_dict(strict=False)`` puts
    them back)."""
    names = {id(m): n for n, m in model.named_modules()}
    out = {}
    for bn in batchnorm_layers(model):
        prefix = f"{names[id(bn)]}." if names[id(bn)] else ""
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            out[prefix + key] = getattr(bn, key).detach().clone()
    return out


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable, num_samples: int,
                         forward: Callable[[nn.Module, object], int] | None = None) -> int:
    """Recompute every BatchNorm's running statistics as the model computes now.

    A model trained in one mode and evaluated in another (soft Eq. 7 in training, hard Eq. 12
    in evaluation) gathers its statistics from the soft forward; at low T the hard layers'
    outputs differ in scale (measured: about 2x at mini), so the stored statistics no longer
    normalise them. Run this with the quantizers in the evaluated mode: each BatchNorm's
    running mean and variance become the plain average over ``num_samples`` inputs (the last
    batch whole); everything else is in evaluation mode and no parameter changes.

    Args:
        model: the model, its quantizers in the mode to be evaluated.
        batches: input tensors or (input, target) pairs, as for ``calibrate_activations``.
        num_samples: how many inputs to average over.
        forward: ``forward(model, batch) -> number of samples`` for models not called as
            ``model(x)``.

    Returns:
        The number of inputs seen (0 when the model has no BatchNorm).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in layers]
    model.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    try:
        # the weights do not change here: quantize them once, not once per batch
        with parametrize.cached():
            return feed(model, batches, forward or _default_forward, num_samples, "reestimate_batchnorm")
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        model.train(was_training)
