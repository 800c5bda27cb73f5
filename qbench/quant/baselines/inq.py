"""INQ: incremental network quantization (Zhou, Yao, Guo, Xu & Chen, ICLR 2017).

Levels (Sec. 2.1): with b bits, one of which flags zero,
``P = {+-2^n1, ..., +-2^n2, 0}``, ``n1 = floor(log2(4 s / 3))`` with s = max |W| of the layer
(taken once, from the weights given to ``initialize``) and ``n2 = n1 + 1 - 2^(b-1) / 2``.

Quantization rule (Sec. 2.1): ``W^ = beta sgn(W)`` if ``(alpha + beta) / 2 <= |W| < 3 beta / 2``
for adjacent alpha < beta in the sorted non-negative part of P, else 0. Below the smallest
power that is ``|W| < 2^n2 / 2 -> 0``; the intervals of adjacent powers meet at 3 * 2^(k-1).
At the top the rule would send |W| >= 3 * 2^n1 / 2 to 0; no weight is that large when n1 is
set (2^n1 > 2s/3), but a weight that grew during re-training could be, so we map it to
+-2^n1 instead.

Incremental schedule (Sec. 2.2, the pruning-inspired partition): ``advance(w)`` quantizes and
freezes the largest-|W| weights not yet frozen until the frozen share reaches the next of the
accumulated portions (ties in |W| broken by position). Frozen weights keep their quantized value
and get no gradient (the paper's mask T); the rest stay full precision and train as usual. The
trainer calls ``advance`` at each stage boundary (re-training between stages); ``export`` needs
every weight frozen.

Portions per bit width (``portions_for``): the paper's 5-bit runs use {50, 75, 87.5, 100} %
(Sec. 3.1) and its 2-bit (ternary) run {0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1}
(Sec. 3.4, where the epochs also grow, to about 30, as the bit width goes down); the paper gives
no list for 3 and 4 bits, which take the 2-bit list here (low widths need the finer steps; our
choice). The released code (AojunZhou/Incremental-Network-Quantization @ c7f6a60) runs only
the 5-bit AlexNet: run.py, lines 6-35, freezes 30, 60, 80, 100 % by editing the partition of
src/caffe/blob.cpp (line 532, ``int(count_*0.7)``) between four runs of
examples/INQ/alexnet/solver.prototxt (lr 0.003, x0.2 every 15000 iterations, weight decay 5e-4,
momentum 0.9); its n1 is ``floor(log2(max|W| * 4/3))`` (blob.cpp line 529), as above.

The paper's 2-bit ResNet-18 result (66.0 % top-1) is reported as not reproduced by users of the
released code (AojunZhou/Incremental-Network-Quantization issue #28, open), and the literal
level rule leaves few weights nonzero at 2 bits (levels {0, +-2^n1} with 2^n1 > 2 max|W| / 3:
everything below 2^n1 / 2 >= max|W| / 3 goes to 0): the method sanity table reports the
nonzero share of every INQ run.

Layers: the released code quantizes the first blob (the weights) of every layer it copies
(src/caffe/net.cpp, lines 761-767), first conv and last fc included, as the paper does; the
shared harness keeps them full precision for every method (deviation ``inq_first_last``).
"""

from __future__ import annotations

import math

import torch

from ._common import BaselineQuantizer, BaselineSpec, check_bits, codes_dtype

MAX_BITS = 8
PORTIONS = (0.5, 0.75, 0.875, 1.0)  # the paper's 5-bit schedule (Sec. 3.1)
PORTIONS_LOW_BITS = (0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0)  # its 2-bit one (Sec. 3.4)


def portions_for(bits: int) -> tuple[float, ...]:
    """The accumulated portions INQ freezes at a ``bits``-bit width: the paper's 2-bit list
    below 5 bits (it gives none for 3 and 4), its 5-bit list from 5 bits on."""
    return PORTIONS_LOW_BITS if check_bits(bits, 2, MAX_BITS, "bits") < 5 else PORTIONS


def inq_exponents(max_abs: float, bits: int) -> tuple[int, int]:
    """(n1, n2) of the level set for a layer with max |W| = ``max_abs``."""
    bits = check_bits(bits, 2, MAX_BITS, "bits")
    if not max_abs > 0 or math.isinf(max_abs):
        raise ValueError(f"INQ needs a weight with a finite nonzero maximum |W|, got {max_abs}")
    n1 = math.floor(math.log2(4 * max_abs / 3))
    return n1, n1 + 1 - 2 ** (bits - 1) // 2


class INQQuantizer(BaselineQuantizer):
    """b-bit power-of-two weights, frozen portion by portion.

    Args:
        bits: b, 2..8 (2^(b-1) nonzero levels and 0).
        portions: accumulated shares of frozen weights after each stage, increasing, ending at 1;
            None: the paper's for the bit width (``portions_for``).
    """

    kind = "weight"

    def __init__(self, bits: int, portions: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.bits = check_bits(bits, 2, MAX_BITS, "bits")
        portions = portions_for(self.bits) if portions is None else tuple(portions)
        if (not portions or any(isinstance(p, bool) or not isinstance(p, (int, float)) for p in portions)
                or any(not 0 < p <= 1 for p in portions) or list(portions) != sorted(set(portions))
                or portions[-1] != 1):
            raise ValueError(f"portions must be increasing shares in (0, 1] ending at 1, got {portions!r}")
        self.portions = portions
        # buffers, so a checkpoint carries the schedule's state; set by initialize (call it
        # before load_state_dict)
        self.register_buffer("exponents", None)  # (n1, n2)
        self.register_buffer("stages_done", None)
        self.register_buffer("frozen", None)
        self.register_buffer("frozen_values", None)

    @property
    def num_levels(self) -> int:
        """2^(b-1) nonzero powers of two and 0."""
        return 2 ** (self.bits - 1) + 1

    @property
    def n1(self) -> int:
        self._require_initialized()
        return int(self.exponents[0])

    @property
    def n2(self) -> int:
        self._require_initialized()
        return int(self.exponents[1])

    @property
    def stage(self) -> int:
        """Portions reached so far."""
        self._require_initialized()
        return int(self.stages_done)

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        """Fix n1 from max |W| and start with nothing frozen."""
        n1, n2 = inq_exponents(float(w.detach().abs().max()), self.bits)
        self.exponents = torch.tensor([n1, n2], device=w.device)
        self.stages_done = torch.zeros((), dtype=torch.long, device=w.device)
        self.frozen = torch.zeros(w.shape, dtype=torch.bool, device=w.device)
        self.frozen_values = torch.zeros_like(w.detach())

    def _require_initialized(self) -> None:
        if self.frozen is None:
            raise ValueError("INQ quantizer used before initialize(weight) set its levels")

    def positive_levels(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """2^n2, ..., 2^n1 ascending."""
        self._require_initialized()
        return torch.tensor([2.0 ** k for k in range(self.n2, self.n1 + 1)], dtype=dtype)

    @torch.no_grad()
    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """The quantization rule applied to every element (frozen or not)."""
        powers = self.positive_levels(w.dtype).to(w.device)
        # |W| in [2^n2 / 2, 3 * 2^n2 / 2) -> 2^n2, [3 * 2^(k-1), 3 * 2^k) -> 2^k, ...
        boundaries = torch.cat((powers[:1] / 2, 3 * powers[:-1] / 2))
        index = torch.bucketize(w.abs(), boundaries, right=True)  # boundary values go up
        table = torch.cat((powers.new_zeros(1), powers))
        return torch.where(w < 0, -table[index], table[index])

    @torch.no_grad()
    def advance(self, w: torch.Tensor) -> float:
        """Freeze the next portion (largest |W| first); returns the frozen share."""
        self._require_initialized()
        if self.stage >= len(self.portions):
            raise ValueError(f"INQ has frozen all weights already ({len(self.portions)} stages)")
        target = round(self.portions[self.stage] * w.numel())
        frozen = self.frozen.reshape(-1)
        count = target - int(frozen.sum())
        if count > 0:
            magnitude = torch.where(frozen, torch.full_like(w.reshape(-1), -1.0), w.detach().abs().reshape(-1))
            order = torch.sort(magnitude, descending=True, stable=True).indices[:count]
            values = self.quantize(w.detach().reshape(-1)[order])
            self.frozen_values.reshape(-1)[order] = values
            frozen[order] = True
        self.stages_done += 1
        return float(frozen.float().mean())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self._require_initialized()
        return torch.where(self.frozen, self.frozen_values.to(w.dtype), w)

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._require_initialized()
        if not bool(self.frozen.all()):
            raise ValueError(f"INQ export needs every weight quantized: call advance() through the last "
                             f"portion ({self.stage} of {len(self.portions)} stages done)")
        powers = self.positive_levels(w.dtype).to(w.device)
        levels = torch.cat((-powers.flip(0), powers.new_zeros(1), powers))
        values = self.frozen_values.to(w.dtype)
        codes = torch.searchsorted(levels, values.reshape(-1)).reshape(w.shape)
        return codes.to(codes_dtype(len(levels))), levels

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, portions={self.portions}"


def stages_due(epoch: int, run_epochs: int, stages: int) -> int:
    """How many of INQ's ``stages`` portions are frozen once ``epoch`` (1-based) of a
    ``run_epochs``-epoch run starts: portion k + 1 at the start of epoch
    ``1 + floor(k * run_epochs / stages)``, k = 0, 1, ...

    Args:
        epoch: the epoch about to train.
        run_epochs: epochs of the run.
        stages: INQ's number of portions.
    """
    starts = [1 + (k * run_epochs) // stages for k in range(stages)]
    return sum(1 for s in starts if s <= epoch)


def _freeze(method, model, due) -> None:
    """Advance every weight quantizer of ``method`` to ``due(number of its portions)`` stages."""
    for name, slot in method.weight_modules(model).items():
        quantizer = slot.quantizer
        weight = model.get_submodule(name).parametrizations.weight.original
        while quantizer.stage < due(len(quantizer.portions)):
            quantizer.advance(weight.detach())


def freeze_due_portions(method, model, step) -> None:
    """Before an epoch: freeze the portions due by then on the run's schedule (``stages_due``)."""
    _freeze(method, model, lambda stages: stages_due(step.epoch, step.run_epochs, stages))


def freeze_every_portion_at_the_end(method, model, step) -> None:
    """After the last epoch: a run ends with every weight quantized."""
    if step.epoch >= step.run_epochs:
        _freeze(method, model, lambda stages: stages)


# the method ``quant.method: inq`` (qbench.quant.methods.baselines registers it)
METHOD = BaselineSpec("inq", "INQ", lambda b, layer, o: INQQuantizer(b), None, weight_bits=(2, MAX_BITS),
                      example=("ternary", None), on_epoch=freeze_due_portions,
                      on_epoch_end=freeze_every_portion_at_the_end)
