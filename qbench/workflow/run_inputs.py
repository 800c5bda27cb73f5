"""Keep a run directory's checkpoint only for the inputs the run was started from.

``python -m qbench.workflow.run_inputs --config CONFIG.yaml --out RUN_DIR``

The training rules do not declare ``checkpoint.pt`` as an output, so that snakemake leaves it in
place when a job is killed, pre-empted or runs out of time (``--rerun-incomplete``, ``retries``,
SLURM requeue) and the trainer resumes from it. A job that re-runs because what it trains
changed (its rendered config, or the FP checkpoint it fine-tunes) must start over instead. This
step, run before the trainer, records a digest of those inputs in ``RUN_DIR/inputs.json``; when
the recorded digest differs (or is missing while the directory holds files), the directory is
emptied so that the trainer starts a fresh run.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
from pathlib import Path

from qbench import run_files
from qbench.io import read_json, read_yaml, write_json

log = logging.getLogger("qbench.run_inputs")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_inputs(config: Path) -> dict:
    """SHA-256 of the run config and of the checkpoint it starts from (``start.checkpoint``).

    Args:
        config: the rendered ``qbench train`` config of the run.
    """
    record = {"config": _sha256(config)}
    start = (read_yaml(config, allow_empty=True) or {}).get("start") or {}
    if start.get("checkpoint"):
        record["start_checkpoint"] = _sha256(Path(start["checkpoint"]))
    return record


def prepare_run_dir(config: Path, out: Path) -> bool:
    """Empty ``out`` unless it holds a run of the same inputs; record the inputs.

    Args:
        config: the rendered run config.
        out: the run directory.

    Returns:
        True when the directory's content was kept (a resumable or finished run of these inputs).
    """
    current = digest_inputs(config)
    record = out / run_files.INPUTS
    try:
        previous = read_json(record) if record.is_file() else None
    except ValueError:  # not what this module writes (atomically): do not trust the directory
        previous = None
    kept = previous == current
    if not kept and out.is_dir() and any(out.iterdir()):
        log.info("%s: inputs changed since this run started; starting over", out)
        shutil.rmtree(out)
    elif kept:
        log.info("%s: same inputs; the trainer resumes from its checkpoint if there is one", out)
    out.mkdir(parents=True, exist_ok=True)
    if not kept:
        write_json(record, current)
    return kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path, help="rendered qbench train config")
    ap.add_argument("--out", required=True, type=Path, help="run directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        prepare_run_dir(args.config, args.out)
    except (OSError, ValueError) as exc:  # FileFormatError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
