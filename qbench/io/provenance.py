"""What a run records about where it ran and what it read: env.json (versions, machine, every
start of the run) and the data files it started on."""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


from qbench import run_files

from .atomic import write_json
from .errors import FileFormatError, RunDirError
from .reading import read_json


def file_record(path: str | os.PathLike) -> dict:
    """Provenance of one input file: absolute path, size and SHA-256.

    Args:
        path: the file.
    """
    path = Path(path).resolve()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"path": str(path), "size": path.stat().st_size, "sha256": h.hexdigest()}


# -- run directories ----------------------------------------------------------------------------

def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The checkout's HEAD commit, or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: Any, seed: int, world_size: int, packages: tuple[str, ...] = ("torchvision", "numpy")) -> dict:
    """What env.json records about one start of a run: versions, commit, machine, device, seed.

    Args:
        device: the training device (``torch.device`` or its name).
        seed: the run's seed.
        world_size: number of processes.
        packages: libraries besides torch whose versions matter to the run (detection adds
            mmcv, mmengine, mmdet).
    """
    import torch

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: _version(name) for name in packages},
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_cuda else platform.processor() or "cpu",
        "cuda": torch.version.cuda if on_cuda else None,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "world_size": world_size,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


def run_environment(path: str | os.PathLike, device: Any, seed: int, world_size: int, resumed: bool,
                    data_files: list[dict] | None = None,
                    packages: tuple[str, ...] = ("torchvision", "numpy")) -> dict:
    """env.json of this start of a run, keeping the earlier starts (``with_start_history``).

    Args:
        path: the run's env.json (read when it exists).
        device: the training device.
        seed: the run's seed.
        world_size: number of processes.
        resumed: whether this start continues from a checkpoint.
        data_files: provenance of the data files read (``file_record``), when known.
        packages: as for ``environment``.
    """
    now = environment(device, seed, world_size, packages)
    if data_files is not None:
        now["data_files"] = data_files
    return with_start_history(path, now, resumed)


ALLOW_DATA_CHANGE_ENV = "QBENCH_ALLOW_DATA_CHANGE"


def check_data_files(out: str | os.PathLike, files: list[dict] | None, resumed: bool) -> None:
    """Keep a run's data provenance with its checkpoint: a fresh start records the data files
    (``file_record``) in ``<out>/data_files.json``; a resume compares the files it reads now, by
    name and SHA-256, and refuses when one differs (a checkpoint trained on other data would
    finish as a run of this data) unless ``$QBENCH_ALLOW_DATA_CHANGE`` is 1 (``qbench train
    --allow-data-change``), which records the new files.

    Args:
        out: the run directory (held under ``RunDirLock``).
        files: the data files this start reads (None or empty: nothing to compare).
        resumed: whether this start continues from a checkpoint.

    Raises:
        RunDirError: the data changed since the run started.
    """
    path = Path(out) / run_files.DATA_FILES
    files = list(files or [])
    if resumed and path.is_file():
        try:
            before = read_json(path)
        except FileFormatError as e:
            raise RunDirError(f"{e}; restore it or delete checkpoint.pt to restart the run") from None
        old = {Path(r["path"]).name: r for r in before if isinstance(r, dict) and "path" in r}
        new = {Path(r["path"]).name: r for r in files}
        for name in sorted(set(old) | set(new)):
            a, b = old.get(name), new.get(name)
            if a is not None and b is not None and a.get("sha256") == b.get("sha256"):
                continue
            if os.environ.get(ALLOW_DATA_CHANGE_ENV) == "1":
                logging.getLogger(__name__).warning("%s: data changed since the run started "
                                                    "(resuming as asked)", (b or a)["path"])
                break
            what = (f"{b['path']}: not read when the run started" if a is None else
                    f"{a['path']}: read when the run started, not now" if b is None else
                    f"{b['path']}: changed since the run started (sha256 {a.get('sha256', '?')[:12]} "
                    f"then, {b.get('sha256', '?')[:12]} now)")
            raise RunDirError(f"{what}; the checkpoint in {out} was trained on the other data: "
                              "restore the data, use a new --out, or resume anyway with "
                              "--allow-data-change")
        else:
            return
    write_json(path, files)


def with_start_history(path: str | os.PathLike, env: dict, resumed: bool) -> dict:
    """env.json for this start of a run, keeping the earlier starts of the same run.

    The top level describes the latest start (as a single-start env.json does); ``starts`` lists
    every start, oldest first, so a run resumed on another machine says which machines made it.

    Args:
        path: the run's env.json (read when resuming and it exists).
        env: what this start records (versions, machine, ...).
        resumed: whether this start continues from a checkpoint (otherwise history restarts).
    """
    path = Path(path)
    now = {**env, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": resumed}
    starts: list = []
    if resumed and path.is_file():
        try:
            old = read_json(path)
        except FileFormatError as e:
            old = {"unreadable_env_json": str(e)}
        if isinstance(old, dict):
            starts = list(old.get("starts") or [{k: v for k, v in old.items() if k != "starts"}])
    starts.append(now)  # with this start's data files: a resume may read other copies
    return {**now, "starts": starts}
