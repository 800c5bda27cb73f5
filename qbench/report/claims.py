"""The paper's claims (``qbench/paper/claims.yaml``) tested on this scale's runs.

``python -m qbench.report.claims --plan plan.json --runs runs.csv --out claims.csv``

One row per claim and comparison: the paper's effect, ours with a 95 % interval from
``qbench.stats`` (paired on test images, seeds and test sampling both counted), and a verdict:

- ``reproduced``: the interval lies on the paper's side (of 0, or of the margin);
- ``contradicted``: it lies on the other side; for a superiority claim also when it lies below
  both the paper's effect and the smallest effect of interest (the claimed gain is absent);
- ``inconclusive``: it straddles, or training noise could not be estimated (one seed), or a
  classification cell of the comparison is at chance level (its interval reaches 100 / classes
  %): a collapsed run tests the recipe, not the claim;
- ``not run``: a cell of the comparison has no results at this scale.

Never from the sign of a mean alone. docs/statistics.md explains the method.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from qbench.paper import load_cells, load_tables
from qbench.io import write_text
from qbench.stats import Interval, contrast_interval, seeds_to_resolve

VERDICTS = ("reproduced", "contradicted", "inconclusive", "not run")
TESTS = ("superiority", "noninferiority", "nonsuperiority", "equivalence", "gap_closes")
COLUMNS = ["claim", "source", "test", "comparison", "paper_effect", "ours_effect", "ci_low", "ci_high",
           "half_width", "margin", "verdict", "seeds", "test_images", "note", "decides_at"]
PREDICTIONS_FILE = "predictions.npz"


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper.

    Args:
        id: key in claims.yaml.
        source: where the paper makes it (table / section).
        statement: the claim in words.
        test: one of TESTS.
        comparisons: contrasts, each cell -> weight.
        cell: the run whose training curve a ``gap_closes`` claim reads.
    """

    id: str
    source: str
    statement: str
    test: str
    comparisons: tuple[tuple[tuple[str, float], ...], ...] = ()
    cell: str | None = None


class ClaimsError(ValueError):
    """claims.yaml or the run results cannot be used; the message names the key or file."""


@lru_cache(maxsize=None)
def _spec_file() -> dict:
    text = resources.files("qbench.paper").joinpath("claims.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def margins() -> dict[str, float]:
    """Margins of the non-inferiority / equivalence tests, by task and test."""
    return {k: float(v) for k, v in _spec_file()["margins"].items()}


def load_claims() -> dict[str, ClaimSpec]:
    """Every claim of claims.yaml, validated against the experiment cells."""
    cells = load_cells()
    out = {}
    for cid, raw in _spec_file()["claims"].items():
        test = raw.get("test")
        if test not in TESTS:
            raise ClaimsError(f"claims.yaml: claims.{cid}.test {test!r} not in {TESTS}")
        comps = []
        for i, comp in enumerate(raw.get("comparisons", [])):
            if isinstance(comp, list) and len(comp) == 2:
                comp = {comp[0]: 1.0, comp[1]: -1.0}
            if not isinstance(comp, dict) or not comp:
                raise ClaimsError(f"claims.yaml: claims.{cid}.comparisons[{i}] must be [a, b] or "
                                  "{cell: weight}")
            for c in comp:
                if c not in cells:
                    raise ClaimsError(f"claims.yaml: claims.{cid}.comparisons[{i}]: unknown cell {c!r}")
            comps.append(tuple((c, float(w)) for c, w in comp.items()))
        cell = raw.get("cell")
        if test == "gap_closes" and cell not in cells:
            raise ClaimsError(f"claims.yaml: claims.{cid}.cell: unknown cell {cell!r}")
        if test != "gap_closes" and not comps:
            raise ClaimsError(f"claims.yaml: claims.{cid} has no comparisons")
        out[cid] = ClaimSpec(cid, raw["source"], raw["statement"], test, tuple(comps), cell)
    return out


def paper_value(cell_id: str) -> float | None:
    """The paper's number for a cell (top-1, or mAP for detection), from its first table placement."""
    cell = load_cells()[cell_id]
    tables = load_tables()
    for place in cell.tables:
        table = tables[place.table]
        for row in table.get("rows", []):
            if row.get("key") == place.row:
                value = (row.get("cells") or {}).get(place.column) or {}
                metric = "map" if cell.task == "detect" else "top1"
                if isinstance(value, dict) and value.get(metric) is not None:
                    return float(value[metric])
    return None


def paper_effect(weights: dict[str, float]) -> float | None:
    """The paper's effect of a contrast (cell -> weight) from its tables; None where it prints
    no number for one of the cells.

    Args:
        weights: the comparison.
    """
    papers = [paper_value(c) for c in weights]
    if any(p is None for p in papers):
        return None
    return sum(w * p for w, p in zip(weights.values(), papers))


def comparison_label(comp: tuple[tuple[str, float], ...]) -> str:
    """``a - b`` for a pair, ``+a -b -c +d`` for a longer contrast."""
    if len(comp) == 2 and comp[0][1] == 1.0 and comp[1][1] == -1.0:
        return f"{comp[0][0]} - {comp[1][0]}"
    return " ".join(f"{'+' if w > 0 else '-'}{'' if abs(w) == 1 else f'{abs(w):g}*'}{c}" for c, w in comp)


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

    def _predictions(self, run_dir: str) -> dict[str, np.ndarray]:
        path = Path(run_dir) / PREDICTIONS_FILE
        if not path.is_file():
            raise ClaimsError(f"{path}: missing (every classification run writes it)")
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
                result = (seeds, values[:, None]) if np.isfinite(values).all() else None
            else:
                mats = []
                for run_dir in rows["run_dir"]:
                    p = self._predictions(run_dir)
                    if self.labels is None:
                        self.labels = p["label"]
                    elif p["label"].shape != self.labels.shape or (p["label"] != self.labels).any():
                        raise ClaimsError(f"{run_dir}: evaluated on other test images than the other runs")
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


def at_chance(results: Results, cell_id: str) -> bool:
    """Whether a classification cell's hard top-1 is at chance level: its 95 % interval
    reaches 100 / (number of classes in the test labels) %, or lies below it.

    Args:
        results: the scale's runs.
        cell_id: a cell that ran.
    """
    if results.cells[cell_id].task != "classify":
        return False
    iv = cell_interval(results, cell_id)
    if iv is None or results.labels is None:
        return False
    return iv.low <= 100.0 / len(np.unique(results.labels))


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


def absent_below(paper_effect: float | None, margin: float) -> float:
    """Upper bound under which a superiority claim's gain counts as absent.

    The smaller of the paper's own effect and the smallest effect of interest (the task's
    margin): an interval entirely below it excludes both what the paper reports and any gain of
    practical size, so the claimed improvement is contradicted even though the interval may still
    contain 0 (a one-sided test against the minimum effect; docs/statistics.md). Without a
    positive paper effect or a margin it is 0: only the wrong sign contradicts.
    """
    if paper_effect is None or math.isnan(paper_effect) or paper_effect <= 0 or not margin:
        return 0.0
    return min(paper_effect, margin)


def verdict(test: str, iv: Interval, margin: float, paper_effect: float | None = None) -> str:
    """The verdict of one comparison from its interval (never from the estimate alone)."""
    if not iv.seed_noise:
        return "inconclusive"
    lo, hi = iv.low, iv.high
    if test == "superiority":
        bound = absent_below(paper_effect, margin)
        return "reproduced" if lo > 0 else "contradicted" if hi < bound else "inconclusive"
    if test == "gap_closes":
        return "reproduced" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    if test == "noninferiority":
        return "reproduced" if lo > -margin else "contradicted" if hi < -margin else "inconclusive"
    if test == "nonsuperiority":
        return "reproduced" if hi < margin else "contradicted" if lo > margin else "inconclusive"
    if test == "equivalence":
        if -margin < lo and hi < margin:
            return "reproduced"
        return "contradicted" if lo > margin or hi < -margin else "inconclusive"
    raise ClaimsError(f"unknown test {test!r}")


def _target(test: str, paper_effect: float | None, margin: float) -> float:
    """Half-width that would decide the test if the true effect were the paper's (0 if unknown)."""
    p = 0.0 if paper_effect is None or math.isnan(paper_effect) else paper_effect
    if test in ("superiority", "gap_closes"):
        return abs(p)
    if test == "noninferiority":
        return p + margin
    if test == "nonsuperiority":
        return margin - p
    return margin - abs(p)


def _decides_at(test: str, iv: Interval, paper_effect: float | None, margin: float) -> str:
    if not iv.seed_noise:
        return "needs >= 2 seeds per fine-tuned cell to estimate training noise"
    known = paper_effect is not None and not math.isnan(paper_effect)
    assumed = "the paper's" if known else "ours"  # no paper number: project from our estimate
    target = _target(test, paper_effect if known else iv.effect, margin)
    if target <= 0:
        return f"undecidable if the true effect equals {assumed}"
    seeds = seeds_to_resolve(iv, target)
    images = "per-run mAP" if not iv.test_sampling else f"{iv.images} test images"
    if seeds is None:
        return (f"more test images than this scale's {iv.images} (test sampling alone: "
                f"+-{1.96 * math.sqrt(iv.var_images):.2f})") if iv.test_sampling else "more than 64 seeds"
    return f"about {seeds} seeds per cell with {images} (if the true effect is {assumed})"


def _note(iv: Interval) -> str:
    parts = ["seeds paired" if iv.paired_seeds else "seeds independent"]
    if not iv.test_sampling:
        parts.append("per-run values: test sampling not included")
    if not iv.seed_noise:
        parts.append("one seed: training noise not estimated")
    return "; ".join(parts) + f"; t df {iv.df:.1f}"


def _row(spec: ClaimSpec, label: str, paper: float | None, margin: float | None,
         iv: Interval | None, seeds: str, images: int | None, note: str = "") -> dict:
    row = {"claim": spec.id, "source": spec.source, "test": spec.test, "comparison": label,
           "paper_effect": paper, "ours_effect": None, "ci_low": None, "ci_high": None, "half_width": None,
           "margin": margin, "verdict": "not run", "seeds": seeds, "test_images": images, "note": note,
           "decides_at": ""}
    if iv is not None:
        m = margin or 0.0
        row.update(ours_effect=iv.effect, ci_low=iv.low, ci_high=iv.high, half_width=iv.half_width,
                   verdict=verdict(spec.test, iv, m, paper), note=(note + "; " if note else "") + _note(iv))
        bound = absent_below(paper, m) if spec.test == "superiority" else 0.0
        if row["verdict"] == "contradicted" and bound > 0 and iv.low <= 0:
            row["note"] += f"; gain absent: the interval excludes gains >= {bound:.2g}"
        if row["verdict"] == "inconclusive":
            row["decides_at"] = _decides_at(spec.test, iv, paper, m)
    return row


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


def comparison_interval(results: Results, weights: dict[str, float]
                        ) -> tuple[Interval, dict[str, tuple[tuple[int, ...], np.ndarray]]] | None:
    """The interval of a contrast of cells as every claim computes it: FP cells are the fixed
    reference, fine-tuned cells are restricted to their common seeds and paired on them.

    Returns the interval and the (seeds, matrix) of each cell it used, or None when a cell of the
    contrast has no results.

    Args:
        results: the scale's per-image results.
        weights: cell -> contrast weight, e.g. ``{qn_cell: 1, baseline_cell: -1}``.
    """
    got = {c: results.matrix(c) for c in weights}
    if any(g is None for g in got.values()):
        return None
    fixed = {c for c in weights if results.cells[c].kind == "fp"}
    got = _common_seeds(got, fixed)
    iv = contrast_interval({c: g[1] for c, g in got.items()}, weights,
                           seeds={c: g[0] for c, g in got.items()}, fixed=fixed)
    return iv, got


def evaluate_claims(runs: pd.DataFrame, fp_seed: int = 0) -> pd.DataFrame:
    """Every comparison of every claim on these runs (the rows of claims.csv).

    Args:
        runs: runs.csv of the scale.
        fp_seed: the FP seed quantized cells start from (plan ``fp_seeds[0]``).
    """
    res = Results(runs, fp_seed)
    cells = load_cells()
    mg = margins()
    rows = []
    for spec in load_claims().values():
        if spec.test == "gap_closes":
            got = res.gap_matrices(spec.cell)
            label = f"{spec.cell}: (soft - hard) first epoch - last epoch"
            if got is None:
                rows.append(_row(spec, label, None, None, None, "", None,
                                 "needs a run with at least two evaluated epochs"))
                continue
            seeds, mats, epochs = got
            weights = {"soft_first": 1.0, "hard_first": -1.0, "soft_last": -1.0, "hard_last": 1.0}
            iv = contrast_interval(mats, weights, seeds={k: seeds for k in mats})
            rows.append(_row(spec, label.replace("first epoch", f"epoch {epochs[0]}")
                             .replace("last epoch", f"epoch {epochs[1]}"), None, None, iv,
                             " ".join(map(str, seeds)), mats["hard_first"].shape[1],
                             "per-epoch test subset"))
            continue
        for comp in spec.comparisons:
            weights = dict(comp)
            label = comparison_label(comp)
            task = cells[comp[0][0]].task
            margin = mg["equivalence"] if spec.test == "equivalence" else (
                mg[task] if spec.test in ("noninferiority", "nonsuperiority", "superiority") else None)
            paper = paper_effect(weights)
            computed = comparison_interval(res, weights)
            if computed is None:
                missing = [c for c in weights if res.matrix(c) is None]
                rows.append(_row(spec, label, paper, margin, None, "", None,
                                 "no results: " + ", ".join(missing)))
                continue
            iv, got = computed
            fixed = {c for c in weights if cells[c].kind == "fp"}
            seeds_txt = "; ".join(f"{c}: {' '.join(map(str, g[0]))}" for c, g in got.items())
            images = next(iter(got.values()))[1].shape[1] if task == "classify" else None
            row = _row(spec, label, paper, margin, iv, seeds_txt, images, "FP reference fixed" if fixed else "")
            dead = [c for c in weights if at_chance(res, c)]
            if dead:
                kept = row["note"].split("; gain absent")[0]  # no verdict is drawn from it
                row.update(verdict="inconclusive", decides_at="runs that train (not at chance)",
                           note=f"at chance level: {', '.join(dead)}; " + kept)
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


PLATEAU_GAIN = 0.3  # points of hard top-1 on the per-epoch test images


def fp_checks(runs: pd.DataFrame, fp_seed: int = 0) -> pd.DataFrame:
    """Is each FP model a fair baseline? Its last-epoch gain (plateau when below PLATEAU_GAIN)
    and the weight-only quantized cells that beat it beyond their interval (there should be none).

    Args:
        runs: runs.csv of the scale.
        fp_seed: the FP seed the quantized cells start from.
    """
    res = Results(runs, fp_seed)
    cells = load_cells()
    out = []
    for fp in (c for c in cells.values() if c.kind == "fp" and c.task == "classify"):
        rows = res._rows(fp.id)
        if not len(rows):
            continue
        with open(Path(rows["run_dir"].iloc[0]) / "metrics.json", encoding="utf-8") as fh:
            hist = [h for h in json.load(fh).get("history", []) if h.get("hard_top1") is not None]
        gain = hist[-1]["hard_top1"] - hist[-2]["hard_top1"] if len(hist) >= 2 else None
        beaten = []
        for c in cells.values():
            if (c.model == fp.model and c.kind == "quant" and c.task == "classify" and c.activations is None
                    and c.start == "pretrained" and res.matrix(c.id) is not None):
                iv = contrast_interval({c.id: res.matrix(c.id)[1], fp.id: res.matrix(fp.id)[1]},
                                       {c.id: 1.0, fp.id: -1.0}, fixed={fp.id})
                if iv.low > 0:
                    beaten.append(f"{c.id} {iv.effect:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]")
        final = res.matrix(fp.id)[1].mean() if res.matrix(fp.id) is not None else None
        out.append({"model": fp.model, "fp_top1": final, "epochs": len(hist), "last_epoch_gain": gain,
                    "plateau": gain is not None and gain < PLATEAU_GAIN,
                    "beaten_by": "; ".join(beaten) or "none"})
    return pd.DataFrame(out, columns=["model", "fp_top1", "epochs", "last_epoch_gain", "plateau", "beaten_by"])


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim: reproduced when every comparison is, contradicted when any is,
    not run when none ran, inconclusive otherwise."""
    specs = load_claims()
    out = []
    for cid, spec in specs.items():
        v = rows.loc[rows["claim"] == cid, "verdict"].tolist()
        ran = [x for x in v if x != "not run"]
        if not ran:
            overall = "not run"
        elif "contradicted" in ran:
            overall = "contradicted"
        elif all(x == "reproduced" for x in v):
            overall = "reproduced"
        else:
            overall = "inconclusive"
        counts = {k: v.count(k) for k in VERDICTS}
        out.append({"claim": cid, "source": spec.source, "statement": spec.statement, "verdict": overall,
                    **{f"n_{k.replace(' ', '_')}": n for k, n in counts.items()}})
    return pd.DataFrame(out)


def read_claims(path: str | Path) -> pd.DataFrame:
    """claims.csv back, with empty cells as NaN/empty strings."""
    df = pd.read_csv(path, keep_default_na=True)
    for col in ("note", "decides_at", "seeds", "comparison"):
        if col in df:
            df[col] = df[col].fillna("")
    return df


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="plan.json of the scale")
    ap.add_argument("--runs", required=True, help="runs.csv")
    ap.add_argument("--out", required=True, help="claims.csv")
    args = ap.parse_args(argv)
    with open(args.plan, encoding="utf-8") as fh:
        plan = json.load(fh)
    try:
        runs = pd.read_csv(args.runs)
    except pd.errors.EmptyDataError:
        runs = pd.DataFrame(columns=["cell", "seed", "task", "run_dir", "hard_map"])
    try:
        rows = evaluate_claims(runs, int(plan["fp_seeds"][0]))
    except ClaimsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text(args.out, rows.to_csv(index=False))
    for _, r in summarize(rows).iterrows():
        print(f"{r['claim']}: {r['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
