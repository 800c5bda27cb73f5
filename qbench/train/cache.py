"""A cache of finished runs, keyed by everything that determines their result.

The key hashes the resolved run config (model, data, recipe, seed), the source of the qbench
package (code version) and the torch version. A run whose key is cached is restored (its files
copied into the run directory, metrics.json last) instead of trained again; a finished run is
stored under its key. The pipeline uses it for the FP models (`fp_cache` in the scale config),
which every quantized cell starts from and which a fresh clone would otherwise retrain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path

from qbench.io import atomic_directory, write_bytes

log = logging.getLogger(__name__)

RUN_FILES = ("config.yaml", "env.json", "checkpoint.pt", "model_hard.pt", "predictions.npz", "train.log",
             "metrics.json")  # metrics.json last: its presence marks a complete copy


@lru_cache(maxsize=None)
def code_version() -> str:
    """sha256 over the qbench package's source files (Python, C++, YAML), in path order."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".cpp", ".yaml") and p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def run_key(resolved: dict) -> str:
    """The cache key of a run: its resolved config, the code version and the torch version."""
    import torch

    text = json.dumps({"config": resolved, "code": code_version(), "torch": torch.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def restore(cache_dir: str | os.PathLike, key: str, out: str | os.PathLike) -> bool:
    """Copy the cached run ``key`` into ``out``; False when it is not cached.

    Args:
        cache_dir: the cache directory.
        key: ``run_key`` of the run.
        out: the run directory.
    """
    src = Path(cache_dir) / key
    if not (src / "metrics.json").is_file():
        return False
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            write_bytes(out / name, (src / name).read_bytes())  # the project's atomic writer
    log.info("restored run %s from %s", key, src)
    return True


def store(cache_dir: str | os.PathLike, key: str, out: str | os.PathLike) -> None:
    """Store the finished run in ``out`` under ``key`` (a complete copy appears at once or not at all).

    Args:
        cache_dir: the cache directory (created).
        key: ``run_key`` of the run.
        out: the finished run directory.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / key
    if (dest / "metrics.json").is_file():
        return
    if dest.exists():  # an incomplete earlier copy
        shutil.rmtree(dest)
    with atomic_directory(dest) as tmp:
        for name in RUN_FILES:
            if (Path(out) / name).is_file():
                shutil.copyfile(Path(out) / name, tmp / name)
    log.info("stored run %s in %s", key, dest)
