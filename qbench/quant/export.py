"""Export of a model quantized by the paper's method to integer codes, and back."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .functional import NonFiniteError
from .levels import LevelSet
from .methods.base import write_plain_weight
from .model import activation_quantizers, weight_quantizers
from .modules import Quantizer

FORMAT = "qbench-hard-v1"


def _params(q: Quantizer) -> dict:
    out = {"levels": list(q.levels.values), "levels_name": q.levels.name,
           "zero_centered": q.levels.zero_centered,
           "alpha": q.alpha.detach().cpu().clone(), "beta": q.beta.detach().cpu().clone(),
           "biases": q.biases.detach().cpu().clone()}
    if q.variant.strict_step:
        # the released code's hard step [beta x - b > 0]: only such exports carry the key, so
        # an export of the paper's quantizer is what it always was
        out["strict_step"] = True
    return out


@torch.no_grad()
def export_hard_model(model: nn.Module) -> dict:
    """Integer codes of every quantized weight plus each quantizer's (alpha, beta, biases).

    The result holds only tensors, numbers, strings and lists, so it can be saved with
    ``torch.save`` and read back with ``torch.load(..., weights_only=True)``.
    """
    weights = {}
    for name, q in weight_quantizers(model).items():
        layer = model.get_submodule(name)
        original = layer.parametrizations.weight.original.detach()
        # bucketize puts NaN and +inf on the top code: an export would hide a diverged weight
        for what, t in (("weight", original), ("alpha", q.alpha), ("beta", q.beta), ("biases", q.biases)):
            if not torch.isfinite(t).all():
                raise NonFiniteError(f"export_hard_model: {name}: non-finite {what}; nothing exported")
        # Eq. 1's A(0) = 1 (right=True), or the strict step of the released code (right=False)
        codes = torch.bucketize(original * q.beta.detach(), q.biases.detach(), right=not q.variant.strict_step)
        dtype = torch.uint8 if q.levels.n < 256 else torch.int16
        weights[name] = {"codes": codes.to(dtype).cpu(), **_params(q)}
    acts = {}
    for name, q in activation_quantizers(model).items():
        if not all(torch.isfinite(t).all() for t in (q.alpha, q.beta, q.biases)):
            raise NonFiniteError(f"export_hard_model: {name}: non-finite activation quantizer parameters")
        acts[name] = _params(q)
    return {"format": FORMAT, "weights": weights, "activations": acts}


def dequantize(entry: dict) -> torch.Tensor:
    """Weights of one exported layer: ``alpha * (Y_k - Y_0 - o)``."""
    levels = LevelSet(tuple(entry["levels"]), entry["levels_name"], entry["zero_centered"])
    outputs = levels.outputs_tensor(dtype=entry["alpha"].dtype)
    return outputs[entry["codes"].long()] * entry["alpha"]


@torch.no_grad()
def load_hard_model(model: nn.Module, exported: dict) -> None:
    """Write the exported integer weights back into ``model`` as plain float weights.

    Weight parametrizations are removed (the weights are already quantized); activation
    quantizers stay and should be used in "hard" mode, with the hard step of the export (an
    export of a strict-step quantizer makes them strict, any other makes them Eq. 1's).

    Args:
        model: a model of the same architecture (quantized or not).
        exported: the output of ``export_hard_model``.
    """
    if exported.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} export (format={exported.get('format')!r})")
    for name, entry in exported["weights"].items():
        write_plain_weight(model, name, dequantize(entry))
    acts = activation_quantizers(model)
    for name, entry in exported["activations"].items():
        if name in acts:
            q = acts[name]
            q.alpha.copy_(entry["alpha"])
            q.beta.copy_(entry["beta"])
            q.biases.copy_(entry["biases"])
            q.initialized.fill_(True)
            strict = bool(entry.get("strict_step", False))
            if q.variant.strict_step != strict:
                q.variant = dataclasses.replace(q.variant, strict_step=strict)
