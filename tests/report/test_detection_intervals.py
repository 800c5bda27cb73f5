"""Detection claims carry the mAP's test-sampling error: grouped-jackknife pseudo-values of each
run's mAP, paired by group across runs, in the same seeds x images interval as top-1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qbench import run_files
from qbench.detection.evaluate import jackknife_group, map_pseudo_values
from qbench.io import save_arrays
from qbench.report.claims import evaluate_claims
from qbench.report.results import Results


def test_pseudo_values_of_a_mean_are_the_values_and_grouped_ones_the_group_means():
    rng = np.random.default_rng(0)
    x = rng.normal(50, 10, size=60)
    mean_of = lambda keep: float(x[keep].mean())  # noqa: E731
    per_image = map_pseudo_values(60, 100, mean_of, float(x.mean()))
    np.testing.assert_allclose(per_image, x, atol=1e-9)  # G = 60: one image per group
    grouped = map_pseudo_values(60, 12, mean_of, float(x.mean()))
    group = jackknife_group(60, 12)
    np.testing.assert_allclose(grouped, [x[group == g].mean() for g in range(12)], atol=1e-9)
    with pytest.raises(ValueError, match="2 groups"):
        jackknife_group(60, 1)


def test_jackknife_variance_of_a_ratio_metric_matches_the_bootstrap():
    # a non-linear metric (ratio of sums, like a precision): the jackknife SE is the bootstrap's
    rng = np.random.default_rng(1)
    hits, dets = rng.binomial(10, 0.6, size=200).astype(float), np.full(200, 10.0)
    ratio = lambda keep: 100 * hits[keep].sum() / dets[keep].sum()  # noqa: E731
    pseudo = np.asarray(map_pseudo_values(200, 200, ratio, ratio(np.arange(200))))
    se_jack = pseudo.std(ddof=1) / np.sqrt(len(pseudo))
    boot = [ratio(rng.integers(0, 200, 200)) for _ in range(2000)]
    assert se_jack == pytest.approx(np.std(boot), rel=0.1)


def _runs(tmp_path, maps: dict[str, list[float]], pseudo_sd: float | None) -> pd.DataFrame:
    rows, rng = [], np.random.default_rng(2)
    for cell, values in maps.items():
        seeds = [0] if cell == "ssd_fp" else list(range(len(values)))
        for seed, value in zip(seeds, values):
            d = tmp_path / f"{cell}_s{seed}"
            d.mkdir()
            if pseudo_sd is not None:
                save_arrays(d / run_files.MAP_PSEUDO, {"hard": rng.normal(value + 3.0, pseudo_sd, size=60)})
            rows.append({"cell": cell, "seed": seed, "task": "detect", "run_dir": str(d), "hard_map": value})
    return pd.DataFrame(rows)


MAPS = {"ssd_fp": [42.0], "ssd_w2a32": [30.0, 31.0, 29.5], "ssd_w3pm4a32": [41.5, 41.0, 42.0]}


def test_detection_matrix_is_centred_on_each_runs_map(tmp_path):
    res = Results(_runs(tmp_path, MAPS, pseudo_sd=20.0), fp_seed=0)
    seeds, mat = res.matrix("ssd_w2a32")
    assert seeds == (0, 1, 2) and mat.shape == (3, 60)
    np.testing.assert_allclose(mat.mean(axis=1), MAPS["ssd_w2a32"])  # the tables' mAP, not the jackknife's


def test_detection_claims_decide_with_test_sampling_and_stay_inconclusive_without(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_pseudo = evaluate_claims(_runs(tmp_path / "a", MAPS, pseudo_sd=20.0))
    bits = with_pseudo[with_pseudo["claim"] == "ssd_weight_bits"].iloc[0]
    assert "grouped jackknife over 60 groups" in bits["note"]
    assert bits["ours_effect"] == pytest.approx(np.mean(MAPS["ssd_w3pm4a32"]) - np.mean(MAPS["ssd_w2a32"]))
    # a seeds-only interval would be +/- ~2; 60 groups at SD 20 add ~ +/- 5
    assert bits["half_width"] > 3.0
    assert bits["verdict"] in ("reproduced", "smaller", "inconclusive", "not testable at this scale")
    without = evaluate_claims(_runs(tmp_path / "b", MAPS, pseudo_sd=None))
    row = without[without["claim"] == "ssd_weight_bits"].iloc[0]
    assert row["verdict"] == "inconclusive" and f"without {run_files.MAP_PSEUDO}" in row["note"]
