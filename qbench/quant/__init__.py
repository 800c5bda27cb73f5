"""The quantization function of *Quantization Networks* and the tools to put it on a model.

Layers, from the bottom up:
- ``levels``: target level sets Y (Sec. 3.1).
- ``functional``: Eq. 7 (soft, with the Eqs. 8-11 backward) and Eq. 12 (hard).
- ``init``: Sec. 4.1 initialisation (beta, exact 1-D k-means biases, linear biases).
- ``modules``: learnable quantizers sharing one temperature/mode state.
- ``model``: ``quantize_model`` with a ``QuantPolicy``, calibration, global switches.
- ``schedule``: temperature schedules; ``export``: integer codes and model size.
- ``methods``: the method interface and registry; the paper's method is ``"qn"``, callers
  (trainers, detection hooks, export, model size) go through ``get_method`` / ``quantize_``.
"""

# first: the method modules import the layers below, which import methods.base
from .methods import (
    DEFAULT_METHOD,
    OptionError,
    QuantMethod,
    available_methods,
    get_method,
    method_for,
    model_size_bits,
    quantize_,
    register_method,
)
from .export import dequantize, export_hard_model, load_hard_model
from .functional import hard_quantize, hard_quantize_reference, soft_quantize, soft_quantize_reference
from .init import ALPHA_INITS, initial_beta, kmeans_1d, kmeans_biases, least_squares_alpha, linear_biases
from .levels import PAPER_ACTIVATION_SETS, PAPER_WEIGHT_SETS, LevelSet, as_level_set
from .model import (
    QuantPolicy,
    activation_quantizers,
    batchnorm_statistics,
    calibrate_activations,
    quant_parameters,
    reestimate_batchnorm,
    quantize_model,
    set_enabled,
    set_mode,
    set_temperature,
    weight_quantizers,
)
from .modules import ActivationQuantizer, QuantState, Quantizer, WeightQuantizer
from .methods.base import QuantReport
from .schedule import TemperatureSchedule

__all__ = [
    "DEFAULT_METHOD", "OptionError", "QuantMethod", "available_methods", "get_method", "method_for", "quantize_",
    "register_method",
    "ALPHA_INITS", "ActivationQuantizer", "LevelSet", "PAPER_ACTIVATION_SETS", "PAPER_WEIGHT_SETS", "QuantPolicy",
    "QuantReport", "QuantState", "Quantizer", "TemperatureSchedule", "WeightQuantizer",
    "activation_quantizers", "as_level_set", "batchnorm_statistics", "calibrate_activations", "dequantize",
    "export_hard_model", "hard_quantize", "hard_quantize_reference", "initial_beta", "kmeans_1d",
    "kmeans_biases", "least_squares_alpha", "linear_biases", "load_hard_model", "model_size_bits", "quant_parameters",
    "quantize_model", "reestimate_batchnorm", "set_enabled", "set_mode", "set_temperature", "soft_quantize",
    "soft_quantize_reference", "weight_quantizers",
]
