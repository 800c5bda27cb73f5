"""The PDF report of one scale (LaTeX, booktabs, pdflatex).

``python -m qbench.report.latex --plan plan.json --cells cells.csv --runs runs.csv \
    --claims claims.csv --tables-dir T --figures-dir F --benchmarks-dir B --tex report.tex --pdf report.pdf``

Contents: page 1 the verdict on each of the paper's claims with its interval, then the claims in
detail, the scale and its deviations from the paper, every table (paper beside reproduced), every figure, the environment, and wall / CPU
time per pipeline stage from snakemake's benchmark files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

import pandas as pd

from qbench.report.claims import (INTERVAL_VERDICTS, PLATEAU_GAIN, VERDICTS, controls_table, fp_checks,
                                  read_claims, summarize)
from qbench.paper import figure_names, summary_tables, table_names
from qbench.paper import figures as paper_figures
from qbench.io import read_json, write_bytes, write_text
from qbench.report.tables import latex_escape as esc
from qbench.report.tables import read_cells

FIGURE_CAPTIONS = {
    "fig2_quant_function": "The soft quantization function (Eq. 7) relaxes from a "
                           "near-linear function to the ideal steps (Eq. 12) as T grows; drawn with "
                           "qbench.quant.soft\\_quantize.",
    "fig3_weight_hist": "Distribution of full-precision weights of three layers "
                        "(first conv of blocks 2-4 for ResNet), from this scale's FP checkpoints.",
    "fig4_soft_hard_gap": "Test accuracy of the soft (training) and hard (inference) "
                          "quantized model over training, ResNet-18 3(±4)/32 (per-epoch test subset; "
                          "bands: 95 \\% intervals over seeds and test images).",
    "fig5_temperature": "Training loss and train / test accuracy for AlexNet 2/32 "
                        "with T = 5, 10, 20 x epoch.",
    "summary_paper_vs_repro": "Not in the paper: every reproduced top-1 / mAP number against the paper's "
                              "(error bars: 95 \\% intervals of the cell mean over seeds and test images).",
}


FIGURE_NUMBERS = {f.name: f.number for f in paper_figures() if f.number is not None}


def _column_total(df: pd.DataFrame, col: str, how: str = "sum") -> float:
    """Sum (or max) of a numeric benchmark column; 0 when absent or not numeric ("-")."""
    if col not in df:
        return 0.0
    values = pd.to_numeric(df[col], errors="coerce").fillna(0)
    return float(values.max() if how == "max" else values.sum())


def stage_times(bench_dir: str | Path) -> pd.DataFrame:
    """Wall and CPU seconds per pipeline stage from snakemake benchmark TSVs.

    A stage is a rule: ``benchmarks/<rule>.tsv`` or ``benchmarks/<rule>/<job>.tsv``.

    Args:
        bench_dir: the benchmarks directory of the scale.
    """
    rows = []
    bench_dir = Path(bench_dir)
    for path in sorted(bench_dir.rglob("*.tsv")) if bench_dir.exists() else []:
        rel = path.relative_to(bench_dir)
        stage = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        try:
            df = pd.read_csv(path, sep="\t")
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            _log.warning("%s: not a snakemake benchmark file; left out of the stage times", path)
            continue
        if "s" not in df:  # a stray TSV, not snakemake's
            _log.warning("%s: not a snakemake benchmark file (no 's' column); left out", path)
            continue
        rows.append({"stage": stage, "wall_s": float(df["s"].sum()), "cpu_s": _column_total(df, "cpu_time"),
                     "max_rss_mb": _column_total(df, "max_rss", how="max")})
    if not rows:
        return pd.DataFrame(columns=["stage", "jobs", "wall_s", "cpu_s", "max_rss_mb"])
    df = pd.DataFrame(rows)
    out = df.groupby("stage", sort=False).agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"),
                                             cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))
    return out.reset_index()


def environment() -> list[tuple[str, str]]:
    """Versions and machine facts for the report."""
    from importlib import metadata

    items = [("python", platform.python_version()), ("platform", platform.platform()),
             ("cpu cores", str(os.cpu_count()))]
    for pkg in ("torch", "torchvision", "snakemake", "snakemake-executor-plugin-slurm", "pandas",
                "matplotlib", "numpy", "pyyaml"):
        try:
            items.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            items.append((pkg, "not installed"))
    try:
        import torch

        items.append(("cuda available", str(torch.cuda.is_available())))
    except ImportError:
        pass
    tex = shutil.which("pdflatex")
    if tex:
        first = subprocess.run([tex, "--version"], capture_output=True, text=True).stdout.splitlines()
        items.append(("pdflatex", first[0] if first else tex))
    return items


def _longtable(header: list[str], rows: list[list[str]], spec: str) -> list[str]:
    lines = [rf"\begin{{longtable}}{{{spec}}}", r"\toprule",
             " & ".join(rf"\textbf{{{esc(h)}}}" for h in header) + r" \\", r"\midrule", r"\endhead"]
    # long identifiers (cell names) may break after an underscore
    lines += [" & ".join(esc(c).replace(r"\_", r"\_\allowbreak{}") for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{longtable}"]
    return lines


def _num(x, fmt: str = "{:+.2f}") -> str:
    return "" if x is None or (isinstance(x, float) and pd.isna(x)) else fmt.format(float(x))


def _interval(r) -> str:
    if pd.isna(r["ours_effect"]):
        return "-"
    return f"{float(r['ours_effect']):+.2f} [{float(r['ci_low']):+.2f}, {float(r['ci_high']):+.2f}]"


WIDE_TABLE_COLUMNS = 7


LANDSCAPE_WIDTH_CM = 25.0  # A4 landscape with 2 cm margins, less a little air
LABEL_COLUMN_CM = 4.2


def _table_page(tex: str) -> str:
    """A table as the report prints it: one with many W/A columns on a landscape page of its own,
    in fixed-width columns whose cells wrap (after "/" and spaces) instead of being scaled down,
    so that it stays in \\footnotesize type, readable at 100 % zoom."""
    m = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex)
    if not (m and len(m.group(1)) >= WIDE_TABLE_COLUMNS):
        return tex
    ncol = len(m.group(1))
    width = (LANDSCAPE_WIDTH_CM - LABEL_COLUMN_CM) / (ncol - 1) - 0.2
    spec = (rf">{{\raggedright}}p{{{LABEL_COLUMN_CM - 0.2:.1f}cm}}"
            + rf">{{\centering}}p{{{width:.2f}cm}}" * (ncol - 2)
            + rf">{{\centering\arraybackslash}}p{{{width:.2f}cm}}")
    out = []
    body = False
    for line in tex.splitlines():
        if line.startswith(r"\resizebox"):
            continue
        if line.startswith(r"\begin{tabular}"):
            line, body = rf"\begin{{tabular}}{{{spec}}}", True
        elif line == r"\end{tabular}}":
            line, body = r"\end{tabular}", False
        elif body and r"\\" in line and not line.startswith("\\"):
            line = line.replace("/", r"/\allowbreak{}")
        out.append(line)
    return "\\begin{landscape}\n" + "\n".join(out) + "\n\\end{landscape}\n"


def _seed_sets(text: str) -> str:
    """``cell: 0 1; cell: 0 1`` -> ``0 1`` (the distinct seed lists of a comparison)."""
    if not text:
        return "-"
    sets = []
    for part in str(text).split("; "):
        seeds = part.split(": ", 1)[-1]
        if seeds not in sets:
            sets.append(seeds)
    return " / ".join(sets)


def _claims_table(summary: pd.DataFrame) -> list[str]:
    rows = [[s["claim"].replace("_", " "), f"{s['quote_id']} ({s['source']})", s["verdict"], s["comparisons"]]
            for _, s in summary.iterrows()]
    return _longtable(["Claim", "Quoted sentence (where)", "Verdict", "Comparisons: how they fell"], rows,
                      r">{\raggedright}p{3.4cm}>{\raggedright}p{4.4cm}>{\raggedright}p{2.3cm}"
                      r">{\raggedright\arraybackslash}p{6.1cm}")


def _positive_controls_section(runs: pd.DataFrame | None, fp_seed: int) -> list[str]:
    """The positive control of each claim family and its interval (page 1)."""
    L: list[str] = []
    controls = controls_table(runs, fp_seed) if runs is not None and len(runs) else None
    if controls is not None and len(controls):
        L += [r"\subsection*{Positive controls}",
              esc("A claim is judged only where the effect its family depends on is visible at this scale: "
                  "the control's interval must lie above the comparison's half-width (weight bits: FP - W1/32 "
                  "of the same model; activation bits: W1/32 - W1/1; detection: FP - W2/32). Otherwise the "
                  "comparison is 'not testable at this scale'.")]
        L += _longtable(["Family", "Control", "Effect [95 % CI]"],
                        [[r["family"], r["control"],
                          "not run" if pd.isna(r["effect"]) else
                          f"{r['effect']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"]
                         for _, r in controls.iterrows()],
                        r"l>{\raggedright}p{7cm}>{\raggedright\arraybackslash}p{5cm}")
    return L


def _fp_baselines_section(runs: pd.DataFrame | None, fp_seed: int) -> list[str]:
    """Whether each FP model reached a plateau and whether a weight-only cell beats it."""
    L: list[str] = []
    checks = fp_checks(runs, fp_seed) if runs is not None and len(runs) else None
    if checks is not None and len(checks):
        L += [r"\subsection*{Are the FP baselines fair?}",
              esc(f"A FP model is at a plateau when its last epoch gained less than {PLATEAU_GAIN} points "
                  "(per-epoch test images); a weight-only quantized cell should not beat it beyond its "
                  "interval (that would mean an undertrained baseline).")]
        L += _longtable(["Model", "FP top-1", "Epochs", "Last-epoch gain", "Plateau", "Beaten beyond interval by"],
                        [[r["model"], _num(r["fp_top1"], "{:.2f}"), str(r["epochs"]),
                          _num(r["last_epoch_gain"]), "yes" if r["plateau"] else "no", r["beaten_by"]]
                         for _, r in checks.iterrows()],
                        r"lrrrl>{\raggedright\arraybackslash}p{6.5cm}")
    return L


def _claims_detail_section(claims: pd.DataFrame) -> list[str]:
    """Every comparison of every claim, one row each."""
    L = [r"\section{The claims in detail}",
         esc("One row per comparison. Paper: the effect in the paper's tables (blank where it prints no "
             "number; 'cited' where it is the paper's number minus one cited from another recipe, context "
             "only). Margin: the smallest effect of interest of the model at this scale. Verdict: per "
             "comparison (95 %) / within the claim (Bonferroni). Decides at: for an inconclusive "
             "comparison, the seeds (and test images) for 80 % power to decide, if the true effect is the "
             "paper's and if it is zero.")]
    rows = []
    for _, r in claims.iterrows():
        test = r["test"] + (f" ({float(r['margin']):.2f})" if not pd.isna(r["margin"]) else "")
        paper = _num(r["paper_effect"]) + (" cited" if r.get("paper_effect_role") == "cited" else "")
        verdicts = r["verdict"] + (f" / {r['fw_verdict']}" if r["fw_verdict"] and r["fw_verdict"] != r["verdict"] else "")
        answers = "; ".join(x for x in (r["direction"], r["size"]) if x) or "-"
        rows.append([r["comparison"], test, paper, _interval(r), answers, verdicts, _seed_sets(r["seeds"]),
                     "; ".join(x for x in (r["control"], r["decides_at"] or r["note"]) if x) or "-"])
    L += [r"{\footnotesize\setlength{\tabcolsep}{3pt}"] + _longtable(
        ["Comparison", "Test (margin)", "Paper", "Ours [95 % CI]", "Direction; size", "Verdict", "Seeds",
         "Control; decides at / note"], rows,
        r">{\raggedright}p{3.4cm}>{\raggedright}p{1.6cm}p{0.8cm}>{\raggedright}p{2.2cm}"
        r">{\raggedright}p{2.2cm}>{\raggedright}p{1.5cm}>{\raggedright}p{0.8cm}>{\raggedright\arraybackslash}p{3.6cm}") + ["}"]
    return L


def claims_section(claims: pd.DataFrame, plan: dict, runs: pd.DataFrame | None = None) -> list[str]:
    """Page 1: the verdict on each claim (stated claims apart from those read off tables), how
    its comparisons fell, the multiplicity, the positive controls; then every comparison."""
    summary = summarize(claims)
    counts = summary["verdict"].value_counts()
    images = sorted({int(x) for x in claims["test_images"].dropna()})
    judged = claims[claims["verdict"].isin(INTERVAL_VERDICTS)]
    n_claims_judged = judged["claim"].nunique()
    stated = summary[summary["basis"] == "stated"]
    table = summary[summary["basis"] == "table"]
    L = [r"\section{Verdicts}",
         esc(f"{len(summary)} claims of the paper ({len(stated)} stated in its text, {len(table)} read off its "
             "tables only): " + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS if counts.get(v, 0))
             + "."),
         r"\par\smallskip",
         esc("Each comparison answers two questions from its 95 % interval (seeds and test images both "
             "counted; docs/statistics.md): direction (an effect of the paper's sign, of the other sign, "
             "none of interest, or undetermined) and size (the paper's own effect inside the interval or "
             "excluded). Verdicts: reproduced (right sign, the paper's size not excluded), smaller (right sign, "
             "the paper's size excluded), absent (the interval lies inside +-d, the smallest effect of "
             "interest), reversed (the other sign, or beyond the margin), inconclusive; recipe failed (a cell "
             "kept less than the stated fraction of its FP model's accuracy above chance in some seed); not "
             "testable at this scale (the claim's positive control is not visible); not testable here (the "
             "method compared is not run here); not run."),
         r"\par\smallskip",
         esc(f"Multiplicity: {len(judged)} comparisons in {n_claims_judged} claims reached an interval verdict. "
             "Per comparison the interval is a 95 % interval (about 1 in 20 comparisons without an effect "
             "can show one); a claim's verdict uses Bonferroni intervals within the claim (level 1 - 0.05/m "
             "for its m comparisons that reached a verdict), so each claim's verdict holds family-wise at 5 %. "
             "There is no correction across claims.")
         + r"\par\smallskip",
         esc(f"Seeds {plan.get('seeds')}"
             + "".join(f", {c}: {v}" for c, v in (plan.get("config", {}).get("cell_seeds") or {}).items())
             + f"; test images per run: {', '.join(map(str, images)) or 'n/a'}; quantized cells fine-tune one "
             f"FP model per architecture (seed {plan.get('fp_seeds', [0])[0]}), the fixed reference of the "
             "comparisons with FP."),
         r"\subsection*{Claims stated in the paper's text}"]
    L += _claims_table(stated)
    L += [r"\subsection*{Claims read off the paper's tables only}"]
    L += _claims_table(table)
    fp_seed = plan.get("fp_seeds", [0])[0]
    L += _positive_controls_section(runs, fp_seed)
    L += _fp_baselines_section(runs, fp_seed)
    L += evaluation_mismatch_section(runs)
    L += method_sanity_section(runs, plan)
    L += [r"\subsection*{The claims and the sentences they test}", r"\begin{itemize}"]
    L += [rf"\item \textbf{{{esc(s['claim'].replace('_', ' '))}}} ({esc(s['source'])}; "
          rf"{'stated' if s['basis'] == 'stated' else 'read off the tables'}): {esc(s['statement'])} "
          rf"\emph{{``{esc(s['quote'])}''}} [{esc(s['quote_id'])}]"
          for _, s in summary.iterrows()]
    L += [r"\end{itemize}", r"\clearpage"]
    L += _claims_detail_section(claims)
    return L


def evaluation_mismatch_section(runs: pd.DataFrame | None) -> list[str]:
    """The runs whose deployed (hard) network is far below the trained (soft) one: their hard
    numbers measure the evaluation, not the method (docs/training.md)."""
    if runs is None or "evaluation_mismatch" not in runs:
        return []
    flagged = runs[runs["evaluation_mismatch"].fillna(False).astype(bool)]
    head = [r"\subsection*{Evaluation mismatch}"]
    if flagged.empty:
        return head + [esc("No run's hard top-1 is more than 5 points below its soft top-1.")]
    return head + [esc(f"{len(flagged)} run(s) end with hard top-1 more than 5 points below soft top-1; "
                       "their hard numbers are in the tables but measure the evaluation, not the method.")] \
        + _longtable(["Cell", "Seed", "Hard top-1", "Soft top-1"],
                     [[esc(r["cell"]), str(r["seed"]), _num(r["hard_top1"], "{:.2f}"), _num(r["soft_top1"], "{:.2f}")]
                      for _, r in flagged.iterrows()], "lrrr")


def method_sanity_section(runs: pd.DataFrame | None, plan: dict, read_export="exported") -> list[str]:
    """Did each rerun baseline train at all (qbench.report.sanity)? A flagged cell is a harness
    finding, not a win of the paper's method. ``read_export``: how to read a run's exported
    weights (default: its model_hard.pt; None: do not read them)."""
    from qbench.report.sanity import load_export, sanity_grid, sanity_rows

    num_classes = ((plan.get("config") or {}).get("train") or {}).get("model", {}).get("num_classes")
    if runs is None or not len(runs) or not num_classes or "run_dir" not in runs:
        return []
    rows = sanity_rows(runs.to_dict("records"), int(num_classes),
                       read_export=load_export if read_export == "exported" else read_export)
    if not rows:
        return []
    grid = sanity_grid(rows)
    return [r"\subsection*{Method sanity: did each baseline train?}",
            esc("Per rerun baseline cell: top-1 of each seed, the share of nonzero weights and the levels "
                "its exported weights use, whether a seed collapsed (within a quarter of the way from "
                "chance to the FP model) and the training loss of the first and last epoch, which names "
                "the cause where it is the start values or a schedule too short. A flagged cell is a "
                "finding about the harness, not a win of the paper's method.")] + [r"{\footnotesize\setlength{\tabcolsep}{3pt}"] + _longtable(
        grid[0], grid[1:],
        r">{\raggedright}p{2.6cm}ll>{\raggedright}p{2cm}rrrrrr>{\raggedright\arraybackslash}p{3cm}") + ["}"]


def _deviation_items(devs: list) -> list[str]:
    """The scale's deviations as generated by qbench.paper.recipe (plan.json): one item per
    reason, with the config values that differ from the paper's below it."""
    if not devs:
        return [esc("None: every cell runs the paper's recipe.")]
    out = [r"\begin{itemize}"]
    for d in devs:
        out.append(rf"\item \textbf{{{esc(d['id'])}}}: {esc(d['text'])}")
        if d.get("differences"):
            out += [r"\begin{itemize}"] + [rf"\item {esc(x)}" for x in d["differences"]] + [r"\end{itemize}"]
    return out + [r"\end{itemize}"]


def build_tex(plan: dict, cells: pd.DataFrame, runs: pd.DataFrame, tables_dir: Path,
              figure_names: list[str], bench_dir: Path, claims: pd.DataFrame | None = None) -> str:
    """The report's LaTeX source. Figures are referenced as ``<name>.pdf`` in the build dir.

    Args:
        plan: plan.json of the scale.
        cells: cells.csv.
        runs: runs.csv.
        tables_dir: directory with table{1..8}.tex.
        figure_names: figure base names available.
        bench_dir: snakemake benchmark directory.
        claims: claims.csv (qbench.report.claims).
    """
    scale = plan["scale"]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [r"\documentclass[10pt]{article}", r"\usepackage[utf8]{inputenc}", r"\usepackage[T1]{fontenc}",
         r"\usepackage{textcomp}", r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs}",
         r"\usepackage{longtable}", r"\usepackage{graphicx}", r"\usepackage{array}",
         r"\usepackage{float}", r"\usepackage{pdflscape}", r"\setlength{\LTcapwidth}{\textwidth}",
         rf"\title{{qbench: reproducing \emph{{Quantization Networks}} (Yang et al., CVPR 2019)\\"
         rf"\large scale: {esc(scale)}}}", rf"\date{{{esc(now)}}}", r"\author{qbench pipeline}",
         r"\begin{document}", r"\maketitle"]
    if claims is not None:
        L += claims_section(claims, plan, runs)
    n_runs = len(runs)
    n_cells = len(cells)
    planned = plan.get("cells", [])
    L += [r"\section{Scale}", esc(plan.get("description", "")) + r"\par",
          esc(f"Cells run: {n_cells} of the {len(planned)} planned at this scale ({n_runs} runs; "
              f"seeds {plan.get('seeds')}, full-precision seeds {plan.get('fp_seeds')}). "
              f"Detection (Table 4): {'enabled' if plan.get('detection_enabled') else 'disabled'}."),
          r"\subsection*{Deviations from the paper}"]
    L += _deviation_items(plan.get("deviations") or [])

    summaries = ", ".join(f"Table {t.label} ({t.title.split(':')[0]}, after "
                          f"{t.after.replace('table', 'Table ')})" for t in summary_tables())
    intro = [r"\section{Tables}",
          esc("Each table keeps the paper's layout. Other methods' rows are shown as cited; for the "
              "paper's own rows, 'paper' is the published number, 'reproduced' the mean ± the half-width "
              "of its 95 % interval (seeds and test images, the estimator of the claims; "
              "docs/statistics.md) of this run (hard quantization, Eq. 12), Δ their difference; one seed "
              "prints the mean with (n=1). A cited row whose method this scale reruns under the same "
              "recipe prints 'cited', 'rerun here' (mean ± half-width, as reproduced) and Δ. 'not run' "
              "marks a cell without results at this scale."
              + (f" Not in the paper: {summaries}." if summaries else ""))]
    L += intro
    for key in table_names():
        path = tables_dir / f"{key}.tex"
        L.append(_table_page(path.read_text(encoding="utf-8")) if path.is_file()
                 else esc(f"{key}: missing"))

    L += [r"\section{Figures}"]
    for name in figure_names:
        number = FIGURE_NUMBERS.get(name)
        if number:  # print the paper's figure numbers
            L.append(rf"\setcounter{{figure}}{{{number - 1}}}")
        L += [r"\begin{figure}[H]", r"\centering",
              rf"\includegraphics[width=0.9\textwidth,height=0.4\textheight,keepaspectratio]{{{name}.pdf}}",
              rf"\caption{{{FIGURE_CAPTIONS.get(name, esc(name))}}}", r"\end{figure}"]

    L += [r"\section{Environment and time per stage}"]
    L += _longtable(["Item", "Value"], [[k, v] for k, v in environment()], r"lp{12cm}")
    times = stage_times(bench_dir)
    trows = [[r["stage"], str(int(r["jobs"])), f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}",
              f"{r['max_rss_mb']:.0f}"] for _, r in times.iterrows()]
    if trows:
        trows.append(["total", str(int(times["jobs"].sum())), f"{times['wall_s'].sum():.1f}",
                      f"{times['cpu_s'].sum():.1f}", ""])
    L += [esc("From snakemake benchmark files (the report stage itself is not included: it is "
              "being written). Wall time sums over jobs, which may have run in parallel.")]
    L += _longtable(["Stage", "Jobs", "Wall s", "CPU s", "Max RSS MB"], trows or [["-", "-", "-", "-", "-"]],
                    "lrrrr")
    L += [r"\end{document}"]
    return "\n".join(L) + "\n"


# the encodings the report's preamble loads (T1 fontenc, TS1 by textcomp, LaTeX's default OT1
# and OMS): pdflatex's utf8 input knows exactly the characters their .dfu files declare
_DFU_FILES = ("t1enc.dfu", "ts1enc.dfu", "ot1enc.dfu", "omsenc.dfu")
_log = logging.getLogger("qbench.report")


@lru_cache(maxsize=None)
def _pdflatex_characters() -> frozenset[str]:
    """The non-ASCII characters pdflatex can typeset with the report's preamble, read from the
    installed TeX's encoding definitions (empty when kpsewhich is absent)."""
    exe = shutil.which("kpsewhich")
    if exe is None:
        return frozenset()
    out = subprocess.run([exe, *_DFU_FILES], capture_output=True, text=True).stdout.split()
    chars = set()
    for path in out:
        text = Path(path).read_text(encoding="latin-1")
        chars.update(chr(int(h, 16)) for h in re.findall(r"\\DeclareUnicodeCharacter\{([0-9A-Fa-f]+)\}", text))
    return frozenset(chars)


def pdflatex_safe(tex: str) -> tuple[str, list[str]]:
    """``tex`` with every character pdflatex cannot typeset transliterated: its compatibility
    decomposition when that is typesettable (ligatures, full-width letters, accents it lacks),
    nothing for invisible format characters (zero-width space), else ``[U+XXXX]``. A scale
    description or a deviation in any script then still gives a report; the caller warns.

    Args:
        tex: the LaTeX source.

    Returns:
        The source, and the characters replaced (each once, in order of appearance).
    """
    known = _pdflatex_characters()

    def typesettable(c: str) -> bool:
        return c in "\n\t" or " " <= c <= "~" or c in known

    out, replaced = [], []
    for c in tex:
        if typesettable(c):
            out.append(c)
            continue
        if c not in replaced:
            replaced.append(c)
        if unicodedata.category(c) == "Cf":
            continue
        decomposed = "".join(d for d in unicodedata.normalize("NFKD", c) if unicodedata.category(d) != "Mn")
        out.append(decomposed if decomposed and all(map(typesettable, decomposed))
                   else f"[U+{ord(c):04X}]")
    return "".join(out), replaced


def compile_pdf(tex: str, figures: dict[str, Path], pdf_out: Path) -> None:
    """Run pdflatex in a temporary directory and move the PDF into place atomically.

    Shell escape is off explicitly (``-no-shell-escape``): whatever the site's texmf.cnf says,
    text from configs never reaches ``\\write18``. Characters pdflatex cannot typeset are
    transliterated (``pdflatex_safe``) with a warning naming them.

    Args:
        tex: LaTeX source.
        figures: figure name -> PDF path, copied beside the source.
        pdf_out: destination PDF.
    """
    exe = shutil.which("pdflatex")
    if exe is None:
        raise RuntimeError("pdflatex not found; install texlive-latex-base and texlive-latex-recommended")
    tex, replaced = pdflatex_safe(tex)
    if replaced:
        _log.warning("report: %d character(s) pdflatex cannot typeset were transliterated: %s",
                     len(replaced), " ".join(f"U+{ord(c):04X}" for c in replaced))
    with tempfile.TemporaryDirectory(prefix="qbench-report-") as tmp:
        tmp = Path(tmp)
        for name, path in figures.items():
            shutil.copyfile(path, tmp / f"{name}.pdf")
        (tmp / "report.tex").write_text(tex, encoding="utf-8")
        for _ in range(2):  # second pass settles longtable widths
            proc = subprocess.run([exe, "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error",
                                   "report.tex"], cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-4000:])
                raise RuntimeError(f"pdflatex failed (exit {proc.returncode}); see the log above")
        write_bytes(pdf_out, (tmp / "report.pdf").read_bytes())


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--cells", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--claims", help="claims.csv (qbench.report.claims)")
    ap.add_argument("--tables-dir", required=True)
    ap.add_argument("--figures-dir", required=True)
    ap.add_argument("--benchmarks-dir", required=True)
    ap.add_argument("--tex", required=True)
    ap.add_argument("--pdf", required=True)
    args = ap.parse_args(argv)
    plan = read_json(args.plan)
    figs = {n: Path(args.figures_dir) / f"{n}.pdf" for n in figure_names()
            if (Path(args.figures_dir) / f"{n}.pdf").is_file()}
    tex = build_tex(plan, read_cells(args.cells), read_cells(args.runs), Path(args.tables_dir),
                    list(figs), Path(args.benchmarks_dir),
                    read_claims(args.claims) if args.claims else None)
    write_text(args.tex, tex)
    compile_pdf(tex, figs, Path(args.pdf))
    print(args.pdf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
