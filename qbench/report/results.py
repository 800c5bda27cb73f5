"""Per-image results of a scale's runs, read on demand, and the intervals every claim, table
and figure computes from them (``qbench.stats``): one cell, a contrast of cells, a cell's
per-epoch curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qbench import run_files
from qbench.paper import load_cells
from qbench.stats import LEVEL, Interval, contrast_interval


class ResultsError(ValueError):
    """A run's result files are missing or do not fit the others."""


class Results:
    """Per-image correctness (percent) of every run, grouped by cell, read on demand.

    Args:
        runs: runs.csv (cell, seed, task, run_dir, hard_map, ...).
        fp_seed: the FP seed the quantized cells fine-tune from (the fixed reference); None keeps
            every seed of an FP cell (a table's FP row reports the cell over all its runs).
    """

    def __init__(self, runs: pd.DataFrame, fp_seed: int | None) -> None:
        self.runs = runs
        self.fp_seed = None if fp_seed is None else int(fp_seed)
        self.cells = load_cells()
        self._cache: dict[str, tuple[tuple[int, ...], np.ndarray] | None] = {}
        self.labels: np.ndarray | None = None

    def _rows(self, cell_id: str) -> pd.DataFrame:
        if self.runs.empty:
            return self.runs
        rows = self.runs[self.runs["cell"] == cell_id].sort_values("seed")
        if self.cells[cell_id].kind == "fp" and self.fp_seed is not None:
            rows = rows[rows["seed"] == self.fp_seed]
        return rows

    def _map_pseudo(self, run_dir: str) -> np.ndarray | None:
        path = Path(run_dir) / run_files.MAP_PSEUDO
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            values = np.asarray(data["hard"], dtype=float)
        if values.ndim != 1 or len(values) < 2 or not np.isfinite(values).all():
            raise ResultsError(f"{path}: expected a finite vector of >= 2 pseudo-values")
        return values

    def _predictions(self, run_dir: str) -> dict[str, np.ndarray]:
        path = Path(run_dir) / run_files.PREDICTIONS
        if not path.is_file():
            raise ResultsError(f"{path}: missing (every classification run writes it)")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def matrix(self, cell_id: str) -> tuple[tuple[int, ...], np.ndarray] | None:
        """(seeds, seeds x images matrix in percent), or None when the cell has no runs."""
        if cell_id in self._cache:
            return self._cache[cell_id]
        rows = self._rows(cell_id)
        result = None
        if len(rows):
            seeds = tuple(int(s) for s in rows["seed"])
            if self.cells[cell_id].task == "detect":
                values = pd.to_numeric(rows["hard_map"], errors="coerce").to_numpy(dtype=float)
                pseudo = [self._map_pseudo(d) for d in rows["run_dir"]]
                if not np.isfinite(values).all():
                    result = None
                elif all(p is not None for p in pseudo) and len({len(p) for p in pseudo}) == 1:
                    # jackknife pseudo-values of each run's mAP (qbench.detection.evaluate),
                    # centred on the run's mAP: the tables' numbers, with test sampling's variance
                    result = (seeds, np.stack([p - p.mean() + v for p, v in zip(pseudo, values)]))
                else:  # runs without them: the mAP per run, seed noise only
                    result = (seeds, values[:, None])
            else:
                mats = []
                for run_dir in rows["run_dir"]:
                    p = self._predictions(run_dir)
                    if self.labels is None:
                        self.labels = p["label"]
                    elif p["label"].shape != self.labels.shape or (p["label"] != self.labels).any():
                        raise ResultsError(f"{run_dir}: evaluated on other test images than the other runs")
                    mats.append(100.0 * (p["hard"] == p["label"]))
                result = (seeds, np.stack(mats))
        self._cache[cell_id] = result
        return result

    def gap_matrices(self, cell_id: str) -> tuple[tuple[int, ...], dict[str, np.ndarray], list[int]] | None:
        """Per-seed correctness of soft/hard at the first and last evaluated epoch."""
        rows = self._rows(cell_id)
        if not len(rows):
            return None
        parts: dict[str, list[np.ndarray]] = {"soft_first": [], "hard_first": [], "soft_last": [], "hard_last": []}
        epochs = []
        for run_dir in rows["run_dir"]:
            p = self._predictions(run_dir)
            if p["curve_hard"].shape[0] < 2:
                return None
            ok_h = 100.0 * (p["curve_hard"] == p["curve_label"][None])
            ok_s = 100.0 * (p["curve_soft"] == p["curve_label"][None])
            parts["soft_first"].append(ok_s[0])
            parts["hard_first"].append(ok_h[0])
            parts["soft_last"].append(ok_s[-1])
            parts["hard_last"].append(ok_h[-1])
            epochs = [int(p["curve_epoch"][0]), int(p["curve_epoch"][-1])]
        seeds = tuple(int(s) for s in rows["seed"])
        return seeds, {k: np.stack(v) for k, v in parts.items()}, epochs


def cell_interval(results: Results, cell_id: str) -> Interval | None:
    """95 % interval of one cell's mean (test sampling and seeds), None when it did not run."""
    got = results.matrix(cell_id)
    if got is None:
        return None
    return contrast_interval({cell_id: got[1]}, {cell_id: 1.0})


def curve_intervals(results: Results, cell_id: str, mode: str) -> list[tuple[int, Interval]]:
    """Per-epoch 95 % intervals of a cell's test accuracy on the curve subset (``hard``/``soft``)."""
    rows = results._rows(cell_id)
    mats: list[np.ndarray] = []
    epochs: list[int] = []
    for run_dir in rows["run_dir"] if len(rows) else []:
        p = results._predictions(run_dir)
        if p[f"curve_{mode}"].shape[0] == 0:
            continue
        mats.append(100.0 * (p[f"curve_{mode}"] == p["curve_label"][None]))
        epochs = [int(e) for e in p["curve_epoch"]]
    if not mats or len({m.shape for m in mats}) != 1:
        return []
    stacked = np.stack(mats)  # seeds x epochs x images
    return [(e, contrast_interval({"c": stacked[:, i, :]}, {"c": 1.0})) for i, e in enumerate(epochs)]


def _common_seeds(got: dict, fixed: set) -> dict:
    """Restrict the fine-tuned cells of a comparison to their common seeds when a cell ran more
    seeds than another (``cell_seeds``) and at least two are shared: the same seed means the same
    FP start and data order, so pairing on seeds removes that shared noise, which dropping the
    pairing for the extra seeds would put back (measured: learned vs fixed biases, 3 vs 6 seeds,
    [-0.30, +0.27] paired on 3 against [-0.65, +0.79] unpaired)."""
    tuned = [c for c in got if c not in fixed]
    if len({got[c][0] for c in tuned}) <= 1:
        return got
    common = sorted(set.intersection(*(set(got[c][0]) for c in tuned)))
    if len(common) < 2:
        return got
    out = dict(got)
    for c in tuned:
        seeds, mat = got[c]
        rows = [seeds.index(s) for s in common]
        out[c] = (tuple(common), mat[rows])
    return out


def comparison_interval(results: Results, weights: dict[str, float], level: float = LEVEL
                        ) -> tuple[Interval, dict[str, tuple[tuple[int, ...], np.ndarray]]] | None:
    """The interval of a contrast of cells as every claim computes it: FP cells are the fixed
    reference, fine-tuned cells are restricted to their common seeds and paired on them.

    Returns the interval and the (seeds, matrix) of each cell it used, or None when a cell of the
    contrast has no results.

    Args:
        results: the scale's per-image results.
        weights: cell -> contrast weight, e.g. ``{qn_cell: 1, baseline_cell: -1}``.
        level: confidence level.
    """
    got = {c: results.matrix(c) for c in weights}
    if any(g is None for g in got.values()):
        return None
    fixed = {c for c in weights if results.cells[c].kind == "fp"}
    got = _common_seeds(got, fixed)
    iv = contrast_interval({c: g[1] for c, g in got.items()}, weights,
                           seeds={c: g[0] for c, g in got.items()}, fixed=fixed, level=level)
    return iv, got
