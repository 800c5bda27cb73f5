"""Figures of the paper from this scale's runs (matplotlib, Agg; PDF and PNG).

``python -m qbench.report.figures --plan plan.json --runs runs.csv --cells cells.csv --outdir DIR``

- Fig. 2: the soft quantization function (Eq. 7, ``qbench.quant.soft_quantize``) at several T.
- Fig. 3: weight histograms of full-precision layers, read from the FP checkpoint.
- Fig. 4: soft vs hard test accuracy over training (``history`` of the fig4 cells).
- Fig. 5: training curves for temperature slopes 5 / 10 / 20 (fig5 cells).
- Summary: paper vs reproduced accuracy of every reproduced table cell.
A panel without runs at this scale says so instead of plotting anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from qbench import run_files
from qbench.paper import cells_for_figure, figure_names  # noqa: E402
from qbench.io import FileFormatError, load_state_dict  # noqa: E402
from qbench.io import read_json, save_figure  # noqa: E402
from qbench.report.tables import build, read_cells  # noqa: E402


def _not_run(ax, text: str = "not run at this scale") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


FIG2_TEMPERATURES = (1, 11, 121)  # the paper's Fig. 2


def fig2_quant_function():
    """Eq. 7 for the 3(±2) set at the paper's Fig. 2 temperatures, with the ideal Eq. 12 steps."""
    from qbench.quant import LevelSet, hard_quantize, soft_quantize

    levels = LevelSet.from_name("3bit_pm2")
    biases = torch.tensor([-1.5, -0.5, 0.5, 1.5], dtype=torch.float64)
    x = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for T in FIG2_TEMPERATURES:
        y = soft_quantize(x, levels, biases, 1.0, 1.0, T)
        ax.plot(x.numpy(), y.numpy(), label=f"soft, T={T}")
    ax.plot(x.numpy(), hard_quantize(x, levels, biases, 1.0, 1.0).numpy(), "k--", lw=1, label="hard (Eq. 12)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Quantization function, Y = {-2,-1,0,1,2}, alpha = beta = 1")
    ax.legend(fontsize=8)
    return fig


def _state_dict(path: str) -> dict:
    # data only: a checkpoint that needs more than tensors and plain containers is refused
    return load_state_dict(path, "FP checkpoint of Fig. 3")


def _pick_layers(sd: dict, n: int = 3) -> list[str]:
    """ResNet: first conv of blocks 2-4 (as in the paper); otherwise conv layers after the first."""
    wanted = [k for k in (f"layer{i}.0.conv1.weight" for i in (2, 3, 4)) if k in sd]
    if wanted:
        return wanted
    convs = [k for k, v in sd.items() if k.endswith("weight") and v.ndim == 4]
    rest = convs[1:] or convs
    if len(rest) <= n:
        return rest
    step = (len(rest) - 1) / (n - 1)
    return [rest[round(i * step)] for i in range(n)]


def fig3_weight_hist(runs: pd.DataFrame):
    """Histograms of FP weights of the paper's Fig. 3 network (ResNet-18; the cells tagged fig3)."""
    fp_ids = [c.id for c in cells_for_figure("fig3")]
    fp_runs = runs[runs["cell"].isin(fp_ids)] if len(runs) else runs
    models = list(dict.fromkeys(fp_runs["cell"])) if len(fp_runs) else []
    if not models:
        fig, ax = plt.subplots(figsize=(6, 3))
        _not_run(ax, "no full-precision run at this scale")
        return fig
    fig, axes = plt.subplots(len(models), 3, figsize=(10, 2.8 * len(models)), squeeze=False)
    for r, cid in enumerate(models):
        run = fp_runs[fp_runs["cell"] == cid].sort_values("seed").iloc[0]
        sd = _state_dict(str(Path(run["run_dir"]) / run_files.CHECKPOINT))
        names = _pick_layers(sd)
        for c in range(3):
            ax = axes[r][c]
            if c >= len(names):
                _not_run(ax, "no such layer")
                continue
            w = sd[names[c]].flatten().float().numpy()
            ax.hist(w, bins=80, color="C0")
            ax.set_title(f"{cid}: {names[c]}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _histories(runs: pd.DataFrame, cell_ids: list[str]) -> dict[str, list[pd.DataFrame]]:
    out = {}
    for cid in cell_ids:
        sel = runs[runs["cell"] == cid] if len(runs) else runs
        frames = []
        for _, run in sel.iterrows():
            hist = pd.DataFrame(read_json(Path(run["run_dir"]) / run_files.METRICS).get("history", []))
            if len(hist):
                frames.append(hist)
        if frames:
            out[cid] = frames
    return out


def _mean_curve(frames: list[pd.DataFrame], col: str) -> pd.Series | None:
    cols = [f.set_index("epoch")[col] for f in frames if col in f]
    if not cols:
        return None
    return pd.concat(cols, axis=1).mean(axis=1)


def fig4_soft_hard_gap(runs: pd.DataFrame, fp_seed: int = 0):
    """Soft vs hard test accuracy per epoch: top-1 with 95 % intervals (seeds and test images,
    qbench.stats), top-5 as the mean over seeds."""
    from qbench.report.results import Results, curve_intervals

    hists = _histories(runs, [c.id for c in cells_for_figure("fig4")])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if not hists:
        for ax in axes:
            _not_run(ax)
        return fig
    results = Results(runs, fp_seed)
    for ax, k in zip(axes, ("top1", "top5")):
        for i, (cid, frames) in enumerate(hists.items()):
            for mode, style in (("hard", "-o"), ("soft", "--s")):
                label = f"{cid} {mode} ({'test' if mode == 'hard' else 'train fn'})"
                ivs = curve_intervals(results, cid, mode) if k == "top1" else []
                if ivs:
                    x = [e for e, _ in ivs]
                    ax.plot(x, [iv.effect for _, iv in ivs], style, color=f"C{i}", ms=3, label=label)
                    ax.fill_between(x, [iv.low for _, iv in ivs], [iv.high for _, iv in ivs],
                                    color=f"C{i}", alpha=0.15 if mode == "hard" else 0.08, lw=0)
                    continue
                curve = _mean_curve(frames, f"{mode}_{k}")
                if curve is not None:
                    ax.plot(curve.index, curve.values, style, color=f"C{i}", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{k} accuracy (%)")
        ax.set_title(f"({'a' if k == 'top1' else 'b'}) {k.capitalize()}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig5_temperature(runs: pd.DataFrame):
    """Training loss and train / test accuracy for each temperature slope (one panel each)."""
    cells = sorted(cells_for_figure("fig5"), key=lambda c: c.slope)
    hists = _histories(runs, [c.id for c in cells])
    fig, axes = plt.subplots(2, len(cells), figsize=(3.4 * len(cells), 5.5), squeeze=False)
    for j, cell in enumerate(cells):
        top, bottom = axes[0][j], axes[1][j]
        if cell.id not in hists:
            _not_run(top, f"T = {cell.slope:g} x epoch:\nnot run at this scale")
            _not_run(bottom, "")
            continue
        frames = hists[cell.id]
        loss = _mean_curve(frames, "train_loss")
        if loss is not None:
            top.plot(loss.index, loss.values, "-o", ms=3, color="C3")
        top.set_title(f"T = {cell.slope:g} x epoch", fontsize=9)
        top.set_ylabel("training loss")
        for col, label, style in (("train_top1", "train top-1", "-o"), ("hard_top1", "test top-1 (hard)", "-s")):
            curve = _mean_curve(frames, col)
            if curve is not None:
                bottom.plot(curve.index, curve.values, style, ms=3, label=label)
        bottom.set_xlabel("epoch")
        for ax in (top, bottom):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.set_ylabel("accuracy (%)")
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return fig


def summary_paper_vs_repro(plan: dict, cells: pd.DataFrame, runs: pd.DataFrame | None = None):
    """Reproduced mean with its 95 % interval (qbench.stats: test images and seeds; seeds only for
    mAP) against the paper's number, for every reproduced top-1 / mAP cell."""
    from qbench.report.results import Results, cell_interval

    results = Results(runs if runs is not None else pd.DataFrame(), plan.get("fp_seeds", [0])[0])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    points = 0
    for i, (key, (_, entries, _)) in enumerate(build(plan, cells, runs).items()):
        es = [e for e in entries if e.status == "reproduced" and e.metric in ("top1", "map")]
        if not es:
            continue
        ivs = [cell_interval(results, e.cell) if runs is not None and len(runs) else None for e in es]
        lower = [e.mean - iv.low if iv is not None else 0 for e, iv in zip(es, ivs)]
        upper = [iv.high - e.mean if iv is not None else 0 for e, iv in zip(es, ivs)]
        ax.errorbar([e.paper for e in es], [e.mean for e in es], yerr=[lower, upper],
                    fmt="o", ms=4, color=f"C{i}", label=key, capsize=2)
        points += len(es)
    if not points:
        _not_run(ax, "no reproduced cell at this scale")
        return fig
    lo, hi = 0, 100
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="reproduced = paper")
    ax.set_xlabel("paper (ImageNet / VOC), %")
    ax.set_ylabel(f"reproduced ({plan['scale']} scale), %")
    ax.set_title("Top-1 / mAP: paper vs this run (95 % intervals)")
    ax.legend(fontsize=7)
    return fig


def read_runs(path: str | Path) -> pd.DataFrame:
    """Read runs.csv (empty file -> empty frame).

    Args:
        path: the file.
    """
    return read_cells(path)


# figure name (qbench/paper/tables.yaml, figures:) -> its maker(plan, runs, cells)
FIGURE_MAKERS = {
    "fig2_quant_function": lambda plan, runs, cells: fig2_quant_function(),
    "fig3_weight_hist": lambda plan, runs, cells: fig3_weight_hist(runs),
    "fig4_soft_hard_gap": lambda plan, runs, cells: fig4_soft_hard_gap(runs, plan.get("fp_seeds", [0])[0]),
    "fig5_temperature": lambda plan, runs, cells: fig5_temperature(runs),
    "summary_paper_vs_repro": lambda plan, runs, cells: summary_paper_vs_repro(plan, cells, runs),
}


def write_all(plan: dict, runs: pd.DataFrame, cells: pd.DataFrame, outdir: str | Path) -> list[Path]:
    """Draw and save every figure as PDF and PNG.

    Args:
        plan: plan.json of the scale.
        runs: runs.csv.
        cells: cells.csv.
        outdir: destination directory.
    """
    outdir = Path(outdir)
    written = []
    for name in figure_names():
        if name not in FIGURE_MAKERS:
            raise KeyError(f"tables.yaml: figures: {name!r} has no maker in qbench.report.figures")
        fig = FIGURE_MAKERS[name](plan, runs, cells)
        for ext in ("pdf", "png"):
            path = outdir / f"{name}.{ext}"
            save_figure(fig, path, dpi=120, bbox_inches="tight")
            written.append(path)
        plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--cells", required=True)
    ap.add_argument("--outdir", required=True)
    args = ap.parse_args(argv)
    try:
        plan = read_json(args.plan)
        for p in write_all(plan, read_runs(args.runs), read_cells(args.cells), args.outdir):
            print(p)
    except FileFormatError as e:
        print(f"figures: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
