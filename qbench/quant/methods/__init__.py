"""Quantization methods behind one interface (``QuantMethod``) and one registry.

Adding a method is one module with a ``@register_method("name")`` class plus its import
below (docs/extending.md); ``quant.method`` in a run config names it.
"""

from .base import (
    CODES_FORMAT,
    InputSlot,
    OptionError,
    QuantMethod,
    QuantReport,
    WeightSlot,
    available_methods,
    get_method,
    method_for,
    model_size_bits,
    quantize_,
    register_method,
    select_layers,
)
from . import qn  # noqa: F401  (registers "qn", the paper's method)
from . import baselines  # noqa: F401  (registers the baselines of Tables 1-3: bwn, twn, dorefa, lsq, ...)

DEFAULT_METHOD = "qn"

__all__ = [
    "CODES_FORMAT", "DEFAULT_METHOD", "InputSlot", "OptionError", "QuantMethod", "QuantReport", "WeightSlot",
    "available_methods", "get_method", "method_for", "model_size_bits", "quantize_", "register_method", "select_layers",
]
