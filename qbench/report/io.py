"""Atomic file writes: a reader (or an interrupted job) never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    Args:
        path: destination; parent directories are created.
        data: the content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 text.

    Args:
        path: destination.
        text: the content.
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Atomically write JSON (sorted keys, indented).

    Args:
        path: destination.
        data: JSON-serialisable value.
    """
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by the pipeline (the plan, metrics).

    Args:
        path: the file.
    """
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_figure_atomic(fig, path: str | os.PathLike, **kwargs) -> None:
    """Save a matplotlib figure atomically (format from the suffix).

    Args:
        fig: the matplotlib Figure.
        path: destination, ``.pdf`` or ``.png``.
        **kwargs: passed to ``savefig``.
    """
    import io

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip("."), **kwargs)
    write_bytes_atomic(path, buf.getvalue())
