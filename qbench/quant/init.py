"""Initialisation of the quantizer parameters (paper Sec. 4.1).

- ``initial_beta``: beta = 5p / (4q), alpha = 1 / beta, so every input lies in the linear region.
- ``kmeans_1d``: exact 1-D k-means by dynamic programming over sorted values (optimal
  clusters in 1-D are contiguous runs of the sorted data).
- ``kmeans_biases``: biases from the sorted cluster centres, with the two steps around zero
  forced to -0.05 / +0.05 for weight sets that contain 0 (the paper's rule); or, as the
  authors' released code places them, between the clusters' extreme points without that band.
- ``linear_biases``: evenly spaced biases over the observed range (Table 5's "linear").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .levels import LevelSet

ZERO_BAND = 0.05  # paper: b = -0.05 / +0.05 around zero, "5% of the values in [-1, 1]"
# summary size of kmeans_1d: at 512 the 5-bit DP lost to sklearn k-means (10 restarts) on an
# N(0, 0.05) 64x64x3x3 conv (SSE 1847.3 vs 1840.3); 2048 gives 1822.2 (1024: 1822.9), and 2048
# beats sklearn on every paper level set in tests/quant/test_init.py
DEFAULT_MAX_POINTS = 2048


def initial_beta(levels: LevelSet, max_abs: float) -> float:
    """beta = 5p / (4q) with p = max|Y| and q = max|x| (Sec. 4.1).

    Args:
        levels: target level set.
        max_abs: q, the largest magnitude of the values to quantize (must be > 0).
    """
    if not (max_abs > 0 and math.isfinite(max_abs)):
        raise ValueError(f"cannot initialise beta: max |x| is {max_abs} (all-zero or non-finite input)")
    return 5.0 * levels.p / (4.0 * max_abs)


def _weighted_summary(values: torch.Tensor, max_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted points with weights. More than ``max_points`` values are cut, in sorted order,
    into ``max_points`` equal-count groups represented by their mean; k-means is then exact
    on the summary and its boundaries are off by at most one group (1/max_points quantile)."""
    v = values.detach().reshape(-1).cpu()
    if v.dtype not in (torch.float32, torch.float64):  # half types have no numpy sort
        v = v.float()
    v = v.numpy()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("k-means needs at least one finite value")
    # numpy sorts in the input precision (37.7M float32 on one thread: 0.3 s, torch.sort 12 s);
    # widening a float afterwards is exact and keeps the order
    v = np.sort(v).astype(np.float64)
    if v.size <= max_points:
        return torch.from_numpy(v), torch.ones(v.size, dtype=torch.float64)
    # value t belongs to group floor(t * max_points / n): contiguous runs starting here
    starts = (np.arange(max_points, dtype=np.int64) * v.size + max_points - 1) // max_points
    sums = np.add.reduceat(v, starts)
    counts = np.diff(np.append(starts, v.size)).astype(np.float64)
    return torch.from_numpy(sums / counts), torch.from_numpy(counts)


def _next_layer(prev: np.ndarray, W: np.ndarray, S1: np.ndarray, S2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One DP layer ``D[i] = min_{1 <= s <= i} prev[s - 1] + SSE(s..i)`` with its leftmost argmin.

    The leftmost optimal start is non-decreasing in ``i`` (the SSE cost satisfies the quadrangle
    inequality; Gronlund et al. 2017, "Fast exact k-means, k-medians and Bregman divergence
    clustering in 1D"), so divide and conquer over ``i`` needs O(m log m) cost evaluations. All
    sub-problems of one recursion level are evaluated together as flat arrays.
    """
    m = prev.shape[0]
    D = np.full(m, np.inf)
    arg = np.zeros(m, dtype=np.int64)
    before = np.concatenate([[np.inf], prev[:-1]])  # before[s]: best cost of 0..s-1
    i_lo, i_hi = np.array([0]), np.array([m - 1])
    s_lo, s_hi = np.array([0]), np.array([m - 1])
    while i_lo.size:
        mid = (i_lo + i_hi) // 2
        hi = np.minimum(s_hi, mid)
        count = hi - s_lo + 1
        starts = np.concatenate([[0], np.cumsum(count)[:-1]])
        seg = np.repeat(np.arange(mid.size), count)
        s = s_lo[seg] + np.arange(seg.size) - starts[seg]
        i = mid[seg]
        w = W[i + 1] - W[s]
        s1 = S1[i + 1] - S1[s]
        val = before[s] + np.maximum((S2[i + 1] - S2[s]) - s1 * s1 / np.maximum(w, 1e-300), 0.0)
        best = np.minimum.reduceat(val, starts)
        first = np.where(val == best[seg], np.arange(val.size), val.size)
        opt = s[np.minimum.reduceat(first, starts)]
        D[mid], arg[mid] = best, opt
        left = mid > i_lo
        right = mid < i_hi
        i_lo, i_hi, s_lo, s_hi = (np.concatenate([i_lo[left], mid[right] + 1]),
                                  np.concatenate([mid[left] - 1, i_hi[right]]),
                                  np.concatenate([s_lo[left], opt[right]]),
                                  np.concatenate([opt[left], s_hi[right]]))
    return D, arg


def kmeans_1d(values: torch.Tensor, k: int, weights: torch.Tensor | None = None,
              max_points: int = DEFAULT_MAX_POINTS) -> tuple[torch.Tensor, float]:
    """Globally optimal 1-D k-means (minimum within-cluster sum of squares).

    Dynamic programming over the sorted values: ``D[j][i]`` is the best cost of splitting
    the first ``i + 1`` points into ``j + 1`` contiguous clusters. O(k m log m) for m points
    (divide and conquer over the monotone optimal split, ``_next_layer``).

    Args:
        values: data, any shape (flattened). With ``weights=None`` and more than
            ``max_points`` values the data are first summarised into ``max_points``
            equal-count groups (exact on the summary).
        k: number of clusters (>= 1). With fewer distinct points than k, the missing
            centres are filled by splitting the widest gaps evenly.
        weights: optional non-negative weights of ``values`` (then no summarising).
        max_points: summary size.

    Returns:
        ``(centres, cost)``: sorted centres (k,) float64 and the weighted SSE.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if weights is None:
        x, w = _weighted_summary(values, max_points)
    else:
        x = values.detach().reshape(-1).to(torch.float64).cpu()
        w = weights.detach().reshape(-1).to(torch.float64).cpu()
        if x.shape != w.shape:
            raise ValueError("values and weights must have the same number of elements")
        order = torch.argsort(x)
        x, w = x[order], w[order]
    m = x.numel()
    if m <= k:
        centres = _pad_centres(x, k)
        return centres, 0.0

    # prefix sums for O(1) cluster cost: SSE(s..i) = S2 - S1^2 / W
    x_np, w_np = x.numpy(), w.numpy()
    W = np.concatenate([[0.0], np.cumsum(w_np)])
    S1 = np.concatenate([[0.0], np.cumsum(w_np * x_np)])
    S2 = np.concatenate([[0.0], np.cumsum(w_np * x_np * x_np)])
    D = np.maximum(S2[1:] - S1[1:] ** 2 / np.maximum(W[1:], 1e-300), 0.0)  # one cluster covering 0..i
    back = []
    for _ in range(1, k):
        D, arg = _next_layer(D, W, S1, S2)
        back.append(arg)
    # backtrack the cluster boundaries
    ends = [m - 1]
    end = m - 1
    for arg in reversed(back):
        start = int(arg[end])
        ends.append(start - 1)
        end = start - 1
    ends = list(reversed(ends))  # inclusive ends of clusters 0..k-1
    centres, start = [], 0
    for e in ends:
        centres.append(float(S1[e + 1] - S1[start]) / float(W[e + 1] - W[start]))
        start = e + 1
    return torch.tensor(centres, dtype=torch.float64), float(D[m - 1])


def _pad_centres(x: torch.Tensor, k: int) -> torch.Tensor:
    centres = sorted(x.tolist())
    if not centres:
        centres = [0.0]
    while len(centres) < k:
        if len(centres) == 1:
            centres.append(centres[0] + 1.0)
            continue
        gaps = [b - a for a, b in zip(centres, centres[1:])]
        g = max(range(len(gaps)), key=gaps.__getitem__)
        centres.insert(g + 1, (centres[g] + centres[g + 1]) / 2)
    return torch.tensor(centres, dtype=torch.float64)


BOUNDARIES = ("centres", "points")


def kmeans_biases(scaled: torch.Tensor, levels: LevelSet, max_points: int = DEFAULT_MAX_POINTS,
                  force_zero_band: bool | None = None, boundaries: str = "centres") -> torch.Tensor:
    """Biases from k-means of the scaled values ``beta * x`` into n+1 clusters (Sec. 4.1).

    ``b_i = (c_i + c_{i+1}) / 2`` over the sorted centres. For weight sets containing 0, the
    two steps around 0 get ``b = -0.05, +0.05``; neighbouring biases are pushed outside that
    band if needed so the biases stay strictly increasing.

    Args:
        scaled: ``beta * x`` for the tensor(s) this quantizer serves.
        levels: target level set (n = levels.n).
        max_points: k-means summary size (see ``kmeans_1d``).
        force_zero_band: apply the ±0.05 rule; default: when 0 is an interior level and
            ``boundaries`` is "centres".
        boundaries: "centres" (the paper: midpoints of neighbouring centres) or "points" (the
            authors' released code: each value goes to its nearest centre, and a bias lies
            halfway between the largest value of one cluster and the smallest of the next; no
            zero band, and ternary weights are clustered too).
    """
    if boundaries not in BOUNDARIES:
        raise ValueError(f"boundaries must be one of {BOUNDARIES}, got {boundaries!r}")
    n = levels.n
    if force_zero_band is None:
        force_zero_band = boundaries == "centres" and 0.0 in levels.values[1:-1]
    if (levels.name == "ternary" and boundaries == "centres") or (n == 2 and force_zero_band):
        return torch.tensor([-ZERO_BAND, ZERO_BAND], dtype=torch.float64)
    if n == 1 and levels.zero_centered:
        return torch.zeros(1, dtype=torch.float64)  # binary weights: b = 0
    centres, _ = kmeans_1d(scaled, n + 1, max_points=max_points)
    b = (centres[:-1] + centres[1:]) / 2
    if boundaries == "points":
        b = _point_midpoints(scaled, b)
    if force_zero_band:
        z = levels.values.index(0.0)  # steps z-1 (Y[z-1]->0) and z (0->Y[z+1])
        b[z - 1], b[z] = -ZERO_BAND, ZERO_BAND
        for i in range(z - 2, -1, -1):
            b[i] = min(b[i], b[i + 1] - 1e-3)
        for i in range(z + 1, n):
            b[i] = max(b[i], b[i - 1] + 1e-3)
    return _strictly_increasing(b)


def _point_midpoints(scaled: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
    """Halfway between the last value at or below each cut and the first value above it (the
    cuts are the centre midpoints, so the values on either side are the nearest-centre clusters);
    a cut with no value on one side keeps its own position."""
    v = np.sort(scaled.detach().reshape(-1).cpu().to(torch.float64).numpy())
    v = v[np.isfinite(v)]
    out = cuts.clone()
    for i, c in enumerate(cuts.tolist()):
        j = int(np.searchsorted(v, c, side="right"))  # v[:j] <= c < v[j:]
        if 0 < j < v.size:
            out[i] = (v[j - 1] + v[j]) / 2
    return out


def linear_biases(scaled: torch.Tensor, levels: LevelSet) -> torch.Tensor:
    """Evenly spaced biases: the observed range of ``beta * x`` cut into n+1 equal intervals.

    Used for Table 5's "linear quantization" ablation. For signed sets the range is made
    symmetric (``[-max|u|, max|u|]``) so that 0 stays the middle of the set.

    Args:
        scaled: ``beta * x`` for the tensor(s) this quantizer serves.
        levels: target level set.
    """
    u = scaled.detach().to(torch.float64)
    if levels.zero_centered:
        hi = float(u.abs().max())
        lo = -hi
    else:
        lo, hi = float(u.min()), float(u.max())
    if not hi > lo:
        raise ValueError("cannot place linear biases on a constant tensor")
    n = levels.n
    return lo + (hi - lo) * torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)


def _strictly_increasing(b: torch.Tensor) -> torch.Tensor:
    b = b.clone()
    for i in range(1, b.numel()):
        if b[i] <= b[i - 1]:
            b[i] = b[i - 1] + 1e-6
    return b


ALPHA_INITS = ("inverse_beta", "least_squares")


def least_squares_alpha(values: torch.Tensor, levels: LevelSet, biases: torch.Tensor, beta: float) -> float:
    """Output scale that best maps the ideal quantizer onto its inputs.

    ``alpha = argmin_a sum_d (x_d - a * yhat_d)^2 = sum x yhat / sum yhat^2`` with ``yhat`` the
    Eq. 12 output before alpha. The paper's ``alpha = 1 / beta`` keeps magnitudes only when the
    biases sit halfway between ``beta``-scaled levels; with k-means biases on long-tailed
    activations it inflates small values several-fold (docs/quantizer.md).

    Args:
        values: sample of the inputs.
        levels: target level set.
        biases: step positions (units of ``beta * x``).
        beta: input scale.

    Returns:
        alpha, or ``1 / beta`` when every sample quantizes to 0.
    """
    v = values.detach().reshape(-1).to(torch.float64)
    k = torch.bucketize(v * beta, biases.detach().to(torch.float64), right=True)
    yhat = torch.tensor(levels.outputs(), dtype=torch.float64)[k]
    denom = float((yhat * yhat).sum())
    if denom == 0.0:
        return 1.0 / beta
    return float((v * yhat).sum()) / denom
