"""The paper's Tables 1-8 with the paper's numbers beside the reproduced ones, and the suite's
summary tables (``summary_tables`` of ``qbench/paper/tables.yaml``).

``python -m qbench.report.tables --plan plan.json --cells cells.csv --runs runs.csv --outdir DIR``

Writes ``table{1..8}.{csv,md,tex}`` in the paper's layout, every summary table (e.g.
``methods_one_recipe``: all methods run at one W/A setting, ranked) and ``all_cells.csv`` (one line
per table / row / column / metric). Other methods' rows are shown as cited; where this scale reruns
a method (a baseline cell placed in its row) the row shows cited / rerun here / Δ. A reproduced or
rerun cell shows its mean ± the half-width of its 95 % interval (``qbench.stats``, the estimator of
the claims: seeds x test images, read from the runs' predictions.npz) and the difference to the
paper; a cell without runs says why it is "not run" and never shows a number.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from qbench.io import read_json, write_text
from qbench.paper import Cell, SummaryTable, cells_for_table, load_cells, load_tables, summary_tables
from qbench.quant import LevelSet
from qbench.quant.methods.baselines import level_label
from qbench.report.claims import fp_cell_of, paper_value
from qbench.models.bitops import bit_operations, layer_macs
from qbench.report.results import Results, comparison_interval
from qbench.stats import Interval, contrast_interval

log = logging.getLogger("qbench.tables")

METRIC_COLUMN = {"top1": "hard_top1", "top5": "hard_top5", "map": "hard_map"}
METRIC_LABEL = {"top1": "Top-1", "top5": "Top-5", "map": "mAP", "ratio": "ratio"}
NOT_RUN = "not run"
INTERVAL_METHOD = ("95 % interval of the cell mean from qbench.stats, the claims' estimator: seeds and "
                   "test images as crossed random effects, the seed term on seeds - 1 df "
                   "(docs/statistics.md); top-5 and mAP from per-run values (seed-to-seed only); "
                   "one seed: mean (n=1), no interval")

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$",
                 "–": "--", "—": "---", "−": "$-$", "≥": r"$\geq$", "≤": r"$\leq$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and the few non-ASCII signs the tables use).

    Args:
        text: plain text.
    """
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


@dataclass
class Entry:
    """One number of a table: the paper's value and what this run measured.

    Args:
        table, row, column, metric: registry keys.
        paper: the paper's value (None where it prints "-").
        mean, std, n: reproduced mean, sample std (None for n < 2) and number of seeds.
        status: "cited", "reproduced" (the paper's method), "rerun" (a cited method rerun here),
            "not run (...)" or "measured"/"analytic" (Table 8).
        cell: the experiment cell that produced it, if any.
        ci_low, ci_high, half_width: its 95 % interval (qbench.stats); None without per-run
            results or with one seed.
        vs_fp: its change against its own FP model at this scale (top-1 / mAP, the claims'
            contrast), where the scale's data differ from the paper's.
        paper_vs_fp: the paper's change against the paper's FP model.
        like_with_like: the scale's data differ from the paper's: the difference line shows
            vs_fp beside paper_vs_fp, never ours minus the paper's absolute number.
    """

    table: str
    row: str
    row_label: str
    column: str
    column_label: str
    metric: str
    paper: float | None
    mean: float | None = None
    std: float | None = None
    n: int = 0
    status: str = "cited"
    cell: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    half_width: float | None = None
    vs_fp: Interval | None = None
    paper_vs_fp: float | None = None
    like_with_like: bool = False

    @property
    def diff(self) -> float | None:
        if self.mean is None or self.paper is None:
            return None
        return self.mean - self.paper


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def not_run_reason(cell_id: str | None, plan: dict, task: str) -> str:
    """Why a reproducible cell has no result at this scale.

    Args:
        cell_id: the cell (None if no cell is defined for it).
        plan: the scale's plan.json.
        task: the table's task.
    """
    if cell_id is None:
        return f"{NOT_RUN} (no experiment defined)"
    if task == "detect" and not plan.get("detection_enabled", False):
        return f"{NOT_RUN} (detection disabled at this scale)"
    if cell_id not in plan.get("cells", []):
        return f"{NOT_RUN} (not in this scale's cells)"
    return f"{NOT_RUN} (no completed run)"


class CellIntervals:
    """95 % intervals of cell means from the scale's runs, with the estimator of the claims.

    A cell's mean is the contrast ``{cell: 1}`` of ``qbench.stats.contrast_interval``: top-1 over
    the seeds x test-images matrix of predictions.npz, mAP (detection) over the seeds x groups
    matrix of the runs' jackknife pseudo-values (map_pseudo.npz; per-run values where a run has
    none), top-5 over the per-run values (no per-image top-5 is kept), i.e. seed-to-seed noise
    only. Every seed of a cell counts,
    FP cells included.

    Args:
        runs: runs.csv of the scale (None or empty: no intervals).
    """

    def __init__(self, runs: pd.DataFrame | None) -> None:
        self.runs = runs if runs is not None else pd.DataFrame()
        self.results = Results(self.runs, fp_seed=None)

    def matrix(self, cell_id: str, metric: str) -> np.ndarray | None:
        """(seeds x images) values of a cell's metric in percent, None when it has no runs."""
        if self.runs.empty:
            return None
        if metric in ("top1", "map"):
            got = self.results.matrix(cell_id)
            return None if got is None else got[1]
        column = METRIC_COLUMN[metric]
        rows = self.runs[self.runs["cell"] == cell_id].sort_values("seed")
        if column not in rows or not len(rows):
            return None
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        return values[:, None] if np.isfinite(values).all() else None

    def mean(self, cell_id: str, metric: str) -> Interval | None:
        """The interval of the cell's mean, None when it has no runs."""
        mat = self.matrix(cell_id, metric)
        return None if mat is None else contrast_interval({cell_id: mat}, {cell_id: 1.0})

    def difference(self, cell_a: str, cell_b: str) -> Interval | None:
        """Top-1 of ``cell_a`` minus ``cell_b`` as a claim compares them (paired on images and
        common seeds; qbench.report.claims.comparison_interval), None when either has no runs."""
        if self.runs.empty:
            return None
        got = comparison_interval(self.results, {cell_a: 1.0, cell_b: -1.0})
        return None if got is None else got[0]


def _fill_result(e: Entry, rec: dict | None, intervals: CellIntervals, status: str, plan: dict,
                 task: str) -> None:
    """Set an entry's mean, interval and seed count from its cell's results, or why it has none."""
    mean = _num(rec.get(f"{METRIC_COLUMN[e.metric]}_mean")) if rec else None
    if rec is None or mean is None:
        e.status = not_run_reason(e.cell, plan, task)
        return
    e.mean, e.std = mean, _num(rec.get(f"{METRIC_COLUMN[e.metric]}_std"))
    e.n, e.status = int(rec["n_seeds"]), status
    iv = intervals.mean(e.cell, e.metric)
    if iv is not None:
        e.mean = iv.effect
        if iv.seed_noise:
            e.ci_low, e.ci_high, e.half_width = iv.low, iv.high, iv.half_width


def table_entries(key: str, table: dict, cells: pd.DataFrame, plan: dict,
                  intervals: CellIntervals | None = None) -> list[Entry]:
    """All entries of one classification/detection table (layouts ``wide`` and ``long``).

    The paper's own rows (``ours``) are reproduced; a cited row's number is also rerun where a
    baseline cell of this scale's plan is placed in it (status ``rerun``).

    Args:
        key: table key.
        table: the registry table.
        cells: aggregated per-cell results (cells.csv).
        plan: plan.json of the scale.
        intervals: the scale's runs for the 95 % intervals (None: means only).
    """
    intervals = intervals or CellIntervals(None)
    by_cell = {r["cell"]: r for r in cells.to_dict("records")} if len(cells) else {}
    where = {(p.row, p.column): c.id for c, p in cells_for_table(key)}
    planned = set(plan.get("cells", []))
    cols = {c["key"]: c["label"] for c in table["columns"]}
    out = []
    for row in table["rows"]:
        for col, value in row["cells"].items():
            if value is None:
                continue
            for metric in table["metrics"]:
                e = Entry(key, row["key"], row["label"], col, cols[col], metric, _num(value.get(metric)))
                cid = where.get((row["key"], col))
                if row.get("ours"):
                    e.cell = cid
                    _fill_result(e, by_cell.get(cid), intervals, "reproduced", plan, table["task"])
                elif cid is not None:
                    e.cell = cid
                    if cid in planned:
                        _fill_result(e, by_cell.get(cid), intervals, "rerun", plan, table["task"])
                out.append(e)
    if not data_like_paper(plan, table["task"]):
        _set_changes(out, intervals, table["task"])
    return out


def _bits(level_set: str | None) -> int:
    return 32 if level_set is None else LevelSet.from_name(level_set).bits


def _table8_layers(table: dict, plan: dict) -> list[tuple[str, int, bool]] | None:
    cfg = plan.get("config") or {}
    train = cfg.get("train", {})
    model_cfg = {**train.get("model", {}), **cfg.get("models", {}).get(table["model"], {}).get("model", {})}
    try:
        return layer_macs(table["model"], int(model_cfg.get("num_classes", 1000)),
                          int(model_cfg.get("in_channels", 3)), int(train.get("data", {}).get("image_size", 224)),
                          float(model_cfg.get("width", 1.0)), str(model_cfg.get("stem", "imagenet")))
    except Exception:  # noqa: BLE001 - no model factory: fall back to bits per MAC
        return None


def table8_entries(table: dict, cells: pd.DataFrame, plan: dict) -> list[Entry]:
    """Table 8: the paper's FPGA ratios, the measured model size ratio (exported models'
    ``model_bits``) and an analytic bit-operation ratio (weight bits x activation bits per
    multiply-accumulate of the quantized layers), each relative to the binary W1/A1 model.

    Args:
        table: the registry table.
        cells: aggregated per-cell results.
        plan: plan.json of the scale.
    """
    by_cell = {r["cell"]: r for r in cells.to_dict("records")} if len(cells) else {}
    where = {p.column: c for c, p in cells_for_table("table8")}
    cols = {c["key"]: c["label"] for c in table["columns"]}
    out = []
    base_cell = where.get("binary")
    base_bits = _num(by_cell.get(base_cell.id, {}).get("quantized_bits_mean")) if base_cell else None
    layers = _table8_layers(table, plan)

    def bitops(cell) -> float:
        if layers is None:  # per quantized MAC only
            return float(_bits(cell.weights) * _bits(cell.activations))
        return float(bit_operations(layers, _bits(cell.weights), _bits(cell.activations)))
    for row in table["rows"]:
        for col, value in row["cells"].items():
            cell = where.get(col)
            e_paper = Entry("table8", row["key"], f"{row['label']} (paper, FPGA)", col, cols[col],
                            "ratio", _num(value.get("ratio")), status="cited")
            out.append(e_paper)
            if row["key"] == "time":
                label = ("Time (analytic bit-operations of the model, not FPGA)" if layers is not None
                         else "Time (analytic bit-operations per quantized MAC, not FPGA)")
                e = Entry("table8", "time_bitops", label, col,
                          cols[col], "ratio", e_paper.paper, status="analytic", cell=cell.id if cell else None)
                if cell is not None and base_cell is not None:
                    e.mean = bitops(cell) / bitops(base_cell)
                out.append(e)
            else:
                e = Entry("table8", "space_measured", "Space (measured bits of exported models)", col,
                          cols[col], "ratio", e_paper.paper, cell=cell.id if cell else None)
                rec = by_cell.get(cell.id) if cell else None
                bits = _num(rec.get("quantized_bits_mean")) if rec else None
                if cell is not None and cell.kind == "fp" and rec is not None:
                    bits = _num(rec.get("fp_bits_mean"))
                if bits is not None and base_bits:
                    e.mean, e.n, e.status = bits / base_bits, int(rec["n_seeds"]), "measured"
                elif rec is not None and not base_bits:
                    e.status = f"{NOT_RUN} (binary W1/A1 reference not run)"
                else:
                    e.status = not_run_reason(cell.id if cell else None, plan, table["task"])
                out.append(e)
    return out


# --- formatting ---------------------------------------------------------------------------------

def fmt_value(v: float | None, digits: int = 1) -> str:
    """A number as printed in the tables ("-" for a missing paper value).

    Args:
        v: the value.
        digits: decimals.
    """
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_repro(e: Entry, digits: int = 1) -> str:
    """Reproduced value: "mean ± half-width of the 95 % interval" (n >= 2), "mean (n=1)", or the
    not-run reason.

    Args:
        e: the entry.
        digits: decimals.
    """
    if e.mean is None:
        return e.status if e.status.startswith(NOT_RUN) else "-"
    if e.status == "analytic":
        return f"{e.mean:.{digits}f}"
    if e.half_width is not None:
        return f"{e.mean:.{digits}f} ± {e.half_width:.{digits}f}"
    return f"{e.mean:.{digits}f} (n={e.n})"


def fmt_diff(e: Entry, digits: int = 1) -> str:
    """Reproduced minus paper, signed ("" when either is missing).

    Args:
        e: the entry.
        digits: decimals.
    """
    if e.like_with_like:
        return change_text(e, digits)
    d = e.diff
    return "" if d is None else f"{d:+.{digits}f}"


def change_text(e: Entry, digits: int = 1) -> str:
    """"ours [95 % CI] vs paper": the change against each one's own FP model (top-1 / mAP only;
    "" for other metrics, "reference" for the FP cell itself)."""
    if e.metric not in ("top1", "map"):
        return ""
    if e.cell is not None and e.cell == fp_cell_of(e.cell):
        return "reference"
    paper = "n/a" if e.paper_vs_fp is None else f"{e.paper_vs_fp:+.{digits}f}"
    if e.vs_fp is None:
        return f"n/a vs {paper}"
    iv = e.vs_fp
    if not iv.seed_noise:
        return f"{iv.effect:+.{digits}f} (n=1) vs {paper}"
    return f"{iv.effect:+.{digits}f} [{iv.low:+.{digits}f}, {iv.high:+.{digits}f}] vs {paper}"


def data_like_paper(plan: dict, task: str) -> bool:
    """Whether this scale's data are the paper's (ImageNet / Pascal VOC): only then is a
    difference of absolute numbers to the paper's meaningful."""
    cfg = plan.get("config") or {}
    if task == "detect":
        dataset = (((cfg.get("tasks") or {}).get("detect") or {}).get("data") or {}).get("dataset")
        return dataset == "voc" if dataset else plan.get("scale") == "paper"
    dataset = (cfg.get("data") or {}).get("dataset")
    return dataset == "imagenet" if dataset else plan.get("scale") == "paper"


def _set_changes(entries: list[Entry], intervals: "CellIntervals", task: str) -> None:
    """Each run entry's change against its own FP model beside the paper's (like with like)."""
    for e in entries:
        if e.cell is None or e.status not in ("reproduced", "rerun") and not e.status.startswith(NOT_RUN):
            continue
        e.like_with_like = True
        fp = fp_cell_of(e.cell)
        fp_paper = paper_value(fp) if fp else None
        if e.paper is not None and fp_paper is not None and e.metric in ("top1", "map"):
            e.paper_vs_fp = e.paper - fp_paper
        if fp and fp != e.cell and e.mean is not None and e.metric in ("top1", "map"):
            e.vs_fp = intervals.difference(e.cell, fp)


def _short(e: Entry) -> str:
    """Grid text of a not-run entry: "not run" plus a mark whose reason goes in the notes."""
    return NOT_RUN + "*" if e.status.startswith(NOT_RUN) else "-"


def _pair_repro(es: list[Entry]) -> str:
    """"mean±h/mean±h" of the metrics of one table cell (h: half-width of the 95 % interval),
    "mean/mean (n=1)" without an interval; one seed count for all."""
    if es[0].mean is None:
        return _short(es[0])
    parts = []
    for x in es:
        if x.mean is None:
            parts.append("-")
        elif x.half_width is not None:
            parts.append(f"{x.mean:.1f}±{x.half_width:.1f}")
        else:
            parts.append(f"{x.mean:.1f}")
    text = "/".join(parts)
    return text if es[0].half_width is not None else f"{text} (n={es[0].n})"


def rerun_rows(table: dict, entries: list[Entry]) -> set[str]:
    """Keys of the cited rows that this scale reruns: a baseline cell of its plan is placed there
    (status "rerun", or "not run (...)" while it has no results).

    Args:
        table: registry table.
        entries: its entries.
    """
    cited_rows = {r["key"] for r in table["rows"] if not r.get("ours")}
    return {e.row for e in entries
            if e.row in cited_rows and (e.status == "rerun" or e.status.startswith(NOT_RUN))}


def wide_grid(table: dict, entries: list[Entry]) -> list[list[str]]:
    """Paper layout of Tables 1-4: methods x W/A; reproduced rows get three lines
    (paper / reproduced / difference), cited rows that this scale reruns three too (cited /
    rerun here / difference). Values are metric1/metric2 (e.g. Top-1/Top-5).

    Args:
        table: registry table.
        entries: its entries.
    """
    metrics = table["metrics"]
    cols = table["columns"]
    grid = [["Method"] + [c["label"] for c in cols]]
    idx = {(e.row, e.column, e.metric): e for e in entries}
    rerun = rerun_rows(table, entries)

    def cited(es):
        return "/".join(fmt_value(x.paper, 2 if x.paper is not None and round(x.paper, 1) != x.paper else 1)
                        for x in es)

    def diff(es):
        if es[0].like_with_like:
            return fmt_diff(es[0]) or "n/a"
        return "/".join(fmt_diff(x) or "n/a" for x in es) if es[0].mean is not None else "n/a"

    like = any(e.like_with_like for e in entries)
    delta = "Δ vs own FP (ours vs paper)" if like else "Δ"

    for row in table["rows"]:
        def line(label, render):
            out = [label]
            for c in cols:
                es = [idx.get((row["key"], c["key"], m)) for m in metrics]
                out.append("-" if all(x is None for x in es) else render(es))
            return out

        if not row.get("ours"):
            if row["key"] not in rerun:
                grid.append(line(row["label"], cited))
                continue
            grid.append(line(f"{row['label']}: cited", cited))
            grid.append(line(f"{row['label']}: rerun here", _pair_repro))
            grid.append(line(f"{row['label']}: {delta}", diff))
            continue
        grid.append(line(f"{row['label']}: paper", cited))
        grid.append(line(f"{row['label']}: reproduced", _pair_repro))
        grid.append(line(f"{row['label']}: {delta}", diff))
    return grid


def notes(entries: list[Entry]) -> list[str]:
    """Reasons behind the "not run*" marks of a table (one line per distinct reason).

    Args:
        entries: the table's entries.
    """
    reasons: dict[str, list[str]] = {}
    for e in entries:
        if e.status.startswith(NOT_RUN):
            reasons.setdefault(e.status, [])
            label = f"{e.row_label} {e.column_label}"
            if label not in reasons[e.status]:
                reasons[e.status].append(label)
    return [f"*{status}: {', '.join(labels)}" for status, labels in reasons.items()]


def long_grid(table: dict, entries: list[Entry]) -> list[list[str]]:
    """Paper layout of Tables 5-7: one line per (method, W/A), paper / reproduced / Δ per metric.

    Args:
        table: registry table.
        entries: its entries.
    """
    metrics = table["metrics"]
    head = ["Method", "W/A"]
    like = any(e.like_with_like for e in entries)
    for m in metrics:
        delta = "Δ vs own FP (ours vs paper)" if like and m in ("top1", "map") else "Δ"
        head += [f"{METRIC_LABEL[m]} paper", f"{METRIC_LABEL[m]} reproduced", f"{METRIC_LABEL[m]} {delta}"]
    grid = [head]
    idx = {(e.row, e.column, e.metric): e for e in entries}
    rows = {r["key"]: r for r in table["rows"]}
    cols = {c["key"]: c["label"] for c in table["columns"]}
    for rkey, ckey in table["order"]:
        line = [rows[rkey]["label"], cols[ckey]]
        for m in metrics:
            e = idx[(rkey, ckey, m)]
            line += [fmt_value(e.paper), _short(e) if e.mean is None else fmt_repro(e), fmt_diff(e)]
        grid.append(line)
    return grid


def ratio_grid(table: dict, entries: list[Entry]) -> list[list[str]]:
    """Table 8 layout: rows Time/Space (paper) and their measured/analytic counterparts.

    Args:
        table: registry table.
        entries: its entries.
    """
    cols = table["columns"]
    grid = [["", *[c["label"] for c in cols]]]
    order = ["time", "time_bitops", "space", "space_measured"]
    for rkey in order:
        es = {e.column: e for e in entries if e.row == rkey}
        label = next(iter(es.values())).row_label
        if rkey in ("time", "space"):
            grid.append([label] + [f"{fmt_value(es[c['key']].paper)}x" for c in cols])
        else:
            grid.append([label] + [_ratio_text(es[c["key"]]) for c in cols])
    return grid


def _ratio_text(e: Entry) -> str:
    if e.mean is None:
        return _short(e)
    text = f"{e.mean:.2f}x"
    if e.status == "measured":
        text += f" ± {e.std:.2f}" if e.std is not None else f" (n={e.n})"
    return text


def to_markdown(grid: list[list[str]], title: str, note_lines: list[str] = ()) -> str:
    """Markdown pipe table with a title line and notes below.

    Args:
        grid: header row then body rows.
        title: caption.
        note_lines: footnotes ("not run" reasons).
    """
    esc = [[str(x).replace("|", "\\|") for x in row] for row in grid]
    lines = [f"**{title}**", "", "| " + " | ".join(esc[0]) + " |",
             "|" + "|".join("---" for _ in esc[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    if note_lines:
        lines += [""] + [f"{n.replace('*', chr(92) + '*', 1)}  " for n in note_lines]
    return "\n".join(lines) + "\n"


def to_csv(grid: list[list[str]]) -> str:
    """CSV of the paper-layout grid.

    Args:
        grid: header row then body rows.
    """
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(grid)
    return buf.getvalue()


def to_latex(grid: list[list[str]], title: str, label: str, number: int | None = None,
             note_lines: list[str] = (), number_text: str | None = None) -> str:
    """A booktabs ``table`` float (scaled to the text width when wider).

    Args:
        grid: header row then body rows.
        title: caption.
        label: LaTeX label.
        number: table number to print (the paper's), if given.
        note_lines: footnotes ("not run" reasons).
        number_text: what to print instead of a number (``A`` for a table not in the paper).
    """
    ncol = len(grid[0])
    counter = [rf"\setcounter{{table}}{{{number - 1}}}"] if number else []
    own_number = [rf"\renewcommand{{\thetable}}{{{latex_escape(number_text)}}}"] if number_text else []
    lines = counter + [r"\begin{table}[htbp]", *own_number, r"\centering", r"\footnotesize",
             rf"\caption{{{latex_escape(title)}}}", rf"\label{{{label}}}",
             r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%",
             r"\begin{tabular}{l" + "c" * (ncol - 1) + "}", r"\toprule",
             " & ".join(rf"\textbf{{{latex_escape(h)}}}" for h in grid[0]) + r" \\", r"\midrule"]
    for row in grid[1:]:
        lines.append(" & ".join(latex_escape(x) for x in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if note_lines:
        lines += [r"\par\smallskip\raggedright\scriptsize"] + [latex_escape(n) + r"\\" for n in note_lines]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_longtable(grid: list[list[str]], title: str, label: str, number_text: str, spec: str,
                 note_lines: list[str] = ()) -> str:
    """A booktabs ``longtable`` (a table that may run over a page), numbered ``number_text``.

    Args:
        grid: header row then body rows.
        title: caption.
        label: LaTeX label.
        number_text: what numbers it (``A``).
        spec: the column specification (array package), e.g. ``lp{3cm}c``.
        note_lines: lines printed below it.
    """
    head = " & ".join(rf"\textbf{{{latex_escape(h)}}}" for h in grid[0]) + r" \\"
    lines = [r"\begingroup", rf"\renewcommand{{\thetable}}{{{latex_escape(number_text)}}}", r"\footnotesize",
             r"\setlength{\tabcolsep}{3pt}", r"\begin{longtable}{" + spec + "}",
             rf"\caption{{{latex_escape(title)}}}\label{{{label}}}\\", r"\toprule", head, r"\midrule",
             r"\endfirsthead", r"\toprule", head, r"\midrule", r"\endhead"]
    lines += [" & ".join(latex_escape(x) for x in row) + r" \\" for row in grid[1:]]
    lines += [r"\bottomrule", r"\end{longtable}"]
    if note_lines:
        lines += [r"\par\raggedright\scriptsize"] + [latex_escape(n) + r"\\" for n in note_lines]
    lines += [r"\endgroup"]
    return "\n".join(lines) + "\n"


# --- the suite's summary tables -----------------------------------------------------------------

@dataclass
class MethodResult:
    """One method at one W/A setting of one model, as the methods table lists it.

    Args:
        source: the paper table of the model (``table1``).
        model: architecture.
        setting, setting_label: W/A column key and label.
        cell: the experiment cell.
        method_label: the method's row label in the paper table, or its name when the paper does
            not cite it.
        cited: the paper's top-1 for that method and setting (None: not cited).
        status: "rerun" / "reproduced" (the paper's method) or the not-run reason.
        mean: the cell mean's interval (None when not run).
        to_paper_method: the paper's method's cell at that setting minus this one, in top-1
            points (None for the paper's method itself, or when either did not run).
        rank: 1 = highest rerun top-1 at this setting (None when not run).
    """

    source: str
    model: str
    setting: str
    setting_label: str
    cell: Cell
    method_label: str
    cited: float | None
    status: str
    mean: Interval | None = None
    to_paper_method: Interval | None = None
    rank: int | None = None

    @property
    def is_paper_method(self) -> bool:
        return not self.cell.is_baseline


def _placed_row(cell: Cell, key: str, table: dict) -> dict | None:
    rows = {r["key"]: r for r in table["rows"]}
    for place in cell.tables:
        if place.table == key and place.row in rows:
            return rows[place.row]
    return None


def methods_results(summary: SummaryTable, plan: dict, intervals: CellIntervals) -> list[MethodResult]:
    """Every method run at each W/A setting of the summary's source tables where this scale plans
    a baseline cell: the paper's method's cell (placed in the table's ``ours`` row) and every baseline cell
    of the model with that ``Cell.setting``, ranked by rerun top-1 (not-run cells last).

    Args:
        summary: the registered summary table.
        plan: plan.json of the scale.
        intervals: the scale's runs.
    """
    tables = load_tables()
    cells = load_cells()
    planned = set(plan.get("cells", []))
    out: list[MethodResult] = []
    for key in summary.sources:
        table = tables[key]
        ours_rows = {r["key"] for r in table["rows"] if r.get("ours")}
        paper_method = {p.column: c for c, p in cells_for_table(key)
                        if p.row in ours_rows and c.kind == "quant" and not c.is_baseline}
        baselines = [c for c in cells.values()
                     if c.is_baseline and c.model == table["model"] and c.task == table["task"]]
        labels = {c["key"]: c["label"] for c in table["columns"]}
        settings = list(labels) + sorted({c.setting for c in baselines} - set(labels))
        for setting in settings:
            members = [c for c in baselines if c.setting == setting]
            if not any(c.id in planned for c in members):
                continue
            if setting in paper_method:
                members.insert(0, paper_method[setting])
            reference = paper_method.get(setting)
            group = []
            for cell in members:
                row = _placed_row(cell, key, table)
                value = (row or {}).get("cells", {}).get(setting) or {}
                label = row["label"] if row is not None else f"{cell.method.upper()} (not cited in the paper)"
                result = MethodResult(key, table["model"], setting, labels.get(setting, setting), cell, label,
                                      _num(value.get("top1")), "reproduced" if not cell.is_baseline else "rerun")
                result.mean = intervals.mean(cell.id, "top1") if cell.id in planned else None
                if result.mean is None:
                    result.status = not_run_reason(cell.id, plan, table["task"])
                elif cell.is_baseline and reference is not None and reference.id in planned:
                    result.to_paper_method = intervals.difference(reference.id, cell.id)
                group.append(result)
            ran = sorted((r for r in group if r.mean is not None), key=lambda r: -r.mean.effect)
            for rank, result in enumerate(ran, start=1):
                result.rank = rank
            out += ran + [r for r in group if r.mean is None]
    return out


def _interval_text(iv: Interval, signed: bool = False) -> str:
    fmt = "{:+.2f}" if signed else "{:.2f}"
    if not iv.seed_noise:
        return f"{fmt.format(iv.effect)} (n={iv.seeds})"
    return f"{fmt.format(iv.effect)} [{fmt.format(iv.low)}, {fmt.format(iv.high)}]"


def methods_grid(results: list[MethodResult]) -> list[list[str]]:
    """The methods table: model, W/A, rank, method, cited top-1, rerun top-1 [95 % CI], the paper's
    method minus this one [95 % CI], seeds, test images.

    Args:
        results: ``methods_results`` output.
    """
    grid = [["Model", "W/A", "Rank", "Method", "Cited top-1", "Rerun top-1 [95 % CI]",
             "Ours − method [95 % CI]", "Seeds", "Test images"]]
    for r in results:
        model = f"{r.model} ({r.source.replace('table', 'Table ')})"
        note = level_label(r.cell.method, r.cell.weights, r.cell.activations)  # levels unlike the paper's method's
        method = f"{r.method_label} ({r.cell.method}{', ' + note if note else ''})"
        if r.mean is None:
            grid.append([model, r.setting_label, "-", method, fmt_value(r.cited), r.status, "-", "-", "-"])
            continue
        if r.is_paper_method:
            diff = "reference"
        elif r.to_paper_method is None:
            diff = "-"
        else:
            diff = _interval_text(r.to_paper_method, signed=True)
        images = str(r.mean.images) if r.mean.test_sampling else "per-run values"
        grid.append([model, r.setting_label, str(r.rank), method, fmt_value(r.cited), _interval_text(r.mean),
                     diff, str(r.mean.seeds), images])
    return grid


def _wrapped(width_cm: float) -> str:
    return rf">{{\raggedright\arraybackslash}}p{{{width_cm}cm}}"


# model, W/A, rank, method, cited, rerun, difference, seeds, test images: fits the portrait text width
METHODS_COLUMNS_SPEC = (_wrapped(1.9) + "lc" + _wrapped(3.1) + "c" + _wrapped(2.9) + _wrapped(2.9) + "c"
                        + _wrapped(1.2))


def methods_caption(summary: SummaryTable, plan: dict) -> str:
    """Caption of the methods table: what is ranked and how the intervals are computed."""
    return (f"Table {summary.label}: {summary.title} (not in the paper; {plan['scale']} scale: "
            f"{plan.get('description', '')}). Every method is trained here with the same recipe "
            "(qbench.paper.recipe), ranked by hard top-1 (%); cited: the paper's number for that method "
            "and setting ('-': the paper does not cite it). Rerun: mean [95 % interval] over seeds and "
            "test images (qbench.stats, the claims' estimator); Ours − method: the paper's method minus "
            "this one, paired on test images and common seeds (the contrast {ours: 1, method: -1}); "
            "one seed: the value with (n=1), no interval. Settings where this scale runs no baseline are "
            "left out.")


@dataclass
class VariantResult:
    """One cell run with the released code's quantizer beside its paper's-quantizer twin.

    Args:
        cell: the variant cell (``Cell.variant != "paper"``).
        twin: the cell it differs from only by the variant (None: no such cell).
        status: "compared", or why there is no difference.
        paper, variant: the two cells' means (None when not run).
        difference: variant minus paper, paired on images and common seeds.
    """

    cell: Cell
    twin: Cell | None
    status: str
    paper: Interval | None = None
    variant: Interval | None = None
    difference: Interval | None = None


def _variant_twin(cell: Cell) -> Cell | None:
    same = ("model", "method", "task", "weights", "activations", "init", "sharing", "start", "slope",
            "learn_biases")
    return next((c for c in load_cells().values() if c.kind == "quant" and c.variant == "paper"
                 and all(getattr(c, k) == getattr(cell, k) for k in same)), None)


def variant_results(summary: SummaryTable, plan: dict, intervals: CellIntervals) -> list[VariantResult]:
    """Every planned cell of another quantizer variant than the paper's (the authors' released
    code, qbench.quant.variant) with its paper's-quantizer twin and the difference.

    Args:
        summary: the registered summary table.
        plan: plan.json of the scale.
        intervals: the scale's runs.
    """
    planned = set(plan.get("cells", []))
    out = []
    for cell in load_cells().values():
        if cell.variant == "paper" or cell.id not in planned:
            continue
        twin = _variant_twin(cell)
        r = VariantResult(cell, twin, "compared")
        r.variant = intervals.mean(cell.id, "top1")
        r.paper = intervals.mean(twin.id, "top1") if twin is not None and twin.id in planned else None
        if twin is None:
            r.status = "no paper's-quantizer cell of the same setting"
        elif r.variant is None or r.paper is None:
            r.status = not_run_reason(cell.id if r.variant is None else twin.id, plan, cell.task)
        else:
            r.difference = intervals.difference(cell.id, twin.id)
        out.append(r)
    return out


def variant_grid(results: list[VariantResult]) -> list[list[str]]:
    """The variant table: model, W/A, variant, the paper's quantizer and the variant's top-1
    [95 % CI], variant minus paper's [95 % CI], seeds, test images."""
    grid = [["Model", "W/A", "Variant", "Paper's quantizer [95 % CI]", "Variant [95 % CI]",
             "Variant − paper's [95 % CI]", "Seeds", "Test images"]]
    for r in results:
        row = [r.cell.model, r.cell.wa_label, r.cell.variant]
        if r.difference is None:
            grid.append(row + [_interval_text(r.paper) if r.paper else "-",
                               _interval_text(r.variant) if r.variant else "-", r.status, "-", "-"])
            continue
        images = str(r.variant.images) if r.variant.test_sampling else "per-run values"
        grid.append(row + [_interval_text(r.paper), _interval_text(r.variant),
                           _interval_text(r.difference, signed=True), str(r.difference.seeds), images])
    return grid


def variant_caption(summary: SummaryTable, plan: dict) -> str:
    """Caption of the variant table."""
    return (f"Table {summary.label}: {summary.title} (not in the paper; {plan['scale']} scale: "
            f"{plan.get('description', '')}). Each row trains one setting of the paper's method twice "
            "under the same recipe, seeds and FP start: with the paper's quantization function and "
            "with the authors' released code's choices (sigmoid argument clamped to +-10, weight T "
            "capped at 2000, weight backward at T = 1 times T, strict hard step, point-midpoint "
            "k-means biases; docs/quantizer.md, which measures each choice on the quantizer). Hard "
            "top-1 (%), mean [95 % interval] over seeds and test images; the difference is paired on "
            "images and common seeds (qbench.stats).")


VARIANT_COLUMNS_SPEC = _wrapped(1.8) + "l" + _wrapped(1.6) + _wrapped(2.9) + _wrapped(2.9) + _wrapped(2.9) + "cc"


@dataclass(frozen=True)
class SummaryMaker:
    """How a summary table of the registry is made: its results, their grid, its caption and
    its LaTeX column specification."""

    results: Callable[[SummaryTable, dict, CellIntervals], list]
    grid: Callable[[list], list[list[str]]]
    caption: Callable[[SummaryTable, dict], str]
    latex_columns: str


SUMMARY_TABLE_MAKERS = {"methods_one_recipe": SummaryMaker(methods_results, methods_grid, methods_caption,
                                                           METHODS_COLUMNS_SPEC),
                        "released_variant": SummaryMaker(variant_results, variant_grid, variant_caption,
                                                         VARIANT_COLUMNS_SPEC)}


def build_summaries(plan: dict, intervals: CellIntervals) -> dict[str, tuple[SummaryTable, list, list[list[str]]]]:
    """Every registered summary table: ``{name: (registry entry, results, grid)}``.

    Args:
        plan: plan.json of the scale.
        intervals: the scale's runs.

    Raises:
        KeyError: a summary table of tables.yaml without a maker here.
    """
    out = {}
    for summary in summary_tables():
        if summary.name not in SUMMARY_TABLE_MAKERS:
            raise KeyError(f"tables.yaml: summary_tables: {summary.name!r} has no maker in qbench.report.tables")
        maker = SUMMARY_TABLE_MAKERS[summary.name]
        results = maker.results(summary, plan, intervals)
        out[summary.name] = (summary, results, maker.grid(results))
    return out


@dataclass(frozen=True)
class Layout:
    """How a table of tables.yaml is built, by its ``layout:``: its entries
    ``(key, table, cells, plan, intervals) -> [Entry]`` and its paper-layout grid ``(table, entries)``."""

    entries: Callable[..., list[Entry]]
    grid: Callable[[dict, list[Entry]], list[list[str]]]


# layout name (tables.yaml) -> its maker: methods x W/A (Tables 1-4), one line per method and
# W/A (Tables 5-7), the ratios of Table 8
LAYOUTS = {
    "wide": Layout(table_entries, wide_grid),
    "long": Layout(table_entries, long_grid),
    "ratio": Layout(lambda key, table, cells, plan, intervals: table8_entries(table, cells, plan), ratio_grid),
}


def build(plan: dict, cells: pd.DataFrame, runs: pd.DataFrame | None = None, *,
          intervals: CellIntervals | None = None) -> dict[str, tuple[dict, list[Entry], list[list[str]]]]:
    """All paper tables: ``{key: (registry table, entries, paper-layout grid)}``.

    Args:
        plan: plan.json of the scale.
        cells: aggregated per-cell results.
        runs: runs.csv, for the 95 % intervals (None: means only).
        intervals: the runs already read (instead of ``runs``).
    """
    intervals = intervals or CellIntervals(runs)
    out = {}
    for key, table in load_tables().items():
        if table["layout"] not in LAYOUTS:
            raise KeyError(f"tables.yaml: {key}: layout {table['layout']!r} has no maker; known: {', '.join(LAYOUTS)}")
        layout = LAYOUTS[table["layout"]]
        entries = layout.entries(key, table, cells, plan, intervals)
        out[key] = (table, entries, layout.grid(table, entries))
    return out


def caption(key: str, table: dict, plan: dict) -> str:
    """Caption: the paper's title, the scale and how to read the reproduced lines.

    Args:
        key: table key.
        table: registry table.
        plan: plan.json.
    """
    num = key.replace("table", "Table ")
    metrics = "/".join(METRIC_LABEL[m] for m in table["metrics"])
    text = f"{num}: {table['title']}. Paper numbers beside this run's ({plan['scale']} scale: " \
           f"{plan.get('description', '')}); reproduced = mean ± half-width of the " \
           f"{INTERVAL_METHOD} (hard quantization)"
    if table["layout"] == "wide":
        text += f"; values are {metrics} (%), columns W/A bits"
    text += "."
    if table["layout"] == "wide":
        text += (" A cited row whose method this scale reruns with the same recipe (a baseline cell placed "
                 "in it) shows the cited number, the rerun here (mean ± half-width, as reproduced) and Δ.")
    if table["layout"] in ("wide", "long") and not data_like_paper(plan, table["task"]):
        text += (" This scale's data are not the paper's, so absolute numbers do not compare across the two: "
                 "Δ is each cell's change against its own FP model at this scale (95 % interval, paired on "
                 "images and seeds as in the claims) beside the paper's change against the paper's FP model.")
    if table["layout"] == "ratio":
        text += (" The paper's ratios come from a VU9P FPGA; FPGA timings cannot be measured here, so time "
                 "is an analytic bit-operation count (multiply-accumulates x weight bits x activation bits "
                 "of every layer at this scale's input size; first conv and last FC at 32 x 32 bits) and "
                 "space the measured size of the exported models.")
    return text


def write_all(plan: dict, cells: pd.DataFrame, outdir: str | Path, runs: pd.DataFrame | None = None) -> list[Path]:
    """Write every table (csv, md, tex) and all_cells.csv into ``outdir``.

    Args:
        plan: plan.json of the scale.
        cells: aggregated per-cell results.
        outdir: destination directory.
        runs: runs.csv (run directories with predictions.npz), for the 95 % intervals; None:
            means only, "(n=...)" everywhere.
    """
    outdir = Path(outdir)
    written = []
    long_rows = []
    intervals = CellIntervals(runs)
    if runs is None or runs.empty:
        log.warning("no runs given: the tables show means without intervals")
    for name, (summary, _, grid) in build_summaries(plan, intervals).items():
        maker = SUMMARY_TABLE_MAKERS[name]
        title = maker.caption(summary, plan)
        tex_title = title.split(": ", 1)[1]  # LaTeX prints "Table A:" itself
        for ext, text in (("csv", to_csv(grid)), ("md", to_markdown(grid, title)),
                          ("tex", to_longtable(grid, tex_title, f"tab:{name}", summary.label, maker.latex_columns))):
            path = outdir / f"{name}.{ext}"
            write_text(path, text)
            written.append(path)
    for key, (table, entries, grid) in build(plan, cells, intervals=intervals).items():
        title = caption(key, table, plan)
        num = int(key.replace("table", ""))
        tex_title = title.split(": ", 1)[1]  # LaTeX prints "Table N:" itself
        note_lines = notes(entries)
        for ext, text in (("csv", to_csv(grid)), ("md", to_markdown(grid, title, note_lines)),
                          ("tex", to_latex(grid, tex_title, f"tab:{key}", num, note_lines))):
            path = outdir / f"{key}.{ext}"
            write_text(path, text)
            written.append(path)
        for e in entries:
            long_rows.append({"table": e.table, "row": e.row, "row_label": e.row_label,
                              "column": e.column, "column_label": e.column_label, "metric": e.metric,
                              "paper": e.paper, "repro_mean": e.mean, "repro_std": e.std,
                              "ci_low": e.ci_low, "ci_high": e.ci_high, "half_width": e.half_width,
                              "n_seeds": e.n, "diff": e.diff, "status": e.status, "cell": e.cell,
                              "vs_fp": e.vs_fp.effect if e.vs_fp else None,
                              "vs_fp_low": e.vs_fp.low if e.vs_fp else None,
                              "vs_fp_high": e.vs_fp.high if e.vs_fp else None,
                              "paper_vs_fp": e.paper_vs_fp})
    buf = io.StringIO()
    pd.DataFrame(long_rows).to_csv(buf, index=False)
    write_text(outdir / "all_cells.csv", buf.getvalue())
    written.append(outdir / "all_cells.csv")
    return written


def read_cells(path: str | Path) -> pd.DataFrame:
    """Read cells.csv (an empty file is an empty frame).

    Args:
        path: the file.
    """
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--cells", required=True)
    ap.add_argument("--runs", required=False,
                    help="runs.csv: its run directories' predictions.npz give the 95 %% intervals")
    ap.add_argument("--outdir", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    plan = read_json(args.plan)
    runs = read_cells(args.runs) if args.runs else None
    for p in write_all(plan, read_cells(args.cells), args.outdir, runs):
        log.info("wrote %s", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
