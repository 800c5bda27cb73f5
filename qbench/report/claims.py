"""The paper's claims, checked against this scale's results.

Each claim compares reproduced means (hard top-1) of named cells; a claim whose cells did not
run says so. Verdicts: "supported", "not supported", "not run".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

WEIGHT_ORDER = ("binary", "ternary", "3bit_pm2", "3bit_pm4", "5bit")


@dataclass
class Claim:
    """One claim and what this run says about it.

    Args:
        name: short name.
        statement: the paper's claim.
        verdict: supported / not supported / not run.
        evidence: the numbers behind the verdict.
    """

    name: str
    statement: str
    verdict: str = "not run"
    evidence: list[str] = field(default_factory=list)


def _stat(cells: dict, cid: str, key: str = "hard_top1") -> tuple[float, float | None] | None:
    rec = cells.get(cid)
    if rec is None or pd.isna(rec.get(f"{key}_mean")):
        return None
    std = rec.get(f"{key}_std")
    return float(rec[f"{key}_mean"]), (None if pd.isna(std) else float(std))


def _fmt(s: tuple[float, float | None]) -> str:
    return f"{s[0]:.2f}" + (f" ± {s[1]:.2f}" if s[1] is not None else " (1 seed)")


def _pairwise(name: str, statement: str, pairs: list[tuple[str, str]], cells: dict) -> Claim:
    """Claim that the first cell of each pair beats the second (all pairs that ran)."""
    claim = Claim(name, statement)
    wins, total = 0, 0
    for better, worse in pairs:
        a, b = _stat(cells, better), _stat(cells, worse)
        if a is None or b is None:
            claim.evidence.append(f"{better} vs {worse}: not run")
            continue
        total += 1
        wins += a[0] > b[0]
        claim.evidence.append(f"{better} {_fmt(a)} vs {worse} {_fmt(b)} (top-1 %)")
    if total:
        claim.verdict = "supported" if wins == total else "not supported"
        claim.evidence.append(f"{wins} of {total} comparisons in the paper's direction")
    return claim


def _gap_claim(runs: pd.DataFrame) -> Claim:
    """Soft/hard gap at the first vs the last epoch of the quantized runs' histories."""
    claim = Claim("soft/hard gap closes",
                  "As T grows during training, the gap between soft (Eq. 7) and hard (Eq. 12) "
                  "accuracy shrinks (Fig. 4).")
    if runs is None or not len(runs):
        return claim
    first, last = [], []
    for _, run in runs[runs["kind"] == "quant"].iterrows():
        path = Path(run["run_dir"]) / "metrics.json"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            hist = [h for h in json.load(fh).get("history", [])
                    if h.get("soft_top1") is not None and h.get("hard_top1") is not None]
        if len(hist) >= 2:
            first.append(abs(hist[0]["soft_top1"] - hist[0]["hard_top1"]))
            last.append(abs(hist[-1]["soft_top1"] - hist[-1]["hard_top1"]))
    if not first:
        claim.evidence.append("no quantized run with at least two evaluated epochs")
        return claim
    f, l = sum(first) / len(first), sum(last) / len(last)
    closed = sum(b < a for a, b in zip(first, last))
    claim.verdict = "supported" if l < f else "not supported"
    claim.evidence.append(f"mean |soft - hard| top-1 gap: first epoch {f:.2f}, last epoch {l:.2f} "
                          f"points over {len(first)} runs; gap shrank in {closed} of them")
    return claim


def _bits_claim(cells: dict) -> Claim:
    """Per model, weight-only cells ordered by bits: Kendall tau of bits vs top-1."""
    claim = Claim("more bits, higher accuracy",
                  "Accuracy grows with the number of weight bits (1 < 2 < 3(±2) < 3(±4) < 5).")
    taus = []
    for model in ("alexnet_bn", "resnet18", "resnet50"):
        series = []
        for rank, ws in enumerate(WEIGHT_ORDER):
            for cid, rec in cells.items():
                if (rec["model"] == model and rec.get("weights") == ws and pd.isna(rec.get("activations"))
                        and rec["init"] == "kmeans" and rec["sharing"] == "layerwise"
                        and rec["start"] == "pretrained" and rec["kind"] == "quant"):
                    s = _stat(cells, cid)
                    if s is not None:
                        series.append((rank, s[0], ws))
        series = sorted(set(series))
        if len(series) < 2:
            continue
        conc = disc = 0
        for i in range(len(series)):
            for j in range(i + 1, len(series)):
                d = (series[j][1] - series[i][1])
                conc += d > 0
                disc += d < 0
        tau = (conc - disc) / (len(series) * (len(series) - 1) / 2)
        taus.append(tau)
        claim.evidence.append(f"{model}: " + ", ".join(f"{w} {a:.2f}" for _, a, w in series)
                              + f"; Kendall tau = {tau:+.2f}")
    if taus:
        claim.verdict = "supported" if all(t > 0 for t in taus) else "not supported"
    return claim


def check_claims(cells_df: pd.DataFrame, runs_df: pd.DataFrame | None = None) -> list[Claim]:
    """All claims the report checks.

    Args:
        cells_df: aggregated per-cell results (cells.csv).
        runs_df: per-run results (runs.csv), for the training histories.
    """
    cells = {r["cell"]: r for r in cells_df.to_dict("records")} if len(cells_df) else {}
    return [
        _pairwise("non-uniform beats linear",
                  "k-means (non-uniform) initialisation beats linear quantization (Table 5).",
                  [("alexnet_w2a32", "alexnet_w2a32_linear"),
                   ("alexnet_w3pm4a32", "alexnet_w3pm4a32_linear")], cells),
        _pairwise("layer-wise beats shared",
                  "One quantization function per layer beats one shared by all layers (Table 6).",
                  [("alexnet_w2a32", "alexnet_w2a32_shared")], cells),
        _pairwise("pretrained beats scratch",
                  "Fine-tuning from a pre-trained model beats training from scratch (Table 7).",
                  [("resnet18_w3pm4a32", "resnet18_w3pm4a32_scratch")], cells),
        _gap_claim(runs_df),
        _bits_claim(cells),
    ]
