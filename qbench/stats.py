"""Intervals for differences of accuracy between cells, from per-image results of several seeds.

A run's accuracy varies for two reasons: which test images were drawn (test sampling) and which
seed trained it (training noise). Every run of a scale is evaluated on the same test images, so
a cell's results form a seeds x images matrix of 0/1 correctness, and the two sources are
crossed random effects. For a linear contrast of cell means (``a - b``, or a difference of
differences) the variance of the estimate is estimated from mean squares of those matrices
(the moment estimator for crossed random effects, Owen 2007, "The pigeonhole bootstrap",
Ann. Appl. Stat. 1(2)). The seed term keeps its seeds - 1 degrees of freedom whatever its size,
and the interval's multiplier (``generalized_quantile``) covers at 0.94-0.97 in every simulated
case, so that two or three seeds give an honest (wide) interval rather than a bootstrap that
treats three values as the population. ``power`` and ``design_for_power`` project an interval to
more seeds and test images. docs/statistics.md gives the derivation and the simulated coverage.

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
from functools import lru_cache

import numpy as np
from scipy import stats as _st
from scipy.optimize import brentq
from scipy.special import ndtr

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A contrast's estimate and its interval.

    Args:
        effect: the estimate (same unit as the inputs, e.g. percentage points).
        low: lower bound.
        high: upper bound.
        se: estimated standard error.
        df: degrees of freedom of the Student t with the interval's multiplier (inf: normal).
        seed_noise: training noise was estimated (every non-fixed cell has >= 2 seeds).
        test_sampling: test-image sampling is part of the interval.
        paired_seeds: the contrast was formed per seed.
        var_seeds: the part of se**2 from training noise (sigma_seed^2 / seeds, summed over cells).
        var_images: the part of se**2 from test sampling (sigma_image^2 / images).
        var_interaction: the seed x image part (sigma_e^2 / (seeds images)), together with
            var_seeds the mean square of the seeds (its estimate of var_seeds may be negative:
            then var_seeds is 0 and this term carries the whole seed mean square).
        seeds: number of seeds of the (random) cells, smallest over cells.
        images: number of test images (1: per-run values only).
        var_interaction: see var_seeds.
        seed_df: degrees of freedom of the seed term (0: none).
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
    var_interaction: float = 0.0
    seed_df: float = 0.0

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


def _contrast_matrices(results: dict[str, np.ndarray],
                       weights: dict[str, float]) -> tuple[list[str], dict[str, np.ndarray], int]:
    """The cells with a nonzero weight, their (seeds x images) float arrays, and the common
    number of images; ValueError for a missing cell or arrays that do not line up."""
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
    return cells, mats, n_img


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
    cells, mats, n_img = _contrast_matrices(results, weights)
    effect = float(sum(weights[c] * mats[c].mean() for c in cells))
    random = [c for c in cells if c not in fixed]
    seed_noise = all(mats[c].shape[0] >= 2 for c in random)
    paired = (seeds is not None and seed_noise and len(random) > 1
              and len({tuple(seeds[c]) for c in random}) == 1)

    # Variance of the estimate, grouped so that every term is a non-negative mean square:
    #   seed terms  w2 * MS_seeds / (S N)                        df S - 1   (sigma_a^2/S + sigma_e^2/(S N))
    #   image term  s^2(contrast's image means) / N - sum w2 * MS_res / (S N)
    #                                                             df N - 1   (sigma_b^2/N, + fixed cells' sampling)
    # The sum is the same unbiased moment estimator as (MS_seeds - MS_res)/(S N) + s^2/N, but a
    # seed term is never dropped when MS_seeds < MS_res: dropping it let the degrees of freedom
    # jump from S - 1 to N - 1, and 2-seed intervals then covered 42 % of the time
    # (docs/statistics.md).
    seed_terms: list[tuple[float, float]] = []
    var_seeds = var_inter = residual = 0.0
    if paired:
        groups = [(1.0, sum(weights[c] * mats[c] for c in random))]
    else:
        groups = [(weights[c] ** 2, mats[c]) for c in random]
    for w2, y in groups:
        s = y.shape[0]
        if s < 2:
            continue
        ms_row, ms_res = _mean_squares(y)
        a = w2 * ms_row / (s * n_img)
        seed_terms.append((a, s - 1))
        part = max(w2 * (ms_row - ms_res) / (s * n_img), 0.0)
        var_seeds += part
        var_inter += a - part
        residual += w2 * ms_res / (s * n_img)
    terms = [t for t in seed_terms if t[0] > 0]
    var_images = 0.0
    if n_img > 1:
        col = sum(weights[c] * mats[c].mean(axis=0) for c in cells)
        var_images = max(float(np.var(col, ddof=1)) / n_img - residual, 0.0)
        if var_images > 0:
            terms.append((var_images, n_img - 1))
    var = sum(v for v, _ in terms)
    if seed_terms and all(a <= 0 for a, _ in seed_terms):
        # seed means that tie exactly (0.1-point steps at 1000 images): the seed x image part,
        # which MS_res knows to many df, instead of a zero-width interval
        var = max(var, residual)
    if var <= 0:
        se, df, q = 0.0, math.inf, t_quantile(math.inf, level)
    else:
        se = math.sqrt(var)
        q = generalized_quantile(seed_terms, var_images, level, floor=residual)
        df = equivalent_df(q, level)
    n_seeds = min((mats[c].shape[0] for c in random), default=0)
    return Interval(effect, effect - q * se, effect + q * se, se, df, seed_noise, n_img > 1, paired,
                    var_seeds, var_images, n_seeds, n_img, var_inter,
                    pooled_df(seed_terms) if seed_terms else 0.0)


_PIVOT_DRAWS = 4000


@lru_cache(maxsize=256)
def _chi2_grid(df: float) -> np.ndarray:
    """Chi-square quantiles at the midpoints of ``_PIVOT_DRAWS`` equal-probability strata: a
    deterministic stand-in for random draws (the pivot's integral by the midpoint rule)."""
    return _st.chi2.ppf((np.arange(_PIVOT_DRAWS) + 0.5) / _PIVOT_DRAWS, df)


def generalized_quantile(seed_terms: list[tuple[float, float]], var_fixed: float,
                         level: float = LEVEL, floor: float = 0.0) -> float:
    """Multiplier ``q`` of the standard error for a ``level`` interval of a sum of variance
    terms: seed mean squares ``(variance, df)`` with few degrees of freedom and a term known
    precisely (the image term, ``var_fixed``).

    A generalized pivotal quantity (Weerahandi 1993, "Generalized confidence intervals", JASA
    88(423)): the estimate's error is ``Z * sqrt(sum a_g df_g / W_g + B)`` with ``W_g`` chi-square
    on ``df_g``; ``q * se`` is the ``level`` quantile of its absolute value. With one seed term
    and no image term this is Student's t on ``df`` exactly; with the image term dominating it
    tends to the normal quantile. Unlike a Welch-Satterthwaite t, it does not shrink the
    interval when a seed mean square happens to come out small (the cause of the 2-seed
    under-coverage; docs/statistics.md). Deterministic: stratified chi-square quantiles.
    """
    if not seed_terms:
        return t_quantile(math.inf, level)
    if all(a <= 0 for a, _ in seed_terms):  # seed means that tie exactly: no ratio to go by
        return t_quantile(min(k for _, k in seed_terms), level)
    seed_terms = [(a, k) for a, k in seed_terms if a > 0]
    # several seed terms (unpaired cells) pool into one, with the df of ``pooled_df``
    a = sum(v for v, _ in seed_terms)
    k = pooled_df(seed_terms)
    var = a + var_fixed
    # the seed x image part of the seed mean squares (``floor``) is known from the residual
    # mean square to many degrees of freedom: only the part above it is uncertain
    floor = min(max(floor, 0.0), a)
    sd = np.sqrt(var_fixed + floor + np.maximum(a * k / _chi2_grid(k) - floor, 0.0))
    inv = 1.0 / sd

    def excess(h: float) -> float:
        return float(np.mean(ndtr(h * inv))) - (1.0 + level) / 2.0

    hi = math.sqrt(var) * 2.0
    while excess(hi) < 0:
        hi *= 2.0
    pivot = brentq(excess, 0.0, hi, xtol=1e-7 * hi) / math.sqrt(var)
    # The pivot alone over-covers when both terms matter (0.988 at 1 df), the Welch-Satterthwaite
    # t alone under-covers when the seed term comes out small (0.873 at 1 df); the weighted
    # geometric mean pivot^0.6 welch^0.4 stays within 0.940-0.982 at 1 df, 0.945-0.968 at 2 and
    # 0.948-0.962 at 3 over every ratio of the two terms (docs/statistics.md, tests/test_stats.py).
    welch = t_quantile(satterthwaite([(a, k), (var_fixed, math.inf)]) if var_fixed > 0 else k, level)
    return pivot ** 0.6 * welch ** 0.4


def equivalent_df(q: float, level: float = LEVEL) -> float:
    """Degrees of freedom of the Student t whose quantile is ``q`` (inf at or below the normal
    quantile): how the report states the width of an interval."""
    z = t_quantile(math.inf, level)
    if q <= z * (1 + 1e-9):
        return math.inf
    return brentq(lambda d: t_quantile(d, level) - q, 0.05, 1e7)


def pooled_df(terms: list[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of independent mean-square terms ``(variance, df)``: the
    Welch-Satterthwaite ratio with its numerator and denominator estimated without bias
    (E[v^2] = V^2 (1 + 2/df) for a mean square on df), kept between the smallest df and their
    sum. The plain plug-in ratio is biased low: for two cells of equal seed noise, 2 seeds each,
    it gives about 1 df instead of 2 and intervals that cover 98 % (docs/statistics.md)."""
    if len(terms) == 1:
        return float(terms[0][1])
    total = sum(v for v, _ in terms)
    den = sum(v * v / (d + 2) for v, d in terms)
    num = total * total - sum(2 * v * v / (d + 2) for v, d in terms)
    low, high = min(d for _, d in terms), sum(d for _, d in terms)
    if den <= 0:
        return float(high)
    return float(min(max(num / den, low), high))


def satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent mean-square terms
    ``(variance, df)``; inf when every term has infinite df."""
    var = sum(v for v, _ in terms)
    denom = sum(v * v / d for v, d in terms if math.isfinite(d))
    return var * var / denom if denom > 0 else math.inf


def projected(interval: Interval, seeds: int, images: int) -> tuple[float, float, float]:
    """Variance of the same contrast with ``seeds`` seeds per (random) cell and ``images`` test
    images: ``(seed term, image term, seed-term df)``. Training noise shrinks as 1/seeds, test
    sampling as 1/images, the seed x image part as 1/(seeds images); the components are this
    interval's estimates."""
    s0, n0 = max(interval.seeds, 1), max(interval.images, 1)
    sig_seed = interval.var_seeds * s0
    sig_inter = interval.var_interaction * s0 * n0
    sig_image = interval.var_images * n0
    if interval.images <= 1:  # per-run values: no image dimension to grow
        images = 1
    a = sig_seed / seeds + sig_inter / (seeds * images)
    b = sig_image / images
    per_seed = interval.seed_df / (s0 - 1) if s0 > 1 and interval.seed_df else 1.0
    return a, b, per_seed * (seeds - 1)


@lru_cache(maxsize=64)
def _quantile_curve(df: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``generalized_quantile`` of one seed term on ``df`` as a function of the seed term's share
    of the variance (a grid, for the power calculation)."""
    share = np.linspace(0.0, 1.0, 41)
    q = np.array([generalized_quantile([(r, df)], 1.0 - r, level) if r > 0 else t_quantile(math.inf, level)
                  for r in share])
    return share, q


def power(interval: Interval, effect: float, low: float, high: float, seeds: int, images: int,
          level: float = LEVEL, draws: int = 4000) -> float:
    """Probability that a rerun with ``seeds`` and ``images`` gives an interval inside
    ``(low, high)`` when the true effect is ``effect`` (e.g. ``(0, inf)``: the direction is
    decided; ``(-d, d)``: an effect of interest is excluded).

    The rerun's estimate is normal around ``effect`` with the projected variance; its seed term
    is a scaled chi-square on the projected df, independent of the estimate; the interval is
    built as ``contrast_interval`` builds it (``generalized_quantile``). Deterministic draws.

    Args:
        interval: an interval of this scale (its variance components are projected).
        effect: the true effect assumed.
        low: lower limit the interval must lie above (-inf: none).
        high: upper limit it must lie below (inf: none).
        seeds: seeds per cell of the rerun.
        images: test images of the rerun.
        level: confidence level.
        draws: Monte Carlo draws.
    """
    a, b, k = projected(interval, seeds, images)
    if a + b <= 0:
        return float(low < effect < high)
    rng = np.random.default_rng(7)
    est = effect + math.sqrt(a + b) * rng.standard_normal(draws)
    if k >= 1 and a > 0:
        a_hat = a * rng.chisquare(k, draws) / k
        share_grid, q_grid = _quantile_curve(float(k), level)
        q = np.interp(a_hat / (a_hat + b), share_grid, q_grid)
    else:
        a_hat, q = np.full(draws, a), np.full(draws, t_quantile(math.inf, level))
    half = q * np.sqrt(a_hat + b)
    return float(np.mean((est - half > low) & (est + half < high)))


def design_for_power(interval: Interval, effect: float, low: float, high: float, target: float = 0.8,
                     max_seeds: int = 64, image_factors: tuple[int, ...] = (1, 2, 5, 10),
                     level: float = LEVEL) -> tuple[int, int, float] | None:
    """Fewest seeds per cell (and, if the seeds alone do not suffice, more test images) for
    ``target`` power to decide (``power``), searching upward from this interval's seed and image
    counts: ``(seeds, images, power)``, or None when ``max_seeds`` seeds with
    ``max(image_factors)`` times the images do not suffice.

    Args:
        interval: an interval of this scale.
        effect: the true effect assumed (the paper's, or 0 for "absent").
        low: see ``power``.
        high: see ``power``.
        target: the power wanted.
        max_seeds: search limit.
        image_factors: test-set sizes tried, as multiples of this scale's.
        level: confidence level.
    """
    if not interval.seed_noise or interval.seeds < 1:
        return None
    start = max(interval.seeds, 2)
    factors = image_factors if interval.images > 1 else (1,)
    for f in factors:
        images = interval.images * f
        for s in range(start, max_seeds + 1):
            p = power(interval, effect, low, high, s, images, level)
            if p >= target:
                return s, images, p
    return None


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile (normal for infinite df)."""
    if not math.isfinite(df):
        return float(_st.norm.ppf(0.5 + level / 2))
    return float(_st.t.ppf(0.5 + level / 2, df))
