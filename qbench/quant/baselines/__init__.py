"""The baselines of Tables 1-3 as standalone quantizers, each from its own paper.

Every quantizer is an ``nn.Module`` (contract in ``_common.BaselineQuantizer``):
``forward(x)`` quantizes with the method's gradient, ``initialize(x)`` sets data-dependent
parameters, ``export(x) -> (codes, levels)`` gives integer codes and the level table that
``dequantize`` maps them back with, and ``bits`` is the storage width of one code.

Weights: ``BWNQuantizer`` (XNOR-Net's binary weights), ``TWNQuantizer``, ``TTQQuantizer``,
``DoReFaWeightQuantizer``, ``LSQQuantizer(signed=True)``, ``LQNetQuantizer(signed=True)`` (in
training mode each forward also takes one QEM step of its basis),
``INQQuantizer`` (its staged schedule: the trainer calls ``advance`` at each stage boundary),
``ABCWeightQuantizer``.
Activations: ``DoReFaActivationQuantizer``, ``HWGQuantizer``, ``PACTQuantizer``,
``LSQQuantizer(signed=False)``, ``LQNetQuantizer(signed=False)``, ``ABCActivationQuantizer``.

Covered: BWN, TWN, TTQ, INQ, DoReFa, ABC-Net, HWGQ and LQ-Net from Tables 1-3, plus LSQ and
PACT, each registered as a method by ``qbench.quant.methods.baselines``. Not implemented: the
tables' other cited rows (BinaryConnect, ADMM, TBN, ICLR18: ADMM trains with a penalty in every
step's loss and a projection every few iterations, which no method hook gives) and HWGQ's
log-tailed ReLU backward (the clipped ReLU instead).
"""

from ._common import BaselineQuantizer, BaselineSpec, StandardisedInput, check_bits, dequantize
from .abcnet import ABCActivationQuantizer, ABCWeightQuantizer
from .bwn import BWNQuantizer
from .dorefa import DoReFaActivationQuantizer, DoReFaWeightQuantizer
from .hwgq import HWGQuantizer, half_gaussian_lloyd_max, half_gaussian_uniform_step
from .inq import INQQuantizer
from .lqnet import LQNetQuantizer
from .lsq import LSQQuantizer
from .pact import PACTQuantizer
from .ttq import TTQQuantizer
from .twn import TWNQuantizer

__all__ = [
    "ABCActivationQuantizer", "ABCWeightQuantizer", "BWNQuantizer", "BaselineQuantizer", "BaselineSpec", "DoReFaActivationQuantizer", "DoReFaWeightQuantizer",
    "HWGQuantizer", "INQQuantizer", "LQNetQuantizer", "LSQQuantizer", "PACTQuantizer", "StandardisedInput", "TTQQuantizer",
    "TWNQuantizer",
    "check_bits", "dequantize", "half_gaussian_lloyd_max", "half_gaussian_uniform_step",
]
