"""The method sanity table: did each rerun baseline train at all under the shared harness?

A baseline that ends at chance, or far below the accuracy drop its own paper reports, says
something about the harness (its start values, schedule, activation range), not about the paper's
method: such a cell is flagged as a *harness finding* and must not be read as a win of the
paper's method. Per cell and scale the table lists:

- hard top-1 of every seed and their mean;
- the share of nonzero weights and the number of distinct weight values used per layer (per
  output channel where the level table is per channel), read from each run's exported hard
  weights (``model_hard.pt``: integer codes and level tables, ``QuantMethod.export``), against
  the number of levels the method's quantizer has (``level_counts``);
- the seeds that collapsed: top-1 below ``chance + COLLAPSE_SHARE * (FP top-1 - chance)``, i.e.
  within a quarter of the way from chance to the full-precision model;
- the relative drop from the FP model, and the paper's relative drop where a paper number is
  given; a drop more than ``DROP_TOLERANCE`` above the paper's is flagged;
- the training curve (mean training loss over seeds, ``history`` of each run's metrics.json),
  which names the usual causes: a first epoch whose loss is above a uniform guess's (ln of the
  classes: the method's start values do not suit the FP model it fine-tunes) and a loss still
  falling by more than ``LAST_EPOCH_FALL`` in the last epoch (the schedule ends before the method
  has recovered).

Inputs are the per-run records the report already collects (``qbench.report.collect``: cell,
seed, ``hard_top1``, ``run_dir``; ``runs.csv`` of ``qbench.report.aggregate``) and, per model, the
FP cell's runs. The paper's relative drop of a cell is ``1 - cited top-1 / the table's
full-precision caption`` (the paper's own FP, not each baseline paper's).

``python -m qbench.report.sanity --runs runs.csv --num-classes 10 --out method_sanity.md``
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import torch

from qbench import run_files
from qbench.io import read_json, write_text
from qbench.paper import load_cells, load_tables
from qbench.quant.baselines import dequantize
from qbench.quant.methods.baselines import level_counts

log = logging.getLogger(__name__)

COLLAPSE_SHARE = 0.25
DROP_TOLERANCE = 0.2
LAST_EPOCH_FALL = 0.25


def export_weight_stats(exported: dict) -> dict:
    """Nonzero share and levels used of an export (``QuantMethod.export`` format).

    Args:
        exported: ``{"weights": {layer: {"codes", "codebook"}}, ...}``; a codebook is (L,) per
            layer or (C, L) per output channel.

    Returns:
        ``{"nonzero_fraction", "levels_used", "weights"}``: the share of quantized weights whose
        value is not 0, the most distinct values any layer (or output channel) uses, and the
        number of quantized weights.

    Raises:
        ValueError: the export holds no quantized weights.
    """
    layers = exported.get("weights") or {}
    if not layers:
        raise ValueError("export holds no quantized weights")
    nonzero = total = used = 0
    for name, entry in layers.items():
        codes, codebook = entry["codes"], entry["codebook"]
        values = dequantize(codes, codebook)
        nonzero += int((values != 0).sum())
        total += values.numel()
        if codebook.dim() == 1:
            used = max(used, int(torch.unique(values).numel()))
        else:
            rows = values.reshape(values.shape[0], -1)
            used = max(used, max(int(torch.unique(row).numel()) for row in rows))
    return {"nonzero_fraction": nonzero / total, "levels_used": used, "weights": total}


def load_export(run_dir: str | Path) -> dict:
    """The exported hard weights of a run (tensors only: ``weights_only=True``)."""
    path = Path(run_dir) / run_files.EXPORT
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run (metrics.json ``history``; empty: no such file)."""
    path = Path(run_dir) / run_files.METRICS
    if not path.is_file():
        return []
    return read_json(path).get("history") or []


def mean_loss_curve(histories: Iterable[list[dict]]) -> list[float]:
    """Training loss per epoch, averaged over runs, over the epochs every run has (empty: a run
    without a recorded loss)."""
    curves = [[e.get("train_loss") for e in h] for h in histories]
    if not curves or any(not c or any(x is None for x in c) for c in curves):
        return []
    n = min(len(c) for c in curves)
    return [sum(c[i] for c in curves) / len(curves) for i in range(n)]


def collapse_threshold(num_classes: int, fp_top1: float, share: float = COLLAPSE_SHARE) -> float:
    """Top-1 (%) below which a run counts as collapsed: ``share`` of the way from chance
    (100 / classes) to the FP model."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    chance = 100.0 / num_classes
    return chance + share * max(fp_top1 - chance, 0.0)


@dataclass
class SanityRow:
    """One baseline cell at one scale.

    Attributes:
        cell, method, model, setting: the cell.
        top1: hard top-1 (%) per seed, in seed order.
        seeds: the seeds.
        fp_top1: the FP model's top-1 (%).
        nonzero_fraction: mean over seeds of the nonzero weight share (None: no export read).
        levels_used: most distinct weight values a layer used, over seeds (None: no export).
        levels_expected: levels of the method's weight quantizer (None: FP weights).
        collapsed_seeds: seeds below ``collapse_threshold``.
        relative_drop: 1 - mean top-1 / FP top-1.
        paper_relative_drop: the paper's (None: not given).
        loss_curve: training loss per epoch, mean over seeds (empty: not recorded).
        findings: why the cell is a harness finding (empty: it is not).
    """

    cell: str
    method: str
    model: str
    setting: str
    seeds: list[int]
    top1: list[float]
    fp_top1: float
    nonzero_fraction: float | None = None
    levels_used: int | None = None
    levels_expected: int | None = None
    collapsed_seeds: list[int] = field(default_factory=list)
    relative_drop: float = 0.0
    paper_relative_drop: float | None = None
    loss_curve: list[float] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @property
    def mean_top1(self) -> float:
        return sum(self.top1) / len(self.top1)

    @property
    def harness_finding(self) -> bool:
        return bool(self.findings)


def sanity_row(cell: str, method: str, model: str, setting: str, runs: Iterable[dict], fp_top1: float,
               num_classes: int, levels_expected: int | None = None, paper_relative_drop: float | None = None,
               read_export: Callable[[str | Path], dict] | None = load_export,
               read_history: Callable[[str | Path], list[dict]] | None = load_history) -> SanityRow:
    """The sanity row of one cell from its runs.

    Args:
        cell, method, model, setting: the cell.
        runs: one record per seed with ``seed``, ``hard_top1`` and ``run_dir``.
        fp_top1: the FP model's top-1 (%) at this scale.
        num_classes: classes of the task (chance = 100 / classes).
        levels_expected: levels of the method's weight quantizer (None: FP weights).
        paper_relative_drop: 1 - the paper's top-1 of the method / the paper's FP top-1.
        read_export: ``run_dir -> export`` (None: do not read weights).
        read_history: ``run_dir -> per-epoch records`` (None: do not read the training curve).

    Raises:
        ValueError: no runs, or a run without ``hard_top1``.
    """
    runs = sorted(runs, key=lambda r: int(r["seed"]))
    if not runs:
        raise ValueError(f"cell {cell!r}: no runs")
    top1 = []
    for r in runs:
        value = r.get("hard_top1")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"cell {cell!r} seed {r['seed']}: no hard_top1")
        top1.append(float(value))
    row = SanityRow(cell, method, model, setting, [int(r["seed"]) for r in runs], top1, float(fp_top1),
                    levels_expected=levels_expected, paper_relative_drop=paper_relative_drop)
    threshold = collapse_threshold(num_classes, fp_top1)
    row.collapsed_seeds = [s for s, t in zip(row.seeds, top1) if t < threshold]
    row.relative_drop = 1.0 - row.mean_top1 / fp_top1 if fp_top1 > 0 else 0.0
    if read_export is not None and levels_expected is not None:
        stats = [export_weight_stats(read_export(r["run_dir"])) for r in runs]
        row.nonzero_fraction = sum(s["nonzero_fraction"] for s in stats) / len(stats)
        row.levels_used = max(s["levels_used"] for s in stats)
    if row.collapsed_seeds:
        row.findings.append(f"seed(s) {', '.join(map(str, row.collapsed_seeds))} at chance "
                            f"(top-1 < {threshold:.1f} %)")
    if paper_relative_drop is not None and row.relative_drop > paper_relative_drop + DROP_TOLERANCE:
        row.findings.append(f"relative drop {100 * row.relative_drop:.0f} % vs the paper's "
                            f"{100 * paper_relative_drop:.0f} %")
    if row.levels_used is not None and row.levels_expected is not None and row.levels_used < row.levels_expected:
        row.findings.append(f"uses {row.levels_used} of {row.levels_expected} weight levels")
    if read_history is not None:
        row.loss_curve = mean_loss_curve(read_history(r["run_dir"]) for r in runs)
    row.findings += curve_findings(row.loss_curve, num_classes)
    return row


def curve_findings(curve: list[float], num_classes: int) -> list[str]:
    """What a mean training-loss curve says about the harness (the module docstring)."""
    out = []
    uniform = math.log(num_classes)
    if curve and curve[0] > uniform:
        out.append(f"epoch-1 training loss {curve[0]:.2f} above a uniform guess's {uniform:.2f} "
                   "(start values)")
    if len(curve) >= 2 and curve[-2] > 0 and curve[-1] < (1 - LAST_EPOCH_FALL) * curve[-2]:
        out.append(f"training loss still falling at the end ({curve[-2]:.2f} -> {curve[-1]:.2f} in "
                   "the last epoch: schedule too short)")
    return out


def sanity_grid(rows: Iterable[SanityRow]) -> list[list[str]]:
    """The table as rows of strings (``qbench.report.tables.to_markdown`` renders it)."""
    grid = [["Cell", "Method", "W/A", "Top-1 per seed (%)", "Mean", "FP", "Nonzero weights",
             "Levels used / method's", "Collapsed seeds", "Train loss first -> last", "Harness finding"]]
    for r in rows:
        levels = "-" if r.levels_expected is None else (
            f"{r.levels_used if r.levels_used is not None else '?'} / {r.levels_expected}")
        nonzero = "-" if r.nonzero_fraction is None else f"{100 * r.nonzero_fraction:.1f} %"
        curve = f"{r.loss_curve[0]:.2f} -> {r.loss_curve[-1]:.2f}" if r.loss_curve else "-"
        grid.append([r.cell, r.method, r.setting, " / ".join(f"{t:.1f}" for t in r.top1), f"{r.mean_top1:.1f}",
                     f"{r.fp_top1:.1f}", nonzero, levels, ", ".join(map(str, r.collapsed_seeds)) or "none",
                     curve, "; ".join(r.findings) or "no"])
    return grid


def paper_relative_drop(cell) -> float | None:
    """``1 - cited top-1 / FP caption`` of the cell's first placement with both numbers."""
    tables = load_tables()
    for place in cell.tables:
        table = tables.get(place.table, {})
        rows = {r["key"]: r for r in table.get("rows", [])}
        cited = ((rows.get(place.row) or {}).get("cells") or {}).get(place.column) or {}
        fp = ((rows.get("fp") or {}).get("cells") or {}).get("w32a32") or {}
        if cited.get("top1") is not None and fp.get("top1"):
            return 1.0 - float(cited["top1"]) / float(fp["top1"])
    return None


def sanity_rows(records: Iterable[dict], num_classes: int,
                read_export: Callable[[str | Path], dict] | None = load_export,
                read_history: Callable[[str | Path], list[dict]] | None = load_history) -> list[SanityRow]:
    """The sanity rows of every baseline classification cell among ``records``.

    Args:
        records: per-run records (``cell``, ``seed``, ``hard_top1``, ``run_dir``), FP cells included.
        num_classes: classes of the scale's task.
        read_export, read_history: as in ``sanity_row``.

    Returns:
        One row per baseline cell whose model's FP cell has runs (others are logged and skipped).
    """
    cells = load_cells()
    by_cell: dict[str, list[dict]] = {}
    for r in records:
        by_cell.setdefault(str(r["cell"]), []).append(r)
    fp_top1 = {}
    for cell_id, runs in by_cell.items():
        cell = cells.get(cell_id)
        if cell is not None and cell.kind == "fp" and cell.task == "classify":
            fp_top1[cell.model] = sum(float(r["hard_top1"]) for r in runs) / len(runs)
    out = []
    for cell_id in sorted(by_cell):
        cell = cells.get(cell_id)
        if cell is None or not cell.is_baseline or cell.task != "classify":
            continue
        if cell.model not in fp_top1:
            log.warning("%s: no FP run of %s to compare with; left out of the sanity table", cell_id, cell.model)
            continue
        levels = level_counts(cell.method, cell.weights, cell.activations)["weights"]
        out.append(sanity_row(cell_id, cell.method, cell.model, cell.wa_label, by_cell[cell_id], fp_top1[cell.model],
                              num_classes, levels_expected=levels, paper_relative_drop=paper_relative_drop(cell),
                              read_export=read_export, read_history=read_history))
    return out


def to_markdown(grid: list[list[str]]) -> str:
    lines = ["| " + " | ".join(grid[0]) + " |", "|" + "---|" * len(grid[0])]
    lines += ["| " + " | ".join(row) + " |" for row in grid[1:]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the method sanity table of a scale's ``runs.csv`` as markdown."""
    ap = argparse.ArgumentParser(description="The method sanity table of a scale's runs.")
    ap.add_argument("--runs", required=True, help="runs.csv of qbench.report.aggregate")
    ap.add_argument("--num-classes", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        runs = pd.read_csv(args.runs)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        print(f"--runs {args.runs}: {e}", file=sys.stderr)
        return 2
    missing = {"cell", "seed", "hard_top1", "run_dir"} - set(runs.columns)
    if missing:
        print(f"--runs {args.runs}: no column(s) {', '.join(sorted(missing))}", file=sys.stderr)
        return 2
    rows = sanity_rows(runs.to_dict("records"), args.num_classes)
    write_text(args.out, to_markdown(sanity_grid(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
