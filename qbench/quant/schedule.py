"""Temperature schedules: the paper grows T linearly with the epoch (T = k * epoch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("linear", "constant", "exponential")


@dataclass(frozen=True)
class TemperatureSchedule:
    """T as a function of the (1-based) epoch.

    Args:
        kind: "linear" (T = slope * epoch, the paper), "constant" (T = slope) or
            "exponential" (T = slope * growth ** (epoch - 1)).
        slope: k of the paper (AlexNet 10, ResNet 5, SSD 10); must be > 0.
        cap: optional upper bound on T.
        growth: ratio per epoch for "exponential" (> 1).
        per: "epoch" (T constant within an epoch, the paper) or "iteration" (T grows
            continuously, ``epoch`` may then be fractional).
        epoch_scale: epochs of the paper's schedule per epoch of this run (1 = the paper).
            Short runs use it to cover the paper's temperature range: with 3 epochs and
            ``epoch_scale=20``, a linear slope k reaches T = 60k as after 60 paper epochs.
    """

    kind: str = "linear"
    slope: float = 10.0
    cap: float | None = None
    growth: float = 2.0
    per: str = "epoch"
    epoch_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.epoch_scale > 0:
            raise ValueError(f"epoch_scale must be > 0, got {self.epoch_scale}")
        if self.kind not in KINDS:
            raise ValueError(f"temperature kind must be one of {KINDS}, got {self.kind!r}")
        if not self.slope > 0:
            raise ValueError(f"temperature slope must be > 0, got {self.slope}")
        if self.cap is not None and not self.cap > 0:
            raise ValueError(f"temperature cap must be > 0, got {self.cap}")
        if self.kind == "exponential" and not self.growth > 1:
            raise ValueError(f"exponential growth must be > 1, got {self.growth}")
        if self.per not in ("epoch", "iteration"):
            raise ValueError(f"per must be 'epoch' or 'iteration', got {self.per!r}")

    def value(self, epoch: float, progress: float = 0.0) -> float:
        """T at ``epoch`` (1-based); ``progress`` in [0, 1) is the fraction of it done.

        With ``per="epoch"`` progress is ignored.
        """
        if epoch < 1:
            raise ValueError(f"epochs are counted from 1, got {epoch}")
        e = (float(epoch) + (float(progress) if self.per == "iteration" else 0.0)) * self.epoch_scale
        if self.kind == "linear":
            T = self.slope * e
        elif self.kind == "constant":
            T = self.slope
        else:
            try:
                T = self.slope * self.growth ** (e - 1)
            except OverflowError:  # beyond any float; the cap (if any) still applies
                T = math.inf
        return min(T, self.cap) if self.cap is not None else T
