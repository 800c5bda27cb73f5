"""Every file qbench writes or reads back goes through here.

- Writes are atomic (temporary file beside the target, fsync, ``os.replace``): a reader, a
  killed job or a full disk never leaves a half-written file under the real name. Files get
  the mode of an ordinary new file (0666 minus the umask), not mkstemp's 0600.
- Reads of files the project did not just write are data only: ``torch.load`` with
  ``weights_only=True`` and no fallback, YAML through a safe loader. Every failure names the
  file (and the config key that pointed to it) and says what to do.
- A run directory is locked while a job writes it (``RunDirLock``); its ``env.json`` comes from
  ``run_environment`` and its ``train.log`` from ``RunLog``, for classification and detection alike.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from qbench import run_files

# The temporary names of this module's writers: `.<name>.<random>.qbench.tmp`. The sweep of a
# run directory removes those and the older `.<name>.<random>.tmp` / `.<name>.tmp-<pid>` of the
# files a run directory holds, and nothing else (an editor's or another program's `.x.tmp` stays).
TMP_SUFFIX = ".qbench.tmp"
LOCK_NAME = ".qbench.lock"
_LEGACY_TMP = re.compile(r"\.(?P<name>.+?)(?:\.[A-Za-z0-9_]+\.tmp|\.tmp-\d+)")


class FileFormatError(ValueError):
    """A file cannot be read as what it should be; the message names it and what to do."""


class DiskFullError(OSError):
    """No space (or quota) left where a file was being written; the old file is intact."""


class RunDirError(ValueError):
    """A run directory cannot be used: held by another job, not writable, damaged."""


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
