"""Which quantization function the paper's method uses: the paper's, or the authors' released
code's choices, each switchable on its own.

The authors' released code (PyTorch 0.3, 2019) differs from the paper's equations in five
places (docs/quantizer.md, "The released variant"); with all five removed it agrees with this
suite's quantizer to 4e-14 relative in float64. ``QuantVariant`` names each one:

- ``clamp``: the sigmoid argument ``T (beta x - b)`` is clamped to [-10, 10] in forward and
  backward (so saturated elements keep a gradient of ``sigma'(10) T = 4.5e-5 T``);
- ``weight_t_cap``: weight quantizers use ``min(T, 2000)`` (activation quantizers the real T);
- ``unit_t_weight_backward``: the weight quantizers' backward uses the sigmoid derivative at
  T = 1 multiplied by T, for every level set; the activation backward uses the real T;
- ``strict_step``: the hard step is ``[beta x - b > 0]`` (an input exactly on a bias takes the
  lower level) instead of Eq. 1's ``A(0) = 1``;
- ``point_midpoint_init``: k-means biases sit halfway between the last point of one cluster and
  the first point of the next (not between centres), with no +-0.05 band around zero.

In the YAML ``quant:`` section (and ``QuantPolicy(variant=...)``): ``paper`` (the default),
``released`` (all five), or a mapping of choices on top of a ``base`` (default ``paper``), e.g.
``{clamp: true}`` or ``{base: released, strict_step: false}``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

VARIANTS = ("paper", "released")
CLAMP = 10.0  # the released code's bound of the sigmoid argument
WEIGHT_T_CAP = 2000.0  # the released code's largest T of the weight quantizers


@dataclass(frozen=True)
class QuantVariant:
    """The released code's choices; all False is the paper's quantizer (the default).

    Args:
        clamp: clamp the sigmoid argument to [-CLAMP, CLAMP] in forward and backward.
        weight_t_cap: weight quantizers use ``min(T, WEIGHT_T_CAP)``.
        unit_t_weight_backward: weight quantizers' backward: ``sigma'(beta x - b) * T``.
        strict_step: hard step ``[beta x - b > 0]``.
        point_midpoint_init: k-means biases between clusters' extreme points, no zero band.
    """

    clamp: bool = False
    weight_t_cap: bool = False
    unit_t_weight_backward: bool = False
    strict_step: bool = False
    point_midpoint_init: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"QuantVariant.{f.name} must be true or false, got {getattr(self, f.name)!r}")

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def named(cls, name: str) -> "QuantVariant":
        """``paper`` (no choice) or ``released`` (every choice)."""
        if name == "paper":
            return cls()
        if name == "released":
            return cls(**{c: True for c in cls.choices()})
        raise ValueError(f"must be one of {VARIANTS} or a mapping of choices, got {name!r}")

    @classmethod
    def from_config(cls, value: Any, key: str = "variant") -> "QuantVariant":
        """A variant from its config form: a name, a mapping (``base`` plus choices), None
        (the paper) or a ``QuantVariant``. Errors are one-line ValueErrors naming ``key``."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls.named(value)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{key}: must be one of {VARIANTS} or a mapping of choices, "
                             f"got {type(value).__name__} {value!r}")
        base = value.get("base", "paper")
        if base not in VARIANTS:
            raise ValueError(f"{key}.base: must be one of {VARIANTS}, got {base!r}")
        known = cls.choices()
        out = {c: getattr(cls.named(base), c) for c in known}
        for name, flag in value.items():
            if name == "base":
                continue
            if name not in known:
                raise ValueError(f"{key}.{name}: unknown choice (known: base, {', '.join(known)})")
            if not isinstance(flag, bool):
                raise ValueError(f"{key}.{name}: must be true or false, got {flag!r}")
            out[name] = flag
        return cls(**out)

    @property
    def name(self) -> str:
        """``paper``, ``released`` or ``custom``."""
        for name in VARIANTS:
            if self == self.named(name):
                return name
        return "custom"

    def to_config(self) -> str | dict:
        """The config form ``from_config`` reads back: the name, or (custom) the choices that
        differ from the paper on a ``base: paper``."""
        if self.name != "custom":
            return self.name
        return {"base": "paper", **{c: True for c in self.choices() if getattr(self, c)}}

    @property
    def is_paper(self) -> bool:
        return not any(getattr(self, c) for c in self.choices())


PAPER = QuantVariant()
RELEASED = QuantVariant.named("released")
