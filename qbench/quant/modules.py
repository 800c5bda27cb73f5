"""Quantizer modules: learnable alpha/beta(/biases) around the functional core.

The quantizers of one kind share one ``QuantState`` (temperature and mode): ``quantize_model``
gives the weight quantizers one and the activation quantizers another, so the phases can give
each kind its own T. ``WeightQuantizer`` is a ``torch.nn.utils.parametrize``
parametrization of a layer's ``weight``; ``ActivationQuantizer`` is a plain module applied
to activations (``quantize_model`` calls it on the inputs of quantized layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .functional import hard_quantize, hard_quantize_strict, soft_quantize, soft_quantize_released
from .init import ALPHA_INITS, initial_beta, kmeans_biases, least_squares_alpha, linear_biases
from .levels import LevelSet, as_level_set
from .variant import CLAMP, PAPER, WEIGHT_T_CAP, QuantVariant

Mode = Literal["soft", "hard", "off"]
MODES = ("soft", "hard", "off")
INITS = ("kmeans", "linear")


@dataclass
class QuantState:
    """Temperature and mode shared by the quantizers of one kind (weights or activations).

    Args:
        temperature: T of Eq. 7 (> 0).
        mode: "soft" (Eq. 7, training), "hard" (Eq. 12, inference) or "off" (identity).
    """

    temperature: float = 1.0
    mode: Mode = "soft"

    def __post_init__(self) -> None:
        # T as a tensor too, updated in place: the quantizers pass it to the op, so a compiled
        # model reads the current T instead of recompiling (or replaying a stale value) per
        # epoch. It lives on the quantizers' device (moved by ``Quantizer._apply``).
        self.temperature_tensor = torch.zeros((), dtype=torch.float32)
        self.set_temperature(self.temperature)
        self.set_mode(self.mode)

    def set_temperature(self, T: float) -> None:
        T = float(T)
        if not 0 < T <= torch.finfo(torch.float32).max:  # kept as a float32 tensor; NaN fails too
            raise ValueError(f"temperature must be a positive number within float32 range "
                             f"(cap it: temperature.cap), got {T}")
        self.temperature = T
        with torch.no_grad():
            self.temperature_tensor.fill_(T)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode


class Quantizer(nn.Module):
    """Parameters of one quantization function: alpha, beta (learnable) and biases.

    Args:
        levels: target level set Y (LevelSet or its name).
        state: the temperature/mode shared with the other quantizers of its kind; a private one
            is made if omitted.
        learn_biases: make the biases a Parameter (the paper freezes them; Sec. 4.3).
        alpha_init: "inverse_beta" (the paper: alpha = 1 / beta) or "least_squares" (alpha that
            best maps the quantized values onto the initialisation sample).
        variant: the paper's quantization function (default) or the released code's choices
            (``qbench.quant.variant``; a name, a mapping or a ``QuantVariant``).
    """

    is_weight = False  # the released code caps T and takes the unit-T backward for weights only

    def __init__(self, levels: LevelSet | str, state: QuantState | None = None,
                 learn_biases: bool = False, alpha_init: str = "inverse_beta",
                 variant: QuantVariant | str | dict | None = None) -> None:
        super().__init__()
        if alpha_init not in ALPHA_INITS:
            raise ValueError(f"alpha_init must be one of {ALPHA_INITS}, got {alpha_init!r}")
        self.alpha_init = alpha_init
        self.variant = QuantVariant.from_config(variant)
        self.levels = as_level_set(levels)
        self.state = state if state is not None else QuantState()
        self.enabled = True
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.tensor(1.0))
        init_b = torch.linspace(-1.0, 1.0, self.levels.n) if self.levels.n > 1 else torch.zeros(1)
        if learn_biases:
            self.biases = nn.Parameter(init_b)
        else:
            self.register_buffer("biases", init_b)
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def learn_biases(self) -> bool:
        return isinstance(self.biases, nn.Parameter)

    @torch.no_grad()
    def initialize(self, values: torch.Tensor, max_abs: float | None = None, init: str = "kmeans") -> None:
        """Sec. 4.1 initialisation from the values this quantizer will see.

        Args:
            values: sample of the values (weights, or observed activations).
            max_abs: q; defaults to ``values.abs().max()``.
            init: "kmeans" (the paper's non-uniform biases) or "linear" (Table 5 ablation).
        """
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        values = values.detach().float().reshape(-1)
        q = float(values.abs().max()) if max_abs is None else float(max_abs)
        beta = initial_beta(self.levels, q)
        scaled = values * beta
        if init == "kmeans":
            b = kmeans_biases(scaled, self.levels,
                              boundaries="points" if self.variant.point_midpoint_init else "centres")
        else:
            b = linear_biases(scaled, self.levels)
        self.beta.fill_(beta)
        if self.alpha_init == "least_squares":
            self.alpha.fill_(least_squares_alpha(values, self.levels, b, beta))
        else:
            self.alpha.fill_(1.0 / beta)
        self.biases.copy_(b.to(self.biases.dtype))
        self.initialized.fill_(True)

    def _apply(self, fn, recurse=True):
        # model.to(device) moves the shared temperature tensor along (once: the other
        # quantizers of the state find it moved); dtype casts leave it float32
        out = super()._apply(fn, recurse)
        state = self.state
        if state.temperature_tensor.device != self.alpha.device:
            state.temperature_tensor = state.temperature_tensor.to(self.alpha.device)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.state.mode
        if not self.enabled or mode == "off":
            return x
        v = self.variant
        if mode == "hard":
            if v.strict_step:
                return hard_quantize_strict(x, self.levels, self.biases, self.alpha, self.beta)
            return hard_quantize(x, self.levels, self.biases, self.alpha, self.beta)
        T = self.state.temperature_tensor
        t_cap = WEIGHT_T_CAP if v.weight_t_cap and self.is_weight else None
        unit_t = v.unit_t_weight_backward and self.is_weight
        if v.clamp or t_cap is not None or unit_t:
            # the released code's choices: a torch path beside the fused kernels (functional)
            return soft_quantize_released(x, self.levels, self.biases, self.alpha, self.beta, T,
                                          clamp=CLAMP if v.clamp else None, t_cap=t_cap,
                                          unit_t_backward=unit_t)
        return soft_quantize(x, self.levels, self.biases, self.alpha, self.beta, T)

    def extra_repr(self) -> str:
        out = f"levels={self.levels.name}, n={self.levels.n}, learn_biases={self.learn_biases}"
        return out if self.variant == PAPER else f"{out}, variant={self.variant.to_config()!r}"


class WeightQuantizer(Quantizer):
    """Quantizer used as a parametrization of a layer weight: ``layer.weight = Q(original)``."""

    is_weight = True

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # assigning to layer.weight stores the full-precision value
        return value


class ActivationQuantizer(Quantizer):
    """Quantizer for non-negative activations, with an observer for calibration.

    While ``observing`` is True the module passes inputs through unchanged and records
    their running max and a bounded random sample (for the k-means of the biases).
    """

    def __init__(self, levels: LevelSet | str, state: QuantState | None = None,
                 learn_biases: bool = False, init: str = "kmeans", sample_per_call: int = 4096,
                 seed: int = 0, alpha_init: str = "inverse_beta",
                 variant: QuantVariant | str | dict | None = None) -> None:
        super().__init__(levels, state, learn_biases, alpha_init, variant)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        self.observing = False
        self.sample_per_call = sample_per_call
        self._seed = seed
        self._observed_max = 0.0
        self._samples: list[torch.Tensor] = []

    def start_observing(self) -> None:
        self.observing = True
        self._observed_max = 0.0
        self._samples = []
        self._generator = torch.Generator().manual_seed(self._seed)

    @torch.no_grad()
    def finish_observing(self, init: str | None = None) -> float:
        """Initialise from what was observed (``init`` defaults to the module's); returns q."""
        self.observing = False
        if not self._samples:
            raise RuntimeError("activation quantizer saw no data during calibration")
        values = torch.cat(self._samples)
        q = self._observed_max
        self._samples = []
        self.initialize(values, max_abs=q, init=init or self.init)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                flat = x.detach().reshape(-1)
                self._observed_max = max(self._observed_max, float(flat.abs().max()))
                k = min(self.sample_per_call, flat.numel())
                idx = torch.randint(flat.numel(), (k,), generator=self._generator).to(flat.device)
                self._samples.append(flat[idx].float().cpu())
            return x
        return super().forward(x)
