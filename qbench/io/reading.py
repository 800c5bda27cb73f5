"""Reads of files the project did not just write, as data only: ``torch.load`` with
``weights_only=True`` and no fallback, YAML through a safe loader. Every failure names the file
(and the config key that pointed to it) and says what to do."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import yaml


from .errors import FileFormatError


# -- reading ------------------------------------------------------------------------------------

def _where(path: Path, key: str | None) -> str:
    return f"{key}: {path}" if key else str(path)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a number (YAML 1.1 wants ``1.0e-3``) and refuses a
    key given twice in one mapping (PyYAML keeps the last silently: a pasted duplicate would
    replace an entry without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if first != key_node.start_mark.line + 1:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
                |[-+]?\.[0-9_]+[eE][-+]?[0-9]+)$""", re.X),
    list("-+0123456789."))


def _yaml_error(where: str, exc: yaml.YAMLError) -> FileFormatError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    at = f"{where}:{mark.line + 1}" if mark is not None and not where.startswith("--set") else where
    problem = getattr(exc, "problem", None) or str(exc)
    if problem.startswith("duplicate key"):
        return FileFormatError(f"{at}: {problem}; keep one of them")
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = re.search(r"'([^']*)'", problem)
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "?"
        return FileFormatError(f"{at}: tag {name} is not allowed "
                               "(configs are plain data: mappings, lists, strings, numbers)")
    return FileFormatError(f"{at}: not valid YAML ({problem.strip()})")


def parse_yaml(text: str, where: str = "<text>") -> Any:
    """Parse YAML text as plain data (numbers as people write them, no Python tags).

    Args:
        text: the YAML.
        where: what to name in errors (a file name, ``--set key``).
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise _yaml_error(where, exc) from None


def read_text(path: str | os.PathLike, key: str | None = None) -> str:
    """Read a UTF-8 text file; binary content or a missing file raise FileFormatError.

    Args:
        path: the file.
        key: the config key that named it, for the message.
    """
    path = Path(path)
    where = _where(path, key)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileFormatError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise FileFormatError(f"{where}: is a directory, not a file") from None
    except OSError as exc:
        raise FileFormatError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{where}: not a UTF-8 text file (binary content at byte {exc.start})") from None


def read_yaml(path: str | os.PathLike, key: str | None = None, allow_empty: bool = False) -> Any:
    """Read a YAML file as plain data; errors name the file and line.

    Args:
        path: the file.
        key: the config key that named it, for the message.
        allow_empty: return None for an empty file instead of raising.
    """
    path = Path(path)
    text = read_text(path, key)
    data = parse_yaml(text, _where(path, key))
    if data is None and not allow_empty:
        raise FileFormatError(f"{_where(path, key)}: empty (expected a YAML mapping)")
    return data


def read_json(path: str | os.PathLike, key: str | None = None) -> Any:
    """Read a JSON file; errors name the file and line.

    Args:
        path: the file.
        key: the config key that named it, for the message.
    """
    path = Path(path)
    text = read_text(path, key)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{_where(path, key)}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def load_torch(path: str | os.PathLike, key: str | None = None, hint: str | None = None,
               map_location: Any = "cpu") -> Any:
    """``torch.load`` a file as data only (``weights_only=True``, never a fallback).

    Args:
        path: the file.
        key: the config key (or role) that named it, for the message.
        hint: what the user can do, appended to every error (e.g. "delete it to restart").
        map_location: passed to ``torch.load``.

    Raises:
        FileFormatError: missing, empty, truncated, not a torch file, or holding Python objects
            that are not plain data (loading those could run code; they are refused).
    """
    import torch

    path = Path(path)
    where = _where(path, key)
    tail = f"; {hint}" if hint else ""
    if not path.is_file():
        raise FileFormatError(f"{where}: no such file{tail}")
    if path.stat().st_size == 0:
        raise FileFormatError(f"{where}: empty file{tail}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) and re.search(r"Unsupported (global|class)|GLOBAL", str(exc)):
            raise FileFormatError(f"{where}: holds Python objects that are not tensors or plain data; "
                                  f"refused (loading it could run code){tail}") from None
        raise FileFormatError(f"{where}: not a readable torch file{tail}") from None
    except RuntimeError as exc:
        if "zip archive" in str(exc) or "PytorchStreamReader" in str(exc):
            raise FileFormatError(f"{where}: truncated or not a torch file{tail}") from None
        raise FileFormatError(f"{where}: cannot be loaded ({str(exc).splitlines()[0]}){tail}") from None
    except (EOFError, KeyError, ValueError, UnicodeDecodeError, AttributeError, TypeError, IndexError) as exc:
        raise FileFormatError(f"{where}: truncated or not a torch file ({type(exc).__name__}){tail}") from None


PREDICTION_KEYS = ("label", "hard", "soft")


def read_predictions(path: str | os.PathLike, test_images: int | None = None) -> dict:
    """A run's ``predictions.npz`` as data (``allow_pickle=False``), checked: a readable archive
    with per-image ``label``, ``hard`` and ``soft`` arrays of integers, all of one length (the
    run's ``test_images`` when given).

    Args:
        path: the file.
        test_images: the number of test images metrics.json reports.

    Raises:
        FileFormatError: naming the file and what is wrong with it.
    """
    import zipfile

    import numpy as np

    path = Path(path)
    tail = "; rerun the run (delete its metrics.json) to write it again"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file{tail}") from None
    except ValueError as exc:
        if "pickle" in str(exc):  # numpy's own advice (allow_pickle=True) would run code
            raise FileFormatError(f"{path}: holds Python objects, not arrays; refused{tail}") from None
        raise FileFormatError(f"{path}: not a numpy archive ({exc}){tail}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise FileFormatError(f"{path}: damaged or not a numpy archive ({type(exc).__name__}){tail}") from None
    missing = [k for k in PREDICTION_KEYS if k not in arrays]
    if missing:
        raise FileFormatError(f"{path}: no {', '.join(missing)} array{tail}")
    n = test_images if test_images is not None else arrays["label"].shape[0] if arrays["label"].ndim else -1
    for k in PREDICTION_KEYS:
        a = arrays[k]
        if a.ndim != 1 or a.dtype.kind not in "iu" or a.shape[0] != n:
            raise FileFormatError(f"{path}: {k} has shape {a.shape} and dtype {a.dtype}; expected "
                                  f"{n} integers (one per test image){tail}")
    return arrays


STATE_DICT_KEYS = ("model", "state_dict", "model_state")


QUANTIZED_KEY_MARKS = (".parametrizations.", ".input_quantizer.")


def load_state_dict(path: str | os.PathLike, key: str | None = None, full_precision: bool = False) -> dict:
    """The model weights in a file: a bare state dict (torchvision's weight files) or a
    checkpoint holding one under ``model`` / ``state_dict`` / ``model_state`` (classification
    and detection checkpoints alike).

    Args:
        path: the file (loaded with ``load_torch``).
        key: the config key that named it, for the message.
        full_precision: refuse the weights of a quantized model (a start must be full precision).

    Returns:
        ``{name: tensor}``.
    """
    import torch

    obj = load_torch(path, key)
    for k in STATE_DICT_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FileFormatError(f"{_where(Path(path), key)}: not a state dict (or a qbench checkpoint "
                              "holding one)")
    if full_precision and any(mark in k for k in obj for mark in QUANTIZED_KEY_MARKS):
        raise FileFormatError(f"{_where(Path(path), key)}: holds a quantized model; start from a "
                              "full-precision one")
    return obj
