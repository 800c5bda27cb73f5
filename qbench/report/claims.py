"""The paper's claims (``qbench/paper/claims.yaml``) tested on this scale's runs.

``python -m qbench.report.claims --plan plan.json --runs runs.csv --out claims.csv``

One row per claim and comparison: the paper's effect, ours with a 95 % interval from
``qbench.stats`` (paired on test images, seeds and test sampling both counted), two answers and
a verdict (docs/statistics.md defines each by a formula):

- direction: is there an effect of the paper's sign (interval above 0), of the other sign
  (below 0), none of interest (inside +-d), or undetermined;
- size: is the paper's own effect inside our interval, or excluded above / below;
- verdict: ``reproduced`` (right sign, the paper's size not excluded below), ``smaller`` (right
  sign, the paper's size excluded), ``absent`` (no effect of interest: inside +-d),
  ``reversed`` (the other sign, or beyond the margin of a non-inferiority claim),
  ``inconclusive``, ``recipe failed`` (a cell the claim needs did not train), ``not testable at
  this scale`` (the claim's positive control is not visible), ``not testable here`` (the
  compared method is not run here), ``not run`` (a cell has no results).

Within a claim, the claim's verdict uses family-wise (Bonferroni) intervals over the
comparisons that ran, so that a claim of eleven comparisons is not contradicted by chance.
Never from the sign of a mean alone.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from qbench import run_files
from qbench.io import write_text
from qbench.paper import CLAIM_BASES, CLAIM_TESTS, RegistryError, check_claims, load_cells, load_tables
from qbench.stats import LEVEL, Interval, contrast_interval, design_for_power

from .results import Results, ResultsError, cell_interval, comparison_interval

INTERVAL_VERDICTS = ("reproduced", "smaller", "absent", "reversed", "inconclusive")
VERDICTS = INTERVAL_VERDICTS + ("recipe failed", "not testable at this scale", "not testable here", "not run")
TESTS = CLAIM_TESTS
BASES = CLAIM_BASES
COLUMNS = ["claim", "basis", "quote_id", "source", "test", "comparison", "paper_effect", "paper_effect_role",
           "ours_effect", "ci_low", "ci_high", "half_width", "margin", "direction", "size", "verdict",
           "fw_low", "fw_high", "fw_verdict", "control", "claim_comparisons", "claim_run", "seeds",
           "test_images", "note", "decides_at"]
POWER = 0.8


@dataclass(frozen=True)
class Quote:
    """The sentence of the paper a claim tests.

    Args:
        id: a short stable name (claims.csv: quote_id).
        section: where it stands (``4.1``, ``Abstract``, ``Table 1``).
        text: the sentence, verbatim.
    """

    id: str
    section: str
    text: str


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper.

    Args:
        id: key in claims.yaml.
        basis: ``stated`` (the text says it) or ``table`` (read off a table or figure only).
        quote: the sentence it tests.
        source: where the paper makes it (section / table).
        statement: the claim in words.
        test: one of TESTS.
        comparisons: contrasts, each cell -> weight.
        cell: the run whose training curve a ``gap_closes`` claim reads.
        cells: the runs a ``trains`` claim reads.
        control: ``auto`` (the positive control of the cells' family) or ``none``.
        effect_role: ``paper`` (the paper's effect is its own) or ``cited`` (the paper's number
            minus one cited from another recipe: context only).
        reason: why a ``not_testable`` claim cannot be tested here.
    """

    id: str
    basis: str
    quote: Quote
    source: str
    statement: str
    test: str
    comparisons: tuple[tuple[tuple[str, float], ...], ...] = ()
    cell: str | None = None
    cells: tuple[str, ...] = ()
    control: str = "auto"
    effect_role: str = "paper"
    reason: str = ""


class ClaimsError(ValueError):
    """claims.yaml or the run results cannot be used; the message names the key or file."""


@lru_cache(maxsize=None)
def _spec_file() -> dict:
    text = resources.files("qbench.paper").joinpath("claims.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _margin_rule() -> tuple[float, float]:
    raw = _spec_file()["margins"]
    return float(raw["error_fraction"]), float(raw["table_precision"])


def trained_fraction() -> float:
    """A run trained when it keeps this fraction of its FP model's accuracy above chance."""
    return float(_spec_file()["trained_fraction"])


def margin_from_fp(fp_value: float) -> float:
    """Smallest effect of interest for a model whose FP model scores ``fp_value`` (top-1 or mAP,
    percent): ``error_fraction`` of its error, never below the paper's table precision."""
    fraction, precision = _margin_rule()
    return max(fraction * (100.0 - fp_value), precision)


def margins() -> dict[str, float]:
    """The margins at the paper's own scale, by task (the smallest over its FP models): what the
    paper's numbers are held to (tests/paper/test_claims_registry.py)."""
    out: dict[str, float] = {}
    for c in load_cells().values():
        if c.kind == "fp":
            value = paper_value(c.id)
            if value is not None:
                out[c.task] = min(out.get(c.task, math.inf), margin_from_fp(value))
    out["equivalence"] = out.get("classify", _margin_rule()[1])
    return out


def load_claims() -> dict[str, ClaimSpec]:
    """Every claim of claims.yaml, validated against the experiment cells (``qbench.paper.Claim``)."""
    try:
        registry = check_claims(_spec_file())
    except RegistryError as exc:
        raise ClaimsError(str(exc)) from None
    return {cid: ClaimSpec(cid, c.basis, Quote(c.quote.id, c.quote.section, c.quote.text), c.source, c.statement,
                           c.test, c.comparisons, c.cell, c.cells, c.control, c.effect, c.reason)
            for cid, c in registry.claims.items()}


def normalized_text(text: str) -> str:
    """Letters and digits only, lower case: how a quote is found in the paper's extracted text
    (line breaks, hyphenation and ligatures differ from the printed sentence)."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


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


# ---- the verdict of one comparison ---------------------------------------------------------

def _known(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def size_compared(paper: float | None, margin: float, role: str = "paper") -> float:
    """The effect size "reproduced" must not exclude: the paper's own effect; where the paper
    prints none, or only a gap to a number cited from another recipe, twice the smallest effect
    of interest (an effect of practical size), so that "reproduced" and "absent" stay at least
    the margin apart."""
    if role == "paper" and _known(paper) and paper > 0:
        return paper
    return 2.0 * margin


def absent_bound(paper: float | None, margin: float) -> float:
    """``d`` of "absent" for a superiority claim: the margin (the smallest effect of interest),
    and at most half the paper's own effect, so that "absent" (interval inside +-d) and
    "reproduced" (interval reaching the paper's effect) are always at least half the paper's
    effect apart (docs/statistics.md)."""
    if _known(paper) and paper > 0:
        return min(margin, paper / 2.0)
    return margin


def direction(test: str, iv: Interval, margin: float, paper: float | None = None) -> str:
    """Question 1: is there an effect of the paper's sign?"""
    lo, hi = iv.low, iv.high
    if test == "superiority":
        d = absent_bound(paper, margin)
        if lo > 0:
            return "paper's sign"
        if hi < 0:
            return "other sign"
        if -d < lo and hi < d:
            return "none of interest"
        return "undetermined"
    if test == "noninferiority":
        return "within margin" if lo > -margin else "beyond margin" if hi < -margin else "undetermined"
    if test == "nonsuperiority":
        return "within margin" if hi < margin else "beyond margin" if lo > margin else "undetermined"
    if test == "equivalence":
        if -margin < lo and hi < margin:
            return "within margin"
        return "beyond margin" if lo > margin or hi < -margin else "undetermined"
    raise ClaimsError(f"unknown test {test!r}")


def size(iv: Interval, paper: float | None, role: str = "paper", margin: float | None = None) -> str:
    """Question 2: is the paper's own effect inside our interval, or excluded? Where the paper
    has no effect of its own (none printed, or a gap to a cited number), the question is asked of
    2 x margin (``size_compared``) when a margin is given."""
    if role == "cited" or not _known(paper):
        why = "cited gap, other recipe" if role == "cited" else "no paper number"
        if margin is None:
            return f"n/a: {why}"
        ref, what = 2.0 * margin, f"2 x margin ({why})"
    else:
        ref, what = paper, "paper's"
    if iv.high < ref:
        return f"{what} excluded: ours smaller"
    if iv.low > ref:
        return f"{what} excluded: ours larger"
    return f"{what} inside"


def verdict(test: str, iv: Interval, margin: float, paper: float | None = None, role: str = "paper") -> str:
    """The verdict of one comparison from its interval (never from the estimate alone).

    superiority: reproduced = L > 0 and H >= P; smaller = L > 0 and H < P; reversed = H < 0;
    absent = -d < L <= 0 <= H < d (d = ``absent_bound``); otherwise inconclusive. P is the
    paper's effect, or 2 x margin where the paper gives none of its own (``size_compared``).
    non-inferiority / non-superiority / equivalence: reproduced inside the margin, reversed
    beyond it, otherwise inconclusive. A one-seed interval is inconclusive.
    """
    if not iv.seed_noise:
        return "inconclusive"
    d = direction(test, iv, margin, paper)
    if test == "superiority":
        if d == "paper's sign":
            return "smaller" if iv.high < size_compared(paper, margin, role) else "reproduced"
        return {"other sign": "reversed", "none of interest": "absent"}.get(d, "inconclusive")
    return {"within margin": "reproduced", "beyond margin": "reversed"}.get(d, "inconclusive")


def _decision_limits(test: str, margin: float, paper: float | None) -> list[tuple[str, float, float, float]]:
    """(what, true effect assumed, low, high): the decisions the power calculation aims at."""
    p = paper if _known(paper) else None
    if test in ("superiority", "gap_closes"):
        out = []
        if p is not None and p > 0:
            out.append((f"the paper's effect ({p:+.2f}): direction", p, 0.0, math.inf))
        d = absent_bound(p, margin)
        out.append((f"a zero effect: absent (+-{d:.2f})", 0.0, -d, d))
        return out
    base = p if p is not None else 0.0
    name = f"the paper's effect ({p:+.2f})" if p is not None else "a zero effect"
    if test == "noninferiority":
        return [(f"{name}: within margin", base, -margin, math.inf)]
    if test == "nonsuperiority":
        return [(f"{name}: within margin", base, -math.inf, margin)]
    return [(f"{name}: within margin", base, -margin, margin)]


def decides_at(test: str, iv: Interval, margin: float, paper: float | None = None) -> str:
    """Seeds (and test images) for 80 % power to decide, for each true effect of interest,
    searched upward from this interval's counts (``qbench.stats.design_for_power``)."""
    if not iv.seed_noise:
        return "needs >= 2 seeds per fine-tuned cell to estimate training noise"
    parts = []
    for what, effect, low, high in _decision_limits(test, margin, paper):
        found = design_for_power(iv, effect, low, high, POWER)
        if found is None:
            parts.append(f"{what}: not within 64 seeds and 10x the test images")
            continue
        seeds, images, pw = found
        where = f"{images} test images" if iv.images > 1 else "per-run values"
        now = " (the current count)" if seeds == iv.seeds and images == iv.images else ""
        parts.append(f"{what}: {seeds} seeds{now}, {where} (power {pw:.2f})")
    return f"{int(POWER * 100)} % power if the true effect is " + "; ".join(parts)


def fp_cell_of(cell_id: str) -> str | None:
    """The FP cell of the same model (the one the quantized cells fine-tune), None if none."""
    cells = load_cells()
    model = cells[cell_id].model
    return next((c.id for c in cells.values() if c.kind == "fp" and c.model == model), None)


def chance_level(results: Results, cell_id: str) -> float:
    """Accuracy of guessing (100 / classes %) for a classification cell; 0 for mAP."""
    if results.cells[cell_id].task != "classify" or results.labels is None:
        return 0.0
    return 100.0 / len(np.unique(results.labels))


def training_failure(results: Results, cell_id: str) -> str:
    """Why a cell did not train ("" when it did): a seed below ``trained_fraction`` of its FP
    model's accuracy above chance (a collapsed seed, or a cell that never learned), per seed.

    Args:
        results: the scale's runs.
        cell_id: a cell that ran.
    """
    got = results.matrix(cell_id)
    fp = fp_cell_of(cell_id)
    if got is None or fp is None or fp == cell_id or results.matrix(fp) is None:
        return ""
    fp_value = float(results.matrix(fp)[1].mean())
    chance = chance_level(results, cell_id)
    floor = chance + trained_fraction() * (fp_value - chance)
    seeds, mat = got
    per_seed = mat.mean(axis=1)
    low = [f"s{s} {v:.1f}" for s, v in zip(seeds, per_seed) if v < floor]
    if not low:
        return ""
    return (f"{cell_id} did not train: {', '.join(low)} below {floor:.1f} (chance {chance:.1f} + "
            f"{trained_fraction():g} x ({fp} {fp_value:.1f} - chance))")


def _prefix(cell_id: str) -> str:
    fp = fp_cell_of(cell_id)
    return fp[:-3] if fp and fp.endswith("_fp") else cell_id.split("_")[0]


def controls_for(spec: ClaimSpec, comp: tuple[tuple[str, float], ...]) -> list[tuple[str, dict[str, float]]]:
    """The positive controls a comparison needs: per model of its cells, the effect the claim's
    family depends on (weights: FP - W1/32; activations: W1/32 - W1/1; detection: FP - W2/32).
    Empty for ``control: none``."""
    if spec.control == "none":
        return []
    cells = load_cells()
    involved = [cells[c] for c, _ in comp]
    activation = any(c.activations is not None for c in involved)
    out = []
    for prefix in dict.fromkeys(_prefix(c.id) for c in involved):
        if involved[0].task == "detect":
            pair = (f"{prefix}_fp", f"{prefix}_w2a32")
        elif activation:
            pair = (f"{prefix}_w1a32", f"{prefix}_w1a1")
        else:
            pair = (f"{prefix}_fp", f"{prefix}_w1a32")
        if all(p in cells for p in pair):
            out.append((f"{pair[0]} - {pair[1]}", {pair[0]: 1.0, pair[1]: -1.0}))
    return out


def control_check(results: Results, spec: ClaimSpec, comp, iv: Interval) -> tuple[bool, str]:
    """Whether every positive control of a comparison is visible: its interval's lower bound
    exceeds the comparison's half-width. Returns (passed, the controls' numbers)."""
    texts, ok = [], True
    for label, weights in controls_for(spec, comp):
        got = comparison_interval(results, weights)
        if got is None:
            ok = False
            texts.append(f"control {label} not run")
            continue
        civ = got[0]
        passed = civ.low > iv.half_width
        ok &= passed
        texts.append(f"control {label} {civ.effect:+.2f} [{civ.low:+.2f}, {civ.high:+.2f}] "
                     f"{'>' if passed else 'not >'} half-width {iv.half_width:.2f}")
    return ok, "; ".join(texts)


def _base_row(spec: ClaimSpec, label: str, paper: float | None = None, margin: float | None = None,
              verdict_: str = "not run", note: str = "") -> dict:
    return {"claim": spec.id, "basis": spec.basis, "quote_id": spec.quote.id, "source": spec.source,
            "test": spec.test, "comparison": label, "paper_effect": paper,
            "paper_effect_role": spec.effect_role if _known(paper) else "", "ours_effect": None,
            "ci_low": None, "ci_high": None, "half_width": None, "margin": margin, "direction": "",
            "size": "", "verdict": verdict_, "fw_low": None, "fw_high": None, "fw_verdict": "",
            "control": "", "claim_comparisons": 0, "claim_run": 0, "seeds": "", "test_images": None,
            "note": note, "decides_at": ""}


def _fill_interval(row: dict, iv: Interval) -> None:
    row.update(ours_effect=iv.effect, ci_low=iv.low, ci_high=iv.high, half_width=iv.half_width)


def _note(iv: Interval) -> str:
    parts = ["seeds paired" if iv.paired_seeds else "seeds independent"]
    if not iv.test_sampling:
        parts.append("per-run values: test sampling not included")
    if not iv.seed_noise:
        parts.append("one seed: training noise not estimated")
    df = "inf" if not math.isfinite(iv.df) else f"{iv.df:.1f}"
    return "; ".join(parts) + f"; t df {df}"


def _model_margin(res: Results, comp) -> float:
    """The comparison's smallest effect of interest: from the FP model of its first cell at this
    scale (its measured accuracy; the paper's where this scale has no FP run)."""
    fp = fp_cell_of(comp[0][0])
    got = res.matrix(fp) if fp else None
    value = float(got[1].mean()) if got is not None else (paper_value(fp) if fp else None)
    return margin_from_fp(value if value is not None else 0.0)


def _judge(row: dict, spec: ClaimSpec, test: str, iv: Interval, margin: float, paper: float | None) -> None:
    """The interval verdict of a row (its direction, size, verdict and decides_at)."""
    _fill_interval(row, iv)
    row.update(direction=direction(test, iv, margin, paper) if iv.seed_noise else "undetermined",
               size=size(iv, paper, spec.effect_role, margin) if test == "superiority" else
               size(iv, paper, spec.effect_role) if _known(paper) else "",
               verdict=verdict(test, iv, margin, paper, spec.effect_role))
    if row["verdict"] == "inconclusive":
        row["decides_at"] = decides_at(test, iv, margin, None if spec.effect_role == "cited" else paper)


def _comparison_row(res: Results, spec: ClaimSpec, comp) -> tuple[dict, dict | None]:
    """One comparison's row, and what its family-wise interval needs (None when no interval
    verdict is drawn)."""
    cells = load_cells()
    weights = dict(comp)
    label = comparison_label(comp)
    task = cells[comp[0][0]].task
    paper = paper_effect(weights)
    missing = [c for c in weights if res.matrix(c) is None]
    if missing:
        return _base_row(spec, label, paper, None, "not run", "no results: " + ", ".join(missing)), None
    margin = _model_margin(res, comp)
    row = _base_row(spec, label, paper, margin)
    iv, got = comparison_interval(res, weights)
    fixed = {c for c in weights if cells[c].kind == "fp"}
    row["seeds"] = "; ".join(f"{c}: {' '.join(map(str, g[0]))}" for c, g in got.items())
    row["test_images"] = next(iter(got.values()))[1].shape[1] if task == "classify" else None
    row["note"] = ("FP reference fixed; " if fixed else "") + _note(iv)
    if task == "detect" and iv.test_sampling:
        row["note"] = (f"mAP's test sampling by a grouped jackknife over {next(iter(got.values()))[1].shape[1]} "
                       "groups of test images; " + row["note"])
    failed = [f for f in (training_failure(res, c) for c in weights) if f]
    if failed:
        _fill_interval(row, iv)
        row.update(verdict="recipe failed", note="; ".join(failed) + "; " + row["note"],
                   decides_at="runs that train")
        return row, None
    if task == "detect" and not iv.test_sampling:
        _fill_interval(row, iv)
        row.update(verdict="inconclusive", direction="undetermined",
                   note=f"mAP per run only: runs without {run_files.MAP_PSEUDO} (the mAP's jackknife over test "
                        "images), so test sampling cannot enter the interval (seed noise alone is not an "
                        "honest interval); " + row["note"],
                   decides_at=f"detection runs that write {run_files.MAP_PSEUDO} (rerun them)")
        return row, None
    if not iv.seed_noise:
        _judge(row, spec, spec.test, iv, margin, paper)
        return row, None
    ok, control_text = control_check(res, spec, comp, iv)
    row["control"] = control_text
    if not ok:
        _fill_interval(row, iv)
        row.update(verdict="not testable at this scale", direction="", size="",
                   decides_at="a scale where the control is visible")
        return row, None
    _judge(row, spec, spec.test, iv, margin, paper)
    return row, {"weights": weights, "test": spec.test, "margin": margin, "paper": paper}


def _gap_rows(res: Results, spec: ClaimSpec) -> list[tuple[dict, dict | None]]:
    """Fig. 4: the soft/hard gap shrinks (first minus last epoch, in the sign of the first gap,
    which must itself be visible: the claim's control) and is within the margin at the last."""
    got = res.gap_matrices(spec.cell)
    shrink, closed = f"{spec.cell}: |soft - hard| first epoch - last epoch", f"{spec.cell}: soft - hard at the last epoch"
    if got is None:
        note = "needs a run with at least two evaluated epochs"
        return [(_base_row(spec, shrink, note=note), None), (_base_row(spec, closed, note=note), None)]
    seeds, mats, epochs = got
    sd = {k: seeds for k in mats}
    first = contrast_interval(mats, {"soft_first": 1.0, "hard_first": -1.0}, seeds=sd)
    sign = 1.0 if first.effect >= 0 else -1.0
    w_shrink = {"soft_first": sign, "hard_first": -sign, "soft_last": -sign, "hard_last": sign}
    w_closed = {"soft_last": 1.0, "hard_last": -1.0}
    margin = _model_margin(res, ((spec.cell, 1.0),))
    control = (f"control: first-epoch gap {first.effect:+.2f} [{first.low:+.2f}, {first.high:+.2f}] "
               f"{'excludes' if first.low > 0 or first.high < 0 else 'includes'} 0")
    out = []
    for label, weights, test in ((shrink, w_shrink, "superiority"), (closed, w_closed, "equivalence")):
        label = label.replace("first epoch", f"epoch {epochs[0]}").replace("last epoch", f"epoch {epochs[1]}")
        iv = contrast_interval(mats, weights, seeds=sd)
        row = _base_row(spec, label, None, margin)
        row.update(seeds=" ".join(map(str, seeds)), test_images=mats["hard_first"].shape[1],
                   note="per-epoch test subset; " + _note(iv), control=control)
        failed = training_failure(res, spec.cell)
        if failed:
            _fill_interval(row, iv)
            row.update(verdict="recipe failed", note=failed)
            out.append((row, None))
        elif not (first.low > 0 or first.high < 0) and first.seed_noise:
            _fill_interval(row, iv)
            row.update(verdict="not testable at this scale", decides_at="a visible first-epoch gap")
            out.append((row, None))
        else:
            _judge(row, spec, test, iv, margin, None)
            out.append((row, {"mats": mats, "seeds": sd, "weights": weights, "test": test, "margin": margin,
                              "paper": None} if iv.seed_noise else None))
    return out


def _trains_rows(res: Results, spec: ClaimSpec) -> list[tuple[dict, None]]:
    out = []
    for c in spec.cells:
        row = _base_row(spec, f"{c} trains")
        got = res.matrix(c)
        if got is None:
            row["note"] = f"no results: {c}"
        else:
            iv = cell_interval(res, c)
            _fill_interval(row, iv)
            failed = training_failure(res, c)
            row.update(verdict="reversed" if failed else "reproduced",
                       direction="did not train" if failed else "trains",
                       seeds=f"{c}: {' '.join(map(str, got[0]))}",
                       test_images=got[1].shape[1] if res.cells[c].task == "classify" else None,
                       note=failed or f"every seed keeps >= {trained_fraction():g} of its FP model's "
                                      "accuracy above chance")
        out.append((row, None))
    return out


def _family_wise(res: Results, rows: list[tuple[dict, dict | None]]) -> None:
    """Bonferroni within a claim: each comparison that reached an interval verdict gets its
    interval at level 1 - 0.05 / m (m: those comparisons), and a verdict from it."""
    judged = [(r, f) for r, f in rows if f is not None]
    m = len(judged)
    level = 1.0 - (1.0 - LEVEL) / max(m, 1)
    for row, f in judged:
        if "mats" in f:
            iv = contrast_interval(f["mats"], f["weights"], seeds=f["seeds"], level=level)
        else:
            iv = comparison_interval(res, f["weights"], level=level)[0]
        role = "paper" if row["paper_effect_role"] != "cited" else "cited"
        row.update(fw_low=iv.low, fw_high=iv.high,
                   fw_verdict=verdict(f["test"], iv, f["margin"], f["paper"], role))
    ran = sum(1 for r, _ in rows if r["verdict"] != "not run")
    for row, _ in rows:
        row.update(claim_comparisons=len(rows), claim_run=ran)
        if not row["fw_verdict"]:
            row["fw_verdict"] = row["verdict"]


def evaluate_claims(runs: pd.DataFrame, fp_seed: int = 0) -> pd.DataFrame:
    """Every comparison of every claim on these runs (the rows of claims.csv).

    Args:
        runs: runs.csv of the scale.
        fp_seed: the FP seed quantized cells start from (plan ``fp_seeds[0]``).
    """
    res = Results(runs, fp_seed)
    out = []
    for spec in load_claims().values():
        if spec.test == "not_testable":
            rows = [(_base_row(spec, "-", None, None, "not testable here", spec.reason), None)]
        elif spec.test == "gap_closes":
            rows = _gap_rows(res, spec)
        elif spec.test == "trains":
            rows = _trains_rows(res, spec)
        else:
            rows = [_comparison_row(res, spec, comp) for comp in spec.comparisons]
        _family_wise(res, rows)
        out += [r for r, _ in rows]
    return pd.DataFrame(out, columns=COLUMNS)


def claim_verdict(verdicts: list[str]) -> str:
    """One verdict per claim from its comparisons' family-wise verdicts (docs/statistics.md):
    reversed if any is; otherwise reproduced / smaller / absent when every comparison with an
    interval verdict agrees (smaller when they are reproduced or smaller), inconclusive when they
    disagree or none is decided; without interval verdicts, the first of recipe failed, not
    testable at this scale, not testable here, not run that occurs."""
    judged = [v for v in verdicts if v in INTERVAL_VERDICTS]
    if judged:
        if "reversed" in judged:
            return "reversed"
        kinds = set(judged)
        if kinds == {"reproduced"}:
            return "reproduced"
        if kinds <= {"reproduced", "smaller"}:
            return "smaller"
        if kinds == {"absent"}:
            return "absent"
        return "inconclusive"
    for v in ("recipe failed", "not testable at this scale", "not testable here"):
        if v in verdicts:
            return v
    return "not run"


def claim_line(verdicts: list[str]) -> str:
    """``4 of 11 run: 3 reproduced, 1 inconclusive; 7 not run``."""
    ran = [v for v in verdicts if v != "not run"]
    counts = [f"{ran.count(v)} {v}" for v in VERDICTS if v != "not run" and ran.count(v)]
    line = f"{len(ran)} of {len(verdicts)} run" + (": " + ", ".join(counts) if counts else "")
    missing = len(verdicts) - len(ran)
    return line + (f"; {missing} not run" if missing and ran else "")


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: its verdict (from the family-wise verdicts), how many comparisons ran
    and how they fell (per-comparison 95 % verdicts), its basis and quote."""
    specs = load_claims()
    out = []
    for cid, spec in specs.items():
        sub = rows[rows["claim"] == cid]
        v = sub["verdict"].tolist()
        fw = sub["fw_verdict"].tolist() if "fw_verdict" in sub else v
        fw = [f if isinstance(f, str) and f else x for f, x in zip(fw, v)]
        out.append({"claim": cid, "basis": spec.basis, "source": spec.source, "quote_id": spec.quote.id,
                    "quote": spec.quote.text, "statement": spec.statement, "verdict": claim_verdict(fw),
                    "comparisons": claim_line(v), "n_comparisons": len(v),
                    "n_run": sum(1 for x in v if x != "not run"),
                    **{f"n_{k.replace(' ', '_')}": v.count(k) for k in VERDICTS}})
    return pd.DataFrame(out)


def controls_table(runs: pd.DataFrame, fp_seed: int = 0) -> pd.DataFrame:
    """The positive controls of this scale, one row per family and model: the effect, its
    interval, and the smallest half-width of the comparisons it guards."""
    res = Results(runs, fp_seed)
    seen: dict[str, dict] = {}
    for spec in load_claims().values():
        for comp in spec.comparisons:
            for label, weights in controls_for(spec, comp):
                if label in seen:
                    continue
                got = comparison_interval(res, weights)
                family = ("detection" if load_cells()[next(iter(weights))].task == "detect" else
                          "activation bits" if "w1a1" in label else "weight bits")
                row = {"family": family, "control": label, "effect": None, "ci_low": None, "ci_high": None}
                if got is not None:
                    row.update(effect=got[0].effect, ci_low=got[0].low, ci_high=got[0].high)
                seen[label] = row
    return pd.DataFrame(list(seen.values()), columns=["family", "control", "effect", "ci_low", "ci_high"])


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
        with open(Path(rows["run_dir"].iloc[0]) / run_files.METRICS, encoding="utf-8") as fh:
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


def read_claims(path: str | Path) -> pd.DataFrame:
    """claims.csv back, with empty cells as NaN/empty strings."""
    df = pd.read_csv(path, keep_default_na=True)
    for col in ("note", "decides_at", "seeds", "comparison", "direction", "size", "fw_verdict", "control",
                "paper_effect_role", "quote_id", "basis"):
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
    except (ClaimsError, ResultsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text(args.out, rows.to_csv(index=False))
    for _, r in summarize(rows).iterrows():
        print(f"{r['claim']}: {r['verdict']} ({r['comparisons']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
