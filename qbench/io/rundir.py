"""A run directory while a job writes it: its lock (``RunDirLock``) and its log (``RunLog``)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import platform
import sys
import time
from pathlib import Path

from qbench import run_files

from .errors import FileFormatError, RunDirError
from .reading import read_json, read_yaml


LOCK_NAME = ".qbench.lock"
RESTART_HINT = "delete it to restart the run from epoch 0"


class RunLog:
    """A run's progress lines: appended to ``train.log`` and echoed on stdout unless quiet.

    One format for every trainer (``YYYY-mm-dd HH:MM:SS message``); the file is flushed per
    line so a killed job's log ends at its last line.

    Args:
        path: the log file (None: no file, e.g. on ranks other than 0).
        quiet: no console output.
    """

    def __init__(self, path: str | os.PathLike | None, quiet: bool) -> None:
        self.path, self.quiet = (Path(path) if path is not None else None), quiet

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        if not self.quiet:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class RunDirLock:
    """Exclusive lock on a run directory (``flock`` on ``<dir>/.qbench.lock``).

    A second job on the same directory fails at once with RunDirError naming the holder
    (pid, host, start time). The kernel drops the lock when the holder dies, also on kill -9,
    so a killed run never blocks its own rerun.

    Args:
        directory: the run directory (created).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._fd: int | None = None

    def __enter__(self) -> "RunDirLock":
        d = self.directory
        if d.exists() and not d.is_dir():
            raise RunDirError(f"--out {d}: exists and is not a directory; give a directory path")
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except (FileExistsError, NotADirectoryError):
            raise RunDirError(f"--out {d}: a parent is a file, not a directory") from None
        except OSError as exc:
            raise RunDirError(f"--out {d}: cannot write there ({exc.strerror or exc}); "
                              "choose a writable directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(f"--out {d}: in use by {holder}; wait for that job or use another "
                              "--out directory") from None
        except OSError as exc:  # a file system without locks (some NFS set-ups): run, but say so
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            logging.getLogger(__name__).warning("%s: cannot be locked (%s); make sure no other job "
                                                "writes this run directory", d, exc.strerror)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()} since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            # Unlock before closing: forked children (DataLoader workers still shutting down)
            # share this open file description, and a close alone keeps the lock while any lives.
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                pass  # a file system without locks: nothing was held
            os.close(self._fd)
            self._fd = None


def adopt_run_dir(out: Path, resolved: dict) -> dict | None:
    """Refuse a directory of another run; return the finished metrics if this run is done.

    The one adoption rule of every run directory (classification, detection, the FP cache):
    files of a run without its config.yaml, or a config.yaml of another config, are another run's.
    Reads only, so every process of a distributed run may ask.

    Args:
        out: the run directory.
        resolved: the run's resolved config (what its config.yaml holds).
    """
    out = Path(out)
    cfg_path, ckpt, met = out / run_files.CONFIG, out / run_files.CHECKPOINT, out / run_files.METRICS
    if not cfg_path.is_file():
        if ckpt.is_file() or met.is_file():  # nothing says which config made them
            raise RunDirError(f"{out}: holds {'checkpoint.pt' if ckpt.is_file() else 'metrics.json'} but no "
                              "config.yaml, so it may belong to another config; use a new --out "
                              f"directory (or {RESTART_HINT}: remove checkpoint.pt and metrics.json)")
        return None
    if ckpt.is_file() or met.is_file():
        try:
            previous = read_yaml(cfg_path)
        except FileFormatError as e:
            raise RunDirError(f"{e}; the run directory is damaged: restore config.yaml or use a new "
                              "--out directory") from None
        if previous != resolved:
            raise RunDirError(f"{out}: holds a run with another config; use a new --out directory")
        if met.is_file():
            try:
                metrics = read_json(met)
            except FileFormatError as e:
                raise RunDirError(f"{e}; delete metrics.json to evaluate again from checkpoint.pt") from None
            if isinstance(metrics, dict) and metrics.get("status") == "complete":
                return metrics
    return None
