"""Every file qbench writes or reads back goes through here.

- Writes are atomic (temporary file beside the target, fsync, ``os.replace``): a reader, a
  killed job or a full disk never leaves a half-written file under the real name. Files get
  the mode of an ordinary new file (0666 minus the umask), not mkstemp's 0600.
- Reads of files the project did not just write are data only: ``torch.load`` with
  ``weights_only=True`` and no fallback, YAML through a safe loader. Every failure names the
  file (and the config key that pointed to it) and says what to do.
- A run directory is locked while a job writes it (``RunDirLock``); its ``env.json`` comes from
  ``run_environment`` and its ``train.log`` from ``RunLog``, for classification and detection alike.

Modules: ``atomic`` (writing), ``reading`` (safe loading), ``provenance`` (env.json, data
files), ``rundir`` (lock, log), ``errors``."""

from __future__ import annotations

from .errors import DiskFullError, FileFormatError, RunDirError
from .atomic import (
    atomic_directory, dump_json, remove_stale_tmp, save_arrays, save_figure, save_torch, TMP_SUFFIX,
    write_bytes, write_json, write_text, write_yaml,
)
from .reading import (
    load_state_dict, load_torch, parse_yaml, PREDICTION_KEYS, QUANTIZED_KEY_MARKS, read_json,
    read_predictions, read_text, read_yaml, STATE_DICT_KEYS,
)
from .provenance import (
    ALLOW_DATA_CHANGE_ENV, check_data_files, environment, file_record, git_commit, run_environment,
    with_start_history,
)
from .rundir import LOCK_NAME, RESTART_HINT, RunDirLock, RunLog, adopt_run_dir

__all__ = [
    "ALLOW_DATA_CHANGE_ENV", "RESTART_HINT", "adopt_run_dir", "atomic_directory", "check_data_files", "DiskFullError", "dump_json",
    "environment", "file_record", "FileFormatError", "git_commit", "load_state_dict", "load_torch",
    "LOCK_NAME", "parse_yaml", "PREDICTION_KEYS", "QUANTIZED_KEY_MARKS", "read_json", "read_predictions",
    "read_text", "read_yaml", "remove_stale_tmp", "run_environment", "RunDirError", "RunDirLock", "RunLog",
    "save_arrays", "save_figure", "save_torch", "STATE_DICT_KEYS", "TMP_SUFFIX", "with_start_history",
    "write_bytes", "write_json", "write_text", "write_yaml",
]
