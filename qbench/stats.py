"""Intervals for differences of accuracy between cells, from per-image results of several seeds.

A run's accuracy varies for two reasons: which test images were drawn (test sampling) and which
seed trained it (training noise). Every run of a scale is evaluated on the same test images, so
a cell's results form a seeds x images matrix of 0/1 correctness, and the two sources are
crossed random effects. For a linear contrast of cell means (``a - b``, or a difference of
differences) the variance of the estimate is estimated from mean squares of those matrices
(the moment estimator for crossed random effects, Owen 2007, "The pigeonhole bootstrap",
Ann. Appl. Stat. 1(2)), and the interval is a Student-t interval with Welch-Satterthwaite
degrees of freedom, so that three seeds give an honest (wide) interval rather than a bootstrap
that treats three values as the population. docs/statistics.md gives the derivation and the
simulated coverage.

- Cells whose seed lists are identical (and contain at least two seeds) are paired by seed:
  the contrast is formed per seed and image first, which removes noise that the cells share
  (the same batch order, the same pretrained start).
- A ``fixed`` cell is a reference that does not vary: the one pretrained full-precision model
  the other cells fine-tune. Inference is conditional on it, as the paper's is; its images
  still count for test sampling.
- A non-fixed cell with a single seed has no estimable training noise: the interval then
  covers test sampling only and says so (``seed_noise`` False); verdicts treat it as
  inconclusive.
- Results without per-image values (detection mAP) are matrices with one column: only the
  seed-to-seed variance enters (``test_sampling`` False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A contrast's estimate and its interval.

    Args:
        effect: the estimate (same unit as the inputs, e.g. percentage points).
        low: lower bound.
        high: upper bound.
        se: estimated standard error.
        df: Welch-Satterthwaite degrees of freedom (inf: normal).
        seed_noise: training noise was estimated (every non-fixed cell has >= 2 seeds).
        test_sampling: test-image sampling is part of the interval.
        paired_seeds: the contrast was formed per seed.
        var_seeds: the part of se**2 from training noise.
        var_images: the part of se**2 from test sampling.
        seeds: number of seeds of the (random) cells, smallest over cells.
        images: number of test images (1: per-run values only).
    """

    effect: float
    low: float
    high: float
    se: float
    df: float
    seed_noise: bool
    test_sampling: bool
    paired_seeds: bool
    var_seeds: float = 0.0
    var_images: float = 0.0
    seeds: int = 0
    images: int = 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def _mean_squares(y: np.ndarray) -> tuple[float, float]:
    """Row mean square and residual mean square of a two-way (seeds x images) layout."""
    s, n = y.shape
    grand = y.mean()
    rows = y.mean(axis=1)
    cols = y.mean(axis=0)
    ms_row = n * float(((rows - grand) ** 2).sum()) / (s - 1)
    if n < 2:
        return ms_row, 0.0
    resid = y - rows[:, None] - cols[None, :] + grand
    ms_res = float((resid ** 2).sum()) / ((s - 1) * (n - 1))
    return ms_row, ms_res


def contrast_interval(results: dict[str, np.ndarray], weights: dict[str, float],
                      seeds: dict[str, tuple[int, ...]] | None = None,
                      fixed: frozenset[str] | set[str] = frozenset(),
                      level: float = LEVEL) -> Interval:
    """Interval for ``sum_c weights[c] * mean(results[c])``.

    Args:
        results: cell -> (seeds x images) array of per-image values (0/1 correctness, or one
            column of per-run values such as mAP); every array has the same number of columns,
            the same images in the same order.
        weights: cell -> contrast weight (e.g. +1 / -1).
        seeds: cell -> the seeds of its rows, for pairing; None: no pairing.
        fixed: cells treated as a fixed reference (no training noise).
        level: confidence level.

    Raises:
        ValueError: cells without results, or arrays whose image counts differ.
    """
    cells = [c for c in weights if weights[c] != 0]
    missing = [c for c in cells if c not in results]
    if missing:
        raise ValueError(f"no results for {missing}")
    mats = {c: np.asarray(results[c], dtype=np.float64) for c in cells}
    for c, m in mats.items():
        if m.ndim != 2 or m.shape[0] < 1:
            raise ValueError(f"{c}: expected a (seeds x images) array, got shape {m.shape}")
    n = {m.shape[1] for m in mats.values()}
    if len(n) != 1:
        raise ValueError(f"cells have different numbers of images: "
                         f"{ {c: m.shape[1] for c, m in mats.items()} }")
    n_img = n.pop()
    effect = float(sum(weights[c] * mats[c].mean() for c in cells))
    random = [c for c in cells if c not in fixed]
    seed_noise = all(mats[c].shape[0] >= 2 for c in random)
    paired = (seeds is not None and seed_noise and len(random) > 1
              and len({tuple(seeds[c]) for c in random}) == 1)

    # terms: (coefficient * mean square, degrees of freedom)
    terms: list[tuple[float, float]] = []
    var_seeds = 0.0
    if paired:
        groups = [(1.0, sum(weights[c] * mats[c] for c in random))]
    else:
        groups = [(weights[c] ** 2, mats[c]) for c in random]
    for w2, y in groups:
        s = y.shape[0]
        if s < 2:
            continue
        ms_row, ms_res = _mean_squares(y)
        seed_part = w2 * (ms_row - ms_res) / (s * n_img)
        if seed_part > 0:  # a negative estimate of a variance component counts as zero
            var_seeds += seed_part
            terms.append((w2 * ms_row / (s * n_img), s - 1))
            if n_img > 1:
                terms.append((-w2 * ms_res / (s * n_img), (s - 1) * (n_img - 1)))
    if n_img > 1:
        col = sum(weights[c] * mats[c].mean(axis=0) for c in cells)
        terms.append((float(np.var(col, ddof=1)) / n_img, n_img - 1))
    var = sum(v for v, _ in terms)
    if var <= 0:
        se, df = 0.0, math.inf
    else:
        se = math.sqrt(var)
        denom = sum(v * v / d for v, d in terms)
        df = var * var / denom if denom > 0 else math.inf
    q = t_quantile(df, level)
    n_seeds = min((mats[c].shape[0] for c in random), default=0)
    return Interval(effect, effect - q * se, effect + q * se, se, df, seed_noise, n_img > 1, paired,
                    var_seeds, max(var - var_seeds, 0.0), n_seeds, n_img)


def seeds_to_resolve(interval: Interval, target: float, max_seeds: int = 64,
                     level: float = LEVEL) -> int | None:
    """Fewest seeds per cell whose projected half-width is below ``target``.

    Projection: training noise shrinks as 1/seeds, test sampling stays; t quantile with
    seeds - 1 degrees of freedom (conservative). None when no seed count up to ``max_seeds``
    suffices (test sampling alone is too wide, or ``target`` <= 0).

    Args:
        interval: an interval of this scale.
        target: the half-width that would decide the claim.
        max_seeds: search limit.
        level: confidence level.
    """
    if target <= 0 or interval.seeds < 1:
        return None
    for s in range(2, max_seeds + 1):
        var = interval.var_seeds * interval.seeds / s + interval.var_images
        if t_quantile(s - 1, level) * math.sqrt(var) < target:
            return s
    return None


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile (normal for infinite df)."""
    if not math.isfinite(df):
        return float(_st.norm.ppf(0.5 + level / 2))
    return float(_st.t.ppf(0.5 + level / 2, df))
