"""Target level sets Y of the quantization function (paper Sec. 3.1).

A level set fixes everything of Eq. 5 that is not learned: the number of steps
``n = |Y| - 1``, the step heights ``s_i = Y[i+1] - Y[i]`` and the offset ``o``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class LevelSet:
    """A sorted set of target values Y.

    Args:
        values: the target levels, strictly increasing and finite, at least two.
        name: a short identifier used in configs, file names and reports.
        zero_centered: whether the offset ``o = sum(s_i) / 2`` applies (weights, symmetric
            sets). Non-negative sets (activations) use ``o = 0`` as in the paper.
    """

    values: tuple[float, ...]
    name: str = "custom"
    zero_centered: bool = True

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in self.values)
        object.__setattr__(self, "values", values)
        if len(values) < 2:
            raise ValueError(f"level set {self.name!r} needs at least 2 levels, got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"level set {self.name!r} has a non-finite level: {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"level set {self.name!r} has duplicate levels: {values}")
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"level set {self.name!r} is not sorted ascending: {values}")
        # derived once: the quantizers read them on every call
        steps = tuple(b - a for a, b in zip(values, values[1:]))
        offset = sum(steps) / 2.0 if self.zero_centered else 0.0
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_offset", offset)
        object.__setattr__(self, "_outputs", tuple(v - values[0] - offset for v in values))

    # --- derived quantities of Eq. 5 -------------------------------------------------
    @property
    def n(self) -> int:
        """Number of unit steps (``|Y| - 1``)."""
        return len(self.values) - 1

    @property
    def steps(self) -> tuple[float, ...]:
        """Step heights ``s_i = Y[i+1] - Y[i]``."""
        return self._steps

    @property
    def offset(self) -> float:
        """Global offset ``o``: half the total height for zero-centred sets, else 0."""
        return self._offset

    @property
    def p(self) -> float:
        """``max |Y|``, used by the scale initialisation beta = 5p / (4q)."""
        return max(abs(v) for v in self.values)

    @property
    def bits(self) -> int:
        """Bits needed to store one code (index into Y)."""
        return max(1, math.ceil(math.log2(len(self.values))))

    def outputs(self) -> tuple[float, ...]:
        """Values ``Y_k - Y_0 - o`` the ideal quantizer (Eq. 12) produces, before alpha."""
        return self._outputs

    def steps_tensor(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor(self.steps, device=device, dtype=dtype)

    def outputs_tensor(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor(self.outputs(), device=device, dtype=dtype)

    # --- the sets of the paper ---------------------------------------------------------
    @classmethod
    def binary(cls) -> "LevelSet":
        """Binary weights {-1, 1} (n=1, s=2, o=1)."""
        return cls((-1, 1), "binary")

    @classmethod
    def ternary(cls) -> "LevelSet":
        """Ternary weights {-1, 0, 1}."""
        return cls((-1, 0, 1), "ternary")

    @classmethod
    def bits3_pm2(cls) -> "LevelSet":
        """3 bits, {-2, -1, 0, 1, 2} (the paper's 3(±2))."""
        return cls((-2, -1, 0, 1, 2), "3bit_pm2")

    @classmethod
    def bits3_pm4(cls) -> "LevelSet":
        """3 bits, {-4, -2, -1, 0, 1, 2, 4} (the paper's 3(±4))."""
        return cls((-4, -2, -1, 0, 1, 2, 4), "3bit_pm4")

    @classmethod
    def bits5(cls) -> "LevelSet":
        """5 bits, {-15, ..., 15}."""
        return cls(tuple(range(-15, 16)), "5bit")

    @classmethod
    def act_binary(cls) -> "LevelSet":
        """Binary activations {0, 1} (n=1, s=1, o=0)."""
        return cls((0, 1), "act_binary", zero_centered=False)

    @classmethod
    def act_2bit(cls) -> "LevelSet":
        """2-bit activations {0, 1, 2, 3}."""
        return cls((0, 1, 2, 3), "act_2bit", zero_centered=False)

    @classmethod
    def linear(cls, bits: int, signed: bool = True) -> "LevelSet":
        """Evenly spaced integers: signed {-(2^(b-1)-1), ..., 2^(b-1)-1}, unsigned {0, ..., 2^b-1}.

        Args:
            bits: bit width, 1..8.
            signed: symmetric weights set (True) or non-negative activations set (False).
        """
        if not 1 <= bits <= 8:
            raise ValueError(f"linear level set: bits must be in 1..8, got {bits}")
        if signed:
            if bits == 1:
                return cls.binary()
            m = 2 ** (bits - 1) - 1
            return cls(tuple(range(-m, m + 1)), f"linear{bits}")
        return cls(tuple(range(0, 2**bits)), f"act_linear{bits}", zero_centered=False)

    @classmethod
    def power_of_two(cls, bits: int) -> "LevelSet":
        """Signed powers of two with zero: {-2^(m-1), ..., -1, 0, 1, ..., 2^(m-1)}, m = 2^(b-1) - 1.

        ``power_of_two(3)`` is the paper's 3(±4) set.
        """
        if not 2 <= bits <= 8:
            raise ValueError(f"power-of-two level set: bits must be in 2..8, got {bits}")
        m = 2 ** (bits - 1) - 1
        pos = [2.0**k for k in range(m)]
        return cls(tuple([-v for v in reversed(pos)] + [0.0] + pos), f"pow2_{bits}")

    @classmethod
    def from_name(cls, name: str) -> "LevelSet":
        """Build a level set from its config name.

        Names: ``binary``, ``ternary``, ``3bit_pm2``, ``3bit_pm4``, ``5bit``, ``act_binary``,
        ``act_2bit``, ``linear<b>``, ``act_linear<b>``, ``pow2_<b>``.
        """
        named = {
            "binary": cls.binary,
            "ternary": cls.ternary,
            "3bit_pm2": cls.bits3_pm2,
            "3bit_pm4": cls.bits3_pm4,
            "5bit": cls.bits5,
            "act_binary": cls.act_binary,
            "act_2bit": cls.act_2bit,
        }
        if name in named:
            return named[name]()
        for prefix, build in (
            ("act_linear", lambda b: cls.linear(b, signed=False)),
            ("linear", lambda b: cls.linear(b, signed=True)),
            ("pow2_", cls.power_of_two),
        ):
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return build(int(name[len(prefix):]))
        known = ", ".join(list(named) + ["linear<b>", "act_linear<b>", "pow2_<b>"])
        raise ValueError(f"unknown level set {name!r}; known: {known}")


def as_level_set(levels: LevelSet | str | Sequence[float]) -> LevelSet:
    """Accept a LevelSet, a config name or a plain sequence of levels."""
    if isinstance(levels, LevelSet):
        return levels
    if isinstance(levels, str):
        return LevelSet.from_name(levels)
    values = tuple(levels)
    return LevelSet(values, zero_centered=min(values) < 0)


PAPER_WEIGHT_SETS = ("binary", "ternary", "3bit_pm2", "3bit_pm4", "5bit")
PAPER_ACTIVATION_SETS = ("act_binary", "act_2bit")
