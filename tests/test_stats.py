"""qbench.stats: intervals that cover a known difference at the nominal rate, and verdicts that
follow intervals (ties and pooling no longer decide a claim)."""

from __future__ import annotations

import numpy as np
import pytest

from qbench.report.claims import verdict
from qbench.stats import Interval, contrast_interval, seeds_to_resolve


def _simulate(rng, seeds: int, images: int, diff: float, seed_sd: float, shared_sd: float,
              fixed_b: bool = False):
    """Two cells on the same test images: per-image difficulty (shared), per-cell image effects,
    per-seed training noise (partly shared by the two cells of one seed), Bernoulli outcomes.
    Returns the correctness matrices (percent) and the true difference of expected accuracy."""
    difficulty = rng.beta(8, 2, images)
    wobble_a = rng.uniform(-0.03, 0.03, images)
    wobble_b = rng.uniform(-0.03, 0.03, images)
    shared = rng.normal(0, shared_sd, seeds)
    mu_a, mu_b = 0.93 + diff, 0.93
    m_a = mu_a + shared + rng.normal(0, seed_sd, seeds)
    m_b = np.full(1, mu_b) if fixed_b else mu_b + shared + rng.normal(0, seed_sd, seeds)
    p_a = difficulty[None] * m_a[:, None] + wobble_a[None]
    p_b = difficulty[None] * m_b[:, None] + wobble_b[None]
    y_a = 100.0 * (rng.random(p_a.shape) < p_a)
    y_b = 100.0 * (rng.random(p_b.shape) < p_b)
    truth = 100.0 * 0.8 * (mu_a - mu_b)  # E[difficulty] = 0.8; wobbles average to zero
    return y_a, y_b, truth


@pytest.mark.parametrize("case", [
    dict(seed_sd=0.01, shared_sd=0.0),    # training noise and test sampling comparable
    dict(seed_sd=0.003, shared_sd=0.0),   # test sampling dominates
    dict(seed_sd=0.01, shared_sd=0.02),   # seeds shared by the two cells (paired)
    dict(seed_sd=0.01, shared_sd=0.0, fixed_b=True),  # against a fixed FP reference
])
def test_coverage_is_nominal_on_simulated_predictions(case):
    rng = np.random.default_rng(2026)
    hits, reps = 0, 1000
    for _ in range(reps):
        y_a, y_b, truth = _simulate(rng, seeds=3, images=1000, diff=0.02, **case)
        seeds = {"a": (0, 1, 2), "b": (0,) if case.get("fixed_b") else (0, 1, 2)}
        iv = contrast_interval({"a": y_a, "b": y_b}, {"a": 1.0, "b": -1.0}, seeds=seeds,
                               fixed={"b"} if case.get("fixed_b") else set())
        hits += iv.low <= truth <= iv.high
    assert 0.93 <= hits / reps <= 0.97


def test_ignoring_seed_noise_would_undercover():
    # The same data judged by test sampling alone (one seed's view) covers far less often: the
    # seed component is what makes the interval honest.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(300):
        y_a, y_b, truth = _simulate(rng, 3, 1000, 0.02, seed_sd=0.04, shared_sd=0.0)
        iv = contrast_interval({"a": y_a[:1], "b": y_b[:1]}, {"a": 1.0, "b": -1.0})
        hits += iv.low <= truth <= iv.high
        assert not iv.seed_noise
    assert hits / 300 < 0.75


def test_identical_cells_tie_is_inconclusive_not_supported():
    rng = np.random.default_rng(0)
    y = 100.0 * (rng.random((3, 500)) < 0.8)
    iv = contrast_interval({"a": y, "b": y.copy()}, {"a": 1.0, "b": -1.0}, seeds={"a": (0, 1, 2), "b": (0, 1, 2)})
    assert iv.effect == 0.0 and iv.low <= 0.0 <= iv.high
    assert verdict("superiority", iv, 0.0) != "reproduced"


def test_pooling_extra_cells_cannot_flip_a_pairwise_claim():
    # A comparison is two named cells: adding runs of other cells (the T-slope cells the old
    # trend claim pooled) changes nothing.
    rng = np.random.default_rng(1)
    a = 100.0 * (rng.random((3, 800)) < 0.80)
    b = 100.0 * (rng.random((3, 800)) < 0.80)
    extra = 100.0 * (rng.random((3, 800)) < 0.95)
    one = contrast_interval({"a": a, "b": b}, {"a": 1.0, "b": -1.0})
    two = contrast_interval({"a": a, "b": b, "x": extra}, {"a": 1.0, "b": -1.0})
    assert one == two


def test_contrast_weights_and_fixed_reference():
    rng = np.random.default_rng(3)
    cells = {c: 100.0 * (rng.random((3, 400)) < p) for c, p in (("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.75))}
    cells["fp"] = cells.pop("d")[:1]
    w = {"a": 1.0, "b": -1.0, "c": -1.0, "fp": 1.0}
    iv = contrast_interval(cells, w, fixed={"fp"})
    assert iv.effect == pytest.approx(sum(w[c] * cells[c].mean() for c in w))
    assert iv.low < iv.effect < iv.high and iv.seed_noise and iv.test_sampling
    with pytest.raises(ValueError, match="different numbers of images"):
        contrast_interval({"a": cells["a"], "b": cells["b"][:, :10]}, {"a": 1.0, "b": -1.0})


def test_per_run_values_use_seed_noise_only():
    iv = contrast_interval({"a": np.array([[20.0], [21.0], [22.0]]), "fp": np.array([[25.0]])},
                           {"a": 1.0, "fp": -1.0}, fixed={"fp"})
    assert iv.effect == pytest.approx(-4.0) and not iv.test_sampling
    assert iv.se == pytest.approx(np.std([20, 21, 22], ddof=1) / np.sqrt(3))


@pytest.mark.parametrize("test, lo, hi, expect", [
    ("superiority", 0.1, 2.0, "reproduced"), ("superiority", -2.0, -0.1, "contradicted"),
    ("superiority", -0.1, 2.0, "inconclusive"),
    ("noninferiority", -0.4, 1.0, "reproduced"), ("noninferiority", -3.0, -0.6, "contradicted"),
    ("noninferiority", -0.6, 0.3, "inconclusive"),
    ("nonsuperiority", -1.0, 0.4, "reproduced"), ("nonsuperiority", 0.6, 2.0, "contradicted"),
    ("equivalence", -0.4, 0.4, "reproduced"), ("equivalence", 0.6, 1.0, "contradicted"),
    ("equivalence", -0.2, 0.7, "inconclusive"),
])
def test_verdict_vocabulary(test, lo, hi, expect):
    iv = Interval((lo + hi) / 2, lo, hi, 1.0, 10.0, True, True, False)
    assert verdict(test, iv, 0.5) == expect
    assert verdict(test, Interval((lo + hi) / 2, lo, hi, 1.0, 10.0, False, True, False), 0.5) == "inconclusive"


def test_seeds_to_resolve_projects_training_noise_only():
    iv = Interval(0.5, -0.5, 1.5, 0.4, 2.0, True, True, True, var_seeds=0.15, var_images=0.01, seeds=3, images=5000)
    need = seeds_to_resolve(iv, 0.5)
    assert need is not None and need > 3
    assert seeds_to_resolve(iv, 0.05) is None  # test sampling alone is wider than that


@pytest.mark.parametrize("lo, hi, paper, expect", [
    (-0.43, 0.32, 3.1, "contradicted"),   # excludes the paper's +3.1 and any gain >= 0.5
    (-0.43, 0.32, 0.2, "inconclusive"),   # the paper's own +0.2 is still inside
    (-0.85, 0.88, 3.9, "inconclusive"),   # a gain of practical size (0.5-0.88) is not excluded
    (0.05, 0.30, 3.1, "reproduced"),      # the direction holds, however small
    (-0.43, 0.32, None, "inconclusive"),  # no paper number: only the wrong sign contradicts
])
def test_superiority_gain_absent_below_paper_and_margin(lo, hi, paper, expect):
    iv = Interval((lo + hi) / 2, lo, hi, 1.0, 10.0, True, True, False)
    assert verdict("superiority", iv, 0.5, paper) == expect


def test_cells_with_extra_seeds_pair_on_the_common_ones():
    from qbench.report.claims import _common_seeds

    rng = np.random.default_rng(0)
    six, three = rng.random((6, 4)), rng.random((3, 4))
    fp = rng.random((1, 4))
    got = {"a": ((0, 1, 2, 3, 4, 5), six), "b": ((0, 1, 2), three), "fp": ((0,), fp)}
    out = _common_seeds(got, fixed={"fp"})
    assert out["a"][0] == (0, 1, 2) and np.array_equal(out["a"][1], six[:3])
    assert out["b"] is got["b"] or np.array_equal(out["b"][1], three)
    assert out["fp"] is got["fp"]  # the fixed reference keeps its seed
    # same seed lists, or fewer than two in common: unchanged
    assert _common_seeds({"a": got["a"], "c": ((0, 1, 2, 3, 4, 5), six)}, set())["a"] is got["a"]
    assert _common_seeds({"a": ((0, 1), six[:2]), "c": ((1, 2), six[:2])}, set())["a"][0] == (0, 1)


def test_a_cell_at_chance_level_is_flagged_from_its_interval():
    """A collapsed run (hard top-1 whose interval reaches 100 / classes %) makes a comparison
    inconclusive in claims.csv; a trained one does not."""
    import pandas as pd

    from qbench.report.claims import Results, at_chance

    rng = np.random.default_rng(0)
    res = Results(pd.DataFrame(), fp_seed=0)
    res.labels = np.arange(1000) % 10  # ten classes: chance is 10 %
    res._cache["alexnet_w2a32_ttq"] = ((0, 1, 2), 100.0 * (rng.random((3, 1000)) < 0.105))
    res._cache["alexnet_w2a32"] = ((0, 1, 2), 100.0 * (rng.random((3, 1000)) < 0.75))
    res._cache["alexnet_w1a1"] = ((0, 1, 2), 100.0 * (rng.random((3, 1000)) < 0.02))
    assert at_chance(res, "alexnet_w2a32_ttq") and at_chance(res, "alexnet_w1a1")
    assert not at_chance(res, "alexnet_w2a32")
