"""ADMM: low-bit weights by the alternating direction method of multipliers (Leng, Dou, Li, Zhu &
Jin, AAAI 2018, "Extremely Low Bit Neural Network: Squeeze the Last Bit Out with ADMM").

The constraint set is ``C = alpha * L`` with a per-layer scale alpha > 0 and a unit level set L:
binary {-1, 1}, ternary {-1, 0, 1}, {-2, ..., 2} ("pm2") or {-4, -2, -1, 0, 1, 2, 4} ("pm4"),
the sets of the paper's tables. Training minimises the augmented Lagrangian
``f(W) + I_C(G) + (rho/2) ||W - G + mu||^2`` by ADMM:
- W-step: ordinary training of the full-precision W on ``loss + penalty(W)``: in training mode
  ``forward(W) = W``, and the trainer adds ``penalty(W) = (rho/2) ||W - G + mu||^2``;
- G-step and dual step (``admm_step(W)``, every few iterations): ``G = Proj_C(W + mu)``,
  ``mu = mu + W - G``.
In eval mode ``forward(W) = Proj_C(W)``, the quantized weights.

Projection (the paper's alternating minimisation of ``||V - alpha Q||^2``): from
``alpha_0 = mean |V|``, repeat ``Q = nearest level of V / alpha`` (a value midway between two
levels takes the lower one) and ``alpha = <V, Q> / <Q, Q>`` until Q stops changing (at most
``PROJECTION_STEPS`` rounds). alpha_0 is our choice; the paper does not fix it.
The paper's extragradient variant of the W-step is not implemented: plain SGD on the penalised
loss is the W-step here.

No released code of the authors exists; every choice above is the paper's (Leng et al. 2018).
"""

from __future__ import annotations

import torch

from ._common import BaselineQuantizer, codes_dtype

LEVEL_SETS = {"binary": (-1.0, 1.0), "ternary": (-1.0, 0.0, 1.0), "pm2": (-2.0, -1.0, 0.0, 1.0, 2.0),
              "pm4": (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)}
LEVEL_BITS = {"binary": 1, "ternary": 2, "pm2": 3, "pm4": 3}
PROJECTION_STEPS = 50


@torch.no_grad()
def project(v: torch.Tensor, levels: torch.Tensor, steps: int = PROJECTION_STEPS):
    """(codes, alpha) with alpha * levels[codes] the projection of v onto alpha * L."""
    flat = v.reshape(-1)
    levels = levels.to(flat.dtype)
    midpoints = (levels[1:] + levels[:-1]) / 2
    alpha = flat.abs().mean()
    codes = None
    for _ in range(steps):
        if not alpha > 0:
            break
        new_codes = torch.searchsorted(midpoints * alpha, flat.contiguous(), right=False)
        if codes is not None and torch.equal(new_codes, codes):
            break
        codes = new_codes
        q = levels[codes]
        norm = (q * q).sum()
        if not norm > 0:
            break
        alpha = (flat * q).sum() / norm
    if codes is None:  # v is all zero: every value on the level nearest 0
        codes = torch.full_like(flat, int(torch.argmin(levels.abs())), dtype=torch.long)
        alpha = torch.zeros((), dtype=flat.dtype, device=flat.device)
    return codes.reshape(v.shape), alpha


class ADMMQuantizer(BaselineQuantizer):
    """ADMM state (G, mu) for one weight, its projection and penalty.

    Args:
        levels: "binary", "ternary", "pm2" or "pm4".
        rho: penalty weight of the augmented Lagrangian (> 0).
    """

    kind = "weight"

    def __init__(self, levels: str, rho: float = 1e-3) -> None:
        super().__init__()
        if levels not in LEVEL_SETS:
            raise ValueError(f"levels must be one of {sorted(LEVEL_SETS)}, got {levels!r}")
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
            raise ValueError(f"rho must be a positive number, got {rho!r}")
        self.level_set, self.rho, self.bits = levels, float(rho), LEVEL_BITS[levels]
        self.register_buffer("levels", torch.tensor(LEVEL_SETS[levels]))
        self.register_buffer("target", None)  # G
        self.register_buffer("dual", None)  # mu

    def projection(self, w: torch.Tensor) -> torch.Tensor:
        codes, alpha = project(w, self.levels)
        return self.levels.to(w.dtype)[codes] * alpha

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        """G = Proj_C(W), mu = 0."""
        self.target = self.projection(w.detach())
        self.dual = torch.zeros_like(w.detach())

    def _require_initialized(self) -> None:
        if self.target is None:
            raise ValueError("ADMM quantizer used before initialize(weight) set G and mu")

    def penalty(self, w: torch.Tensor) -> torch.Tensor:
        """(rho / 2) ||W - G + mu||^2, to add to the training loss."""
        self._require_initialized()
        return 0.5 * self.rho * ((w - self.target.to(w.dtype) + self.dual.to(w.dtype)) ** 2).sum()

    @torch.no_grad()
    def admm_step(self, w: torch.Tensor) -> None:
        """G = Proj_C(W + mu), then mu = mu + W - G."""
        self._require_initialized()
        w = w.detach()
        self.target = self.projection(w + self.dual)
        self.dual += w - self.target

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            return w
        with torch.no_grad():
            return self.projection(w)

    @torch.no_grad()
    def export(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, alpha = project(w, self.levels)
        return codes.to(codes_dtype(len(self.levels))), self.levels.to(w.dtype) * alpha

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, levels={self.level_set}, rho={self.rho}"
