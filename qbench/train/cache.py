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

from qbench import run_files
from qbench.io import (FileFormatError, RunDirLock, adopt_run_dir, atomic_directory, read_yaml, remove_stale_tmp,
                       write_bytes)

log = logging.getLogger(__name__)


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


class CacheError(ValueError):
    """The cache directory or one of its entries cannot be used; the message names it."""


def check_cache_dir(cache_dir: str | os.PathLike) -> Path:
    """The cache directory, refused (CacheError) when the path is something else than a directory.

    Args:
        cache_dir: the ``--cache`` path (created later, when the first run is stored).
    """
    cache = Path(cache_dir)
    if cache.exists() and not cache.is_dir():
        raise CacheError(f"--cache {cache}: exists and is not a directory; give a directory path")
    for parent in cache.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CacheError(f"--cache {cache}: {parent} is a file, not a directory")
            break
    return cache


def _complete(entry: Path) -> bool:
    """An entry is complete once it exists at all: it appears by one rename (``store``)."""
    return (entry / run_files.METRICS).is_file()


def restore(cache_dir: str | os.PathLike, key: str, out: str | os.PathLike, resolved: dict) -> bool:
    """Copy the cached run ``key`` into ``out`` under the run-directory rules; False when it is
    not cached.

    The run directory is locked as a training job locks it (a job writing it makes this fail,
    naming the holder), and a directory holding another config's run is refused as the trainer
    refuses it; a finished run of this config is left as it is. metrics.json is copied last, so
    an interrupted restore never looks finished.

    Args:
        cache_dir: the cache directory.
        key: ``run_key`` of the run.
        out: the run directory.
        resolved: the run's resolved config (``Config.to_dict()``).

    Raises:
        CacheError: the cache path or the entry is not usable.
        RunDirError: ``out`` is held by another job, is not a directory, or holds another run.
    """
    src = check_cache_dir(cache_dir) / key
    if not _complete(src):
        if src.is_dir():
            log.warning("cache entry %s is incomplete (not written by this version's store); "
                        "remove it", src)
        return False
    try:
        cached_config = read_yaml(src / run_files.CONFIG)
    except FileFormatError as e:
        raise CacheError(f"cache entry {src}: {e}; remove the entry") from None
    if cached_config != resolved:
        raise CacheError(f"cache entry {src}: holds a run of another config; remove the entry")
    with RunDirLock(out):
        out = Path(out)
        if adopt_run_dir(out, resolved) is not None:
            log.info("%s already holds this finished run", out)
            return True
        remove_stale_tmp(out)
        for name in run_files.CACHED:  # metrics.json last
            if (src / name).is_file():
                write_bytes(out / name, (src / name).read_bytes())  # the project's atomic writer
    log.info("restored run %s from %s", key, src)
    return True


def store(cache_dir: str | os.PathLike, key: str, out: str | os.PathLike) -> None:
    """Store the finished run in ``out`` under ``key``: the entry is built under a temporary
    name and appears complete in one rename, or not at all. An existing entry is never removed
    or replaced (a reader may be copying it; a concurrent writer's equal copy is kept).

    Args:
        cache_dir: the cache directory (created).
        key: ``run_key`` of the run.
        out: the finished run directory.
    """
    cache = check_cache_dir(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / key
    if _complete(dest):
        return
    with RunDirLock(out):  # the run directory does not change while it is copied
        with atomic_directory(dest) as tmp:
            for name in run_files.CACHED:
                if (Path(out) / name).is_file():
                    shutil.copyfile(Path(out) / name, tmp / name)
    if not _complete(dest):
        log.warning("cache entry %s is incomplete (not written by this version's store); the run "
                    "was not stored; remove the entry", dest)
        return
    log.info("stored run %s in %s", key, dest)
