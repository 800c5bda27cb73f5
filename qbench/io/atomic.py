"""Atomic writes: a temporary file beside the target, fsync, ``os.replace``; a reader, a killed
job or a full disk never leaves a half-written file under the real name. Files get the mode of an
ordinary new file (0666 minus the umask), not mkstemp's 0600."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from qbench import run_files

from .errors import DiskFullError


# The temporary names of this module's writers: `.<name>.<random>.qbench.tmp`. The sweep of a
# run directory removes those and the older `.<name>.<random>.tmp` / `.<name>.tmp-<pid>` of the
# files a run directory holds, and nothing else (an editor's or another program's `.x.tmp` stays).
TMP_SUFFIX = ".qbench.tmp"
_LEGACY_TMP = re.compile(r"\.(?P<name>.+?)(?:\.[A-Za-z0-9_]+\.tmp|\.tmp-\d+)")

# -- writing ------------------------------------------------------------------------------------

def _umask() -> int:
    try:  # Linux: read it without the set-and-restore race of os.umask
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Atomically replace ``path`` with ``data`` (parent directories are created).

    Args:
        path: destination.
        data: the complete content.

    Raises:
        DiskFullError: no space left; ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_disk_full(exc):
            raise DiskFullError(errno.ENOSPC, f"no space left on {path.parent} while writing {path.name} "
                                f"(the previous {path.name}, if any, is unchanged); free space and rerun") from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 text.

    Args:
        path: destination.
        text: the content.
    """
    write_bytes(path, text.encode("utf-8"))


def dump_json(obj: Any) -> str:
    """The project's one JSON format: 2-space indent, sorted keys, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write JSON in the format of ``dump_json``.

    Args:
        path: destination.
        obj: JSON-serialisable value.
    """
    write_text(path, dump_json(obj))


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write YAML (block style, keys in insertion order).

    Args:
        path: destination.
        obj: plain data.
    """
    write_text(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=None))


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` plain containers of tensors (loadable by ``load_torch``).

    The file is serialised in memory first, so a full disk shows as ``DiskFullError`` (torch's
    own writer reports it as an unrelated zip position error).

    Args:
        path: destination.
        obj: dicts/lists/tensors/numbers/strings only.
    """
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getbuffer())


def save_arrays(path: str | os.PathLike, arrays: dict) -> None:
    """Atomically write numpy arrays as an uncompressed ``.npz`` (read with allow_pickle=False).

    Args:
        path: destination.
        arrays: name -> numeric numpy array.
    """
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getbuffer())


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """Atomically save a matplotlib figure (format from the suffix).

    Args:
        fig: the Figure.
        path: destination, e.g. ``.pdf`` or ``.png``.
        **kwargs: passed to ``savefig``.
    """
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip("."), **kwargs)
    write_bytes(path, buf.getbuffer())


@contextmanager
def atomic_directory(dest: str | os.PathLike, mode: int = 0o755) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``dest``, then rename it to ``dest``.

    Yields the temporary directory to fill. On success it becomes ``dest`` in one rename; on
    an error it is removed and ``dest`` is untouched. When another process completed ``dest``
    first (same content by construction: the callers name directories after what they hold),
    theirs is kept.

    Args:
        dest: the directory to create.
        mode: permissions of the result (mkdtemp creates 0700).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=TMP_SUFFIX, dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, mode)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_tmp(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files that killed writers left in ``directory`` (not recursive).

    Only call it while holding the directory's lock: a live writer's file looks the same.

    Args:
        directory: a run directory.

    Returns:
        The removed paths.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        legacy = _LEGACY_TMP.fullmatch(p.name)
        ours = p.name.endswith(TMP_SUFFIX) or (legacy is not None and legacy.group("name") in run_files.RUN_DIR)
        if p.name.startswith(".") and ours and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
