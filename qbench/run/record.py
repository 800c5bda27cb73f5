"""The metrics record (``metrics.json``) every run writes, whatever its task."""

from __future__ import annotations

import resource
from typing import Any

import torch

from qbench.quant import model_size_bits


def peak_memory_mb(device: str | torch.device) -> float:
    """Peak memory of the run: allocated GPU memory on CUDA, the process's peak RSS on the CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def metrics_record(task: str, final: dict, history: list[dict], wall_time_s: float, images_per_s: float,
                   device: str | torch.device, model, method, report, **extra: Any) -> dict:
    """The fields of ``metrics.json`` every task has (docs/CONTRACTS.md), then the task's own.

    Args:
        task: "classify" or "detect".
        final: the final evaluation.
        history: one row per evaluated epoch.
        wall_time_s: the run's training wall time.
        images_per_s: training throughput.
        device: the run's device (for its peak memory).
        model: the trained model, in the method's evaluation mode.
        method: its ``QuantMethod``, or None for a full-precision model.
        report: the ``QuantReport`` of quantizing it, or None.
        extra: the task's own fields.
    """
    bits = model_size_bits(model, method)
    return {
        "task": task, "status": "complete", "final": final, "history": history,
        "wall_time_s": wall_time_s, "images_per_s": images_per_s, "peak_memory_mb": peak_memory_mb(device),
        "quant_report": {"weight_layers": list(report.weight_layers) if report else [],
                         "activation_layers": list(report.activation_layers) if report else []},
        "model_bits": {"fp_bits": bits["fp_bits"], "quantized_bits": bits["quantized_bits"], "ratio": bits["ratio"]},
        **extra,
    }
