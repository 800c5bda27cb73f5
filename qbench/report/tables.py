"""The paper's Tables 1-8 with the paper's numbers beside the reproduced ones.

``python -m qbench.report.tables --plan plan.json --cells cells.csv --runs runs.csv --outdir DIR``

Writes ``table{1..8}.{csv,md,tex}`` in the paper's layout and ``all_cells.csv`` (one line per
table / row / column / metric). Other methods' rows are shown as cited. A reproduced cell shows
mean ± std over seeds and the difference to the paper; a cell without runs says why it is
"not run" and never shows a number.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qbench.paper import cells_for_table, load_cells, load_tables
from qbench.quant import LevelSet
from qbench.io import read_json, write_text

METRIC_COLUMN = {"top1": "hard_top1", "top5": "hard_top5", "map": "hard_map"}
METRIC_LABEL = {"top1": "Top-1", "top5": "Top-5", "map": "mAP", "ratio": "ratio"}
NOT_RUN = "not run"

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
        status: "cited", "reproduced", "not run (...)" or "measured"/"analytic" (Table 8).
        cell: the experiment cell that produced it, if any.
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


def table_entries(key: str, table: dict, cells: pd.DataFrame, plan: dict) -> list[Entry]:
    """All entries of one classification/detection table (layouts ``wide`` and ``long``).

    Args:
        key: table key.
        table: the registry table.
        cells: aggregated per-cell results (cells.csv).
        plan: plan.json of the scale.
    """
    by_cell = {r["cell"]: r for r in cells.to_dict("records")} if len(cells) else {}
    where = {(p.row, p.column): c.id for c, p in cells_for_table(key)}
    cols = {c["key"]: c["label"] for c in table["columns"]}
    out = []
    for row in table["rows"]:
        for col, value in row["cells"].items():
            if value is None:
                continue
            for metric in table["metrics"]:
                e = Entry(key, row["key"], row["label"], col, cols[col], metric, _num(value.get(metric)))
                if row.get("ours"):
                    cid = where.get((row["key"], col))
                    e.cell = cid
                    rec = by_cell.get(cid)
                    mean = _num(rec.get(f"{METRIC_COLUMN[metric]}_mean")) if rec else None
                    if rec is not None and mean is not None:
                        e.mean, e.std = mean, _num(rec.get(f"{METRIC_COLUMN[metric]}_std"))
                        e.n, e.status = int(rec["n_seeds"]), "reproduced"
                    else:
                        e.status = not_run_reason(cid, plan, table["task"])
                out.append(e)
    return out


def _bits(level_set: str | None) -> int:
    return 32 if level_set is None else LevelSet.from_name(level_set).bits


def layer_macs(arch: str, num_classes: int, in_channels: int, image_size: int) -> list[tuple[str, int, bool]]:
    """Multiply-accumulates of every Conv2d / Linear of ``arch`` for one image.

    Returns ``(name, macs, quantized)`` per layer; as in the paper (and qbench.quant's default
    policy) the first conv and the last linear layer are not quantized.

    Args:
        arch: model name for ``qbench.models.build_model``.
        num_classes: classifier outputs.
        in_channels: image channels.
        image_size: square input size.
    """
    import torch
    from torch import nn

    from qbench.models import build_model

    model = build_model(arch, num_classes=num_classes, in_channels=in_channels).eval()
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    macs: dict[str, int] = {}

    def hook(name):
        def count(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                macs[name] = int(output.numel() // output.shape[0] * per_out)
            else:
                macs[name] = int(module.in_features * module.out_features)
        return count

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    with torch.no_grad():
        model(torch.zeros(1, in_channels, image_size, image_size))
    for h in handles:
        h.remove()
    first_conv = next(n for n, m in layers if isinstance(m, nn.Conv2d))
    last_linear = [n for n, m in layers if isinstance(m, nn.Linear)][-1]
    return [(n, macs.get(n, 0), n not in (first_conv, last_linear)) for n, _ in layers]


def bit_operations(layers: list[tuple[str, int, bool]], wbits: int, abits: int) -> int:
    """Analytic bit-operations: MACs x weight bits x input-activation bits per layer
    (unquantized layers at 32 x 32).

    Args:
        layers: ``layer_macs`` output.
        wbits: weight bits of the quantized layers.
        abits: input-activation bits of the quantized layers.
    """
    return sum(m * (wbits * abits if q else 32 * 32) for _, m, q in layers)


def _table8_layers(table: dict, plan: dict) -> list[tuple[str, int, bool]] | None:
    cfg = plan.get("config") or {}
    train = cfg.get("train", {})
    model_cfg = {**train.get("model", {}), **cfg.get("models", {}).get(table["model"], {}).get("model", {})}
    try:
        return layer_macs(table["model"], int(model_cfg.get("num_classes", 1000)),
                          int(model_cfg.get("in_channels", 3)), int(train.get("data", {}).get("image_size", 224)))
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
    """Reproduced value: "mean ± std" (n >= 2), "mean (n=1)", or the not-run reason.

    Args:
        e: the entry.
        digits: decimals.
    """
    if e.mean is None:
        return e.status if e.status.startswith(NOT_RUN) else "-"
    if e.status == "analytic":
        return f"{e.mean:.{digits}f}"
    if e.std is not None:
        return f"{e.mean:.{digits}f} ± {e.std:.{digits}f}"
    return f"{e.mean:.{digits}f} (n={e.n})"


def fmt_diff(e: Entry, digits: int = 1) -> str:
    """Reproduced minus paper, signed ("" when either is missing).

    Args:
        e: the entry.
        digits: decimals.
    """
    d = e.diff
    return "" if d is None else f"{d:+.{digits}f}"


def _short(e: Entry) -> str:
    """Grid text of a not-run entry: "not run" plus a mark whose reason goes in the notes."""
    return NOT_RUN + "*" if e.status.startswith(NOT_RUN) else "-"


def _pair_repro(es: list[Entry]) -> str:
    """"mean±std/mean±std" of the metrics of one table cell, one seed count for all."""
    if es[0].mean is None:
        return _short(es[0])
    parts = []
    for x in es:
        if x.mean is None:
            parts.append("-")
        elif x.std is not None:
            parts.append(f"{x.mean:.1f}±{x.std:.1f}")
        else:
            parts.append(f"{x.mean:.1f}")
    text = "/".join(parts)
    return text if es[0].std is not None else f"{text} (n={es[0].n})"


def wide_grid(table: dict, entries: list[Entry]) -> list[list[str]]:
    """Paper layout of Tables 1-4: methods x W/A; reproduced rows get three lines
    (paper / reproduced / difference). Values are metric1/metric2 (e.g. Top-1/Top-5).

    Args:
        table: registry table.
        entries: its entries.
    """
    metrics = table["metrics"]
    cols = table["columns"]
    grid = [["Method"] + [c["label"] for c in cols]]
    idx = {(e.row, e.column, e.metric): e for e in entries}

    def cited(es):
        return "/".join(fmt_value(x.paper, 2 if x.paper is not None and round(x.paper, 1) != x.paper else 1)
                        for x in es)

    def diff(es):
        return "/".join(fmt_diff(x) or "n/a" for x in es) if es[0].mean is not None else "n/a"

    for row in table["rows"]:
        def line(label, render):
            out = [label]
            for c in cols:
                es = [idx.get((row["key"], c["key"], m)) for m in metrics]
                out.append("-" if all(x is None for x in es) else render(es))
            return out

        if not row.get("ours"):
            grid.append(line(row["label"], cited))
            continue
        grid.append(line(f"{row['label']}: paper", cited))
        grid.append(line(f"{row['label']}: reproduced", _pair_repro))
        grid.append(line(f"{row['label']}: Δ", diff))
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
    for m in metrics:
        head += [f"{METRIC_LABEL[m]} paper", f"{METRIC_LABEL[m]} reproduced", f"{METRIC_LABEL[m]} Δ"]
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
             note_lines: list[str] = ()) -> str:
    """A booktabs ``table`` float (scaled to the text width when wider).

    Args:
        grid: header row then body rows.
        title: caption.
        label: LaTeX label.
        number: table number to print (the paper's), if given.
        note_lines: footnotes ("not run" reasons).
    """
    ncol = len(grid[0])
    counter = [rf"\setcounter{{table}}{{{number - 1}}}"] if number else []
    lines = counter + [r"\begin{table}[htbp]", r"\centering", r"\footnotesize",
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


def build(plan: dict, cells: pd.DataFrame) -> dict[str, tuple[dict, list[Entry], list[list[str]]]]:
    """All tables: ``{key: (registry table, entries, paper-layout grid)}``.

    Args:
        plan: plan.json of the scale.
        cells: aggregated per-cell results.
    """
    out = {}
    for key, table in load_tables().items():
        if table["layout"] == "ratio":
            entries = table8_entries(table, cells, plan)
            grid = ratio_grid(table, entries)
        else:
            entries = table_entries(key, table, cells, plan)
            grid = wide_grid(table, entries) if table["layout"] == "wide" else long_grid(table, entries)
        out[key] = (table, entries, grid)
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
           f"{plan.get('description', '')}); reproduced = mean ± sample std over seeds " \
           f"(hard quantization)"
    if table["layout"] == "wide":
        text += f"; values are {metrics} (%), columns W/A bits"
    text += "."
    if table["layout"] == "ratio":
        text += (" The paper's ratios come from a VU9P FPGA; FPGA timings cannot be measured here, so time "
                 "is an analytic bit-operation count (multiply-accumulates x weight bits x activation bits "
                 "of every layer at this scale's input size; first conv and last FC at 32 x 32 bits) and "
                 "space the measured size of the exported models.")
    return text


def write_all(plan: dict, cells: pd.DataFrame, outdir: str | Path) -> list[Path]:
    """Write every table (csv, md, tex) and all_cells.csv into ``outdir``.

    Args:
        plan: plan.json of the scale.
        cells: aggregated per-cell results.
        outdir: destination directory.
    """
    outdir = Path(outdir)
    written = []
    long_rows = []
    for key, (table, entries, grid) in build(plan, cells).items():
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
                              "n_seeds": e.n, "diff": e.diff, "status": e.status, "cell": e.cell})
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
    ap.add_argument("--runs", required=False, help="runs.csv (unused; declared for provenance)")
    ap.add_argument("--outdir", required=True)
    args = ap.parse_args(argv)
    plan = read_json(args.plan)
    for p in write_all(plan, read_cells(args.cells), args.outdir):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
