"""Effect of each of the released code's choices (qbench.quant.variant) on the quantizer itself.

Run: ``python -m benchmarks.released_variant [--numel 36864] [--seed 0] [--json PATH]``.

Weights drawn from N(0, 0.05) (a 64x64x3x3 conv by default), float64. For every choice switched
on alone, the same weight quantizer (the paper's k-means init, so only the choice differs) is
compared with the paper's at T = 20 / 200 / 2000 / 5000:

- ``max|dy|/alpha``: largest change of the soft output (Eq. 7), in units of alpha;
- ``max|dg|/max|g|``: largest change of dy/dx, relative to the largest dy/dx of the paper's;
- ``g changed``: share of the elements whose dy/dx changes by more than 1 % of its own value.

The strict step changes an element only when beta x lies exactly on a bias (measure zero for
continuous weights; the count is printed). The bias initialisation is compared per level set:
largest bias shift in weight units (|db| / beta) and the share of weights whose hard level changes.
Prints a markdown table (docs/quantizer.md, "The released variant").
"""

from __future__ import annotations

import argparse
import json

import torch

from qbench.quant.modules import WeightQuantizer
from qbench.quant.variant import QuantVariant

D = torch.float64
TEMPERATURES = (20.0, 200.0, 2000.0, 5000.0)
SOFT_CHOICES = ("clamp", "weight_t_cap", "unit_t_weight_backward")


def _soft(q: WeightQuantizer, w: torch.Tensor, T: float) -> tuple[torch.Tensor, torch.Tensor]:
    q.state.set_temperature(T)
    x = w.clone().requires_grad_()
    y = q(x)
    y.sum().backward()
    return y.detach(), x.grad


def _quantizer(levels: str, variant: QuantVariant, w: torch.Tensor, init_from: WeightQuantizer | None = None):
    q = WeightQuantizer(levels, variant=variant).double()
    if init_from is None:
        q.initialize(w)
    else:
        q.load_state_dict(init_from.state_dict())
    return q


def soft_rows(w: torch.Tensor, levels: str) -> list[dict]:
    paper = _quantizer(levels, QuantVariant(), w)
    rows = []
    for choice in SOFT_CHOICES:
        q = _quantizer(levels, QuantVariant(**{choice: True}), w, init_from=paper)
        for T in TEMPERATURES:
            y0, g0 = _soft(paper, w, T)
            y1, g1 = _soft(q, w, T)
            dg = (g1 - g0).abs()
            rows.append({"levels": levels, "choice": choice, "T": T,
                         "max_dy_over_alpha": float((y1 - y0).abs().max() / paper.alpha.detach()),
                         "max_dg_rel": float(dg.max() / g0.abs().max()),
                         "g_changed": float((dg > 0.01 * g0.abs()).double().mean())})
    return rows


def strict_count(w: torch.Tensor, levels: str) -> int:
    paper = _quantizer(levels, QuantVariant(), w)
    strict = _quantizer(levels, QuantVariant(strict_step=True), w, init_from=paper)
    paper.state.set_mode("hard")
    strict.state.set_mode("hard")
    with torch.no_grad():
        return int((paper(w) != strict(w)).sum())


def init_rows(w: torch.Tensor) -> list[dict]:
    rows = []
    for levels in ("ternary", "3bit_pm4", "5bit"):
        paper = _quantizer(levels, QuantVariant(), w)
        rel = _quantizer(levels, QuantVariant(point_midpoint_init=True), w)
        beta = float(paper.beta.detach())
        db = (rel.biases - paper.biases).abs() / beta
        # the largest shift away from the zero band (levels with one): where the two rules agree
        # on what they compute, centre midpoints vs point midpoints
        band = (paper.biases.abs() - 0.05).abs() < 1e-6
        paper.state.set_mode("hard")
        rel.state.set_mode("hard")
        with torch.no_grad():
            changed = float((paper(w) != rel(w)).double().mean())
        rows.append({"levels": levels, "biases_paper": [round(float(b), 4) for b in paper.biases],
                     "biases_released": [round(float(b), 4) for b in rel.biases],
                     "max_db_weight_units": float(db.max()),
                     "max_db_outside_band_weight_units": float(db[~band].max()) if (~band).any() else None,
                     "level_changed": changed})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=64 * 64 * 3 * 3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(args.seed)
    w = torch.randn(args.numel, generator=g, dtype=D) * 0.05
    out = {"numel": args.numel, "seed": args.seed, "soft": soft_rows(w, "binary") + soft_rows(w, "3bit_pm4"),
           "strict_step_changed": {lv: strict_count(w, lv) for lv in ("binary", "ternary", "3bit_pm4")},
           "init": init_rows(w)}
    print(f"N(0, 0.05) weights, {args.numel} elements, float64, seed {args.seed}\n")
    print("| levels | choice | T | max abs dy / alpha | max abs dg / max abs g | dy/dx changed > 1 % |")
    print("|---|---|---|---|---|---|")
    for r in out["soft"]:
        print(f"| {r['levels']} | {r['choice']} | {r['T']:g} | {r['max_dy_over_alpha']:.2e} | "
              f"{r['max_dg_rel']:.2e} | {100 * r['g_changed']:.1f} % |")
    print(f"\nstrict_step: elements whose hard level changes: {out['strict_step_changed']}\n")
    print("| levels | paper biases (beta x) | released biases (beta x) | max abs db / beta | "
          "same, outside the +-0.05 band | weights changing level |")
    print("|---|---|---|---|---|---|")
    for r in out["init"]:
        outside = "-" if r["max_db_outside_band_weight_units"] is None else f"{r['max_db_outside_band_weight_units']:.2e}"
        print(f"| {r['levels']} | {r['biases_paper'] if len(r['biases_paper']) <= 6 else '(30)'} | "
              f"{r['biases_released'] if len(r['biases_released']) <= 6 else '(30)'} | "
              f"{r['max_db_weight_units']:.2e} | {outside} | {100 * r['level_changed']:.1f} % |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
