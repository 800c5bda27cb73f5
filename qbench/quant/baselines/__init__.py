"""The baselines of Tables 1-3 as standalone quantizers, each from its own paper.

Every quantizer is an ``nn.Module`` (contract in ``_common.BaselineQuantizer``):
``forward(x)`` quantizes with the method's gradient, ``initialize(x)`` sets data-dependent
parameters, ``export(x) -> (codes, levels)`` gives integer codes and the level table that
``dequantize`` maps them back with, and ``bits`` is the storage width of one code.

Weights: ``BWNQuantizer`` (XNOR-Net's binary weights), ``TWNQuantizer``, ``TTQQuantizer``,
``DoReFaWeightQuantizer``, ``LSQQuantizer(signed=True)``, ``LQNetQuantizer(signed=True)`` (in
training mode each forward also takes one QEM step of its basis),
``INQQuantizer`` (its staged schedule: the trainer calls ``advance`` at each stage boundary),
``ABCWeightQuantizer``, ``ADMMQuantizer`` (full-precision training with its penalty; the
trainer adds ``penalty`` to the loss and calls ``admm_step`` every few iterations).
Activations: ``DoReFaActivationQuantizer``, ``HWGQuantizer``, ``PACTQuantizer``,
``LSQQuantizer(signed=False)``, ``LQNetQuantizer(signed=False)``, ``ABCActivationQuantizer``.

Covered: BWN, TWN, TTQ, INQ, DoReFa, ABC-Net, HWGQ, ADMM and LQ-Net from Tables 1-3, plus LSQ
and PACT. Not implemented: the tables' other cited rows (BinaryConnect, TBN, ICLR18), ADMM's
extragradient W-step (plain SGD on the penalised loss instead) and HWGQ's log-tailed ReLU
backward (the clipped ReLU instead).
"""

from ._common import BaselineQuantizer, StandardisedInput, check_bits, dequantize
from .abcnet import ABCActivationQuantizer, ABCWeightQuantizer
from .admm import ADMMQuantizer
from .bwn import BWNQuantizer
from .dorefa import DoReFaActivationQuantizer, DoReFaWeightQuantizer
from .hwgq import HWGQuantizer, half_gaussian_lloyd_max, half_gaussian_uniform_step
from .inq import INQQuantizer
from .lqnet import LQNetQuantizer
from .lsq import LSQQuantizer
from .pact import PACTQuantizer
from .ttq import TTQQuantizer
from .twn import TWNQuantizer

# method name -> quantizer class (weights and/or activations), for a registry adapter
BASELINES = {
    "abcnet": {"weight": ABCWeightQuantizer, "activation": ABCActivationQuantizer},
    "admm": {"weight": ADMMQuantizer},
    "bwn": {"weight": BWNQuantizer},
    "twn": {"weight": TWNQuantizer},
    "ttq": {"weight": TTQQuantizer},
    "dorefa": {"weight": DoReFaWeightQuantizer, "activation": DoReFaActivationQuantizer},
    "hwgq": {"activation": HWGQuantizer},
    "inq": {"weight": INQQuantizer},
    "lsq": {"weight": LSQQuantizer, "activation": LSQQuantizer},
    "pact": {"activation": PACTQuantizer},
    "lqnet": {"weight": LQNetQuantizer, "activation": LQNetQuantizer},
}

__all__ = [
    "ABCActivationQuantizer", "ABCWeightQuantizer", "ADMMQuantizer", "BASELINES", "BWNQuantizer", "BaselineQuantizer", "DoReFaActivationQuantizer", "DoReFaWeightQuantizer",
    "HWGQuantizer", "INQQuantizer", "LQNetQuantizer", "LSQQuantizer", "PACTQuantizer", "StandardisedInput", "TTQQuantizer",
    "TWNQuantizer",
    "check_bits", "dequantize", "half_gaussian_lloyd_max", "half_gaussian_uniform_step",
]
