"""Run-directory files, written atomically (temp file in the same directory + os.replace)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import yaml


def _atomic(path: Path, write: Callable[[Any], None], binary: bool) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file.

    Args:
        path: destination.
        text: content.
    """
    _atomic(Path(path), lambda f: f.write(text), binary=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write JSON (indented, keys in insertion order).

    Args:
        path: destination.
        obj: JSON-serialisable object.
    """
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    """Atomically write YAML (block style, keys in insertion order).

    Args:
        path: destination.
        obj: plain data.
    """
    write_text(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=None))


def save_torch(path: str | Path, obj: Any) -> None:
    """Atomically ``torch.save`` plain containers of tensors (loadable with weights_only=True).

    Args:
        path: destination.
        obj: dicts/lists/tensors/numbers/strings only.
    """
    _atomic(Path(path), lambda f: torch.save(obj, f), binary=True)


def save_arrays(path: str | Path, arrays: dict) -> None:
    """Atomically write numpy arrays as an uncompressed ``.npz`` (read with allow_pickle=False).

    Args:
        path: destination.
        arrays: name -> numeric numpy array.
    """
    import numpy as np

    _atomic(Path(path), lambda f: np.savez(f, **arrays), binary=True)


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
