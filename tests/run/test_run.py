"""The pieces every run shares (qbench.run): one rule for both tasks."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from qbench.quant import QuantPolicy, quantize_
from qbench.run import hard_and_soft, metrics_record

PACKAGE = Path(__file__).resolve().parents[2] / "qbench"


def _modes(method) -> list:
    seen = []

    def evaluate(mode):
        seen.append(mode)
        return len(seen)

    return [hard_and_soft(method, evaluate), seen]


def test_hard_and_soft_evaluates_each_distinct_mode_once_hard_first():
    assert _modes(None) == [(1, 1), [None]]
    assert _modes(SimpleNamespace(eval_mode=None, train_mode=None)) == [(1, 1), [None]]
    assert _modes(SimpleNamespace(eval_mode="hard", train_mode=None)) == [(1, 1), ["hard"]]
    assert _modes(SimpleNamespace(eval_mode="hard", train_mode="hard")) == [(1, 1), ["hard"]]
    assert _modes(SimpleNamespace(eval_mode="hard", train_mode="soft")) == [(1, 2), ["hard", "soft"]]


def test_the_metrics_record_has_the_shared_fields_of_both_tasks():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    method = quantize_(model, QuantPolicy("ternary"))
    record = metrics_record("detect", {"hard_map": 1.0}, [], 2.0, 3.0, "cpu", model, method, method.report,
                            ap_per_class={})
    assert record["quant_report"]["weight_layers"] == ["2"]
    assert record["model_bits"]["quantized_bits"] < record["model_bits"]["fp_bits"]
    assert record["ap_per_class"] == {} and record["status"] == "complete" and record["peak_memory_mb"] > 0
    fp = metrics_record("classify", {}, [], 0.0, 0.0, torch.device("cpu"), model, None, None)
    assert fp["quant_report"] == {"weight_layers": [], "activation_layers": []}
    assert fp["model_bits"]["ratio"] == 1.0


def test_device_process_group_and_peak_memory_are_decided_only_in_qbench_run():
    # the calls that decide them, anywhere but qbench/run and the device preflight it calls:
    # each task would drift on its own
    calls = re.compile(r"init_process_group\(|destroy_process_group\(|max_memory_allocated\(|ru_maxrss|"
                       r"os\.environ\.get\(\"(?:RANK|WORLD_SIZE|LOCAL_RANK)\"")
    found = [f"{p.relative_to(PACKAGE)}:{n}" for p in sorted(PACKAGE.rglob("*.py")) if p.parent.name != "run" and p.name != "preflight.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if calls.search(line)]
    assert found == []
