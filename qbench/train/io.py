"""Run-directory files: the writers are the project's one atomic writer (``qbench.io``)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from qbench.io import load_torch, save_arrays, save_torch, with_start_history, write_json, write_text, write_yaml  # noqa: F401


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checkout's HEAD commit, or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device, seed: int, world_size: int) -> dict:
    """What env.json records: versions, commit, device, seed, threads.

    Args:
        device: the training device.
        seed: the run's seed.
        world_size: number of processes.
    """
    import numpy
    import torchvision

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "world_size": world_size,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    return info


def run_environment(path: Path, device: torch.device, seed: int, world_size: int, data_files: list[dict],
                    resumed: bool) -> dict:
    """env.json of this start of a run, keeping the earlier starts (``qbench.io.with_start_history``).

    Args:
        path: the run's env.json (read when it exists).
        device: the training device.
        seed: the run's seed.
        world_size: number of processes.
        data_files: provenance of the data files read (``qbench.io.file_record``).
        resumed: whether this start continues from a checkpoint.
    """
    now = environment(device, seed, world_size)
    now["data_files"] = data_files
    return with_start_history(path, now, resumed)
