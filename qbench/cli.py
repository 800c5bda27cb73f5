"""Command line: ``qbench train CONFIG --out DIR [--set key=value ...] [--quiet] [--threads N] [--cache DIR]``
and ``qbench report STEP [step arguments]`` (the report pipeline's steps, as the workflow runs them)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# the steps of the report pipeline, in the workflow's order: each is the module
# qbench.report.<step> with main(argv) (its own arguments: qbench report STEP --help)
REPORT_STEPS = ("collect", "aggregate", "claims", "tables", "figures", "sanity", "latex")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="qbench", description="Quantization Networks benchmark suite")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train or fine-tune one run (classification or detection)")
    train.add_argument("config", help="YAML config (see docs/CONTRACTS.md)")
    train.add_argument("--out", required=True, help="run directory (resumed if it holds a checkpoint)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=0.01 (repeatable)")
    train.add_argument("--quiet", action="store_true", help="no console output (train.log is kept)")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: $OMP_NUM_THREADS, else torch's default)")
    train.add_argument("--cache", default=None, metavar="DIR",
                       help="restore the run from DIR when its config, code and torch version are cached "
                            "there, else train it and store it (classification)")
    train.add_argument("--allow-data-change", action="store_true",
                       help="resume even when a data file differs from the one the run started on "
                            "(recorded in env.json)")
    report = sub.add_parser("report", help="one step of the report pipeline (what the workflow's rules run)",
                            add_help=False)
    report.add_argument("step", choices=REPORT_STEPS, help="the step (its module qbench.report.<step>)")
    report.add_argument("step_args", nargs=argparse.REMAINDER, help="the step's own arguments")
    return parser


def cmd_report(args: argparse.Namespace) -> int:
    """Run one report step with its own arguments; its exit code."""
    return int(importlib.import_module(f"qbench.report.{args.step}").main(args.step_args) or 0)


# Bounds a run config's numbers must keep before anything starts: seeds feed torch generators
# (int64, and seed * 1_000_003 + epoch must fit too), epochs a per-epoch plan held in memory.
MAX_SEED = (2**63 - 1) // 1_000_003 - 1_000_000
MAX_EPOCHS = 100_000


def check_limits(raw: dict) -> None:
    """Refuse numbers that validate as integers but fail (overflow, memory) after the run
    started: one ValueError naming the key.

    Args:
        raw: the run config as loaded (``load_raw``).
    """
    seeds = {"seed": raw.get("seed"), "data.subset_seed": (raw.get("data") or {}).get("subset_seed")}
    for key, value in seeds.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SEED:
            raise ValueError(f"{key}: {value} is too large for the random generators; use a seed <= {MAX_SEED}")
    epochs = raw.get("epochs") or {}
    if isinstance(epochs, dict):
        total = sum(v for v in epochs.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0)
        if total > MAX_EPOCHS:
            raise ValueError(f"epochs: {total} epochs in all; more than {MAX_EPOCHS} is surely a typo")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads is not None:
        if threads < 1:
            raise SystemExit("qbench: --threads must be >= 1")
        torch.set_num_threads(threads)


def cmd_train(args: argparse.Namespace) -> int:
    """Validate the config, then run classification here or hand detection to qbench.detection.

    Exit codes: 0 done, 2 bad input (config, input files, run directory; one line naming the
    key or file), 1 the run failed (diverged, disk full, ...).

    Args:
        args: parsed ``train`` arguments.
    """
    from qbench.train.config import Config, ConfigError, load_raw

    try:
        raw = load_raw(args.config, args.overrides)
        check_limits(raw)
        task = raw.get("task", "classify")
        if task not in ("classify", "detect"):
            raise ConfigError(f"task: must be 'classify' or 'detect', got {task!r}")
        if task == "classify":
            config = Config.from_dict(raw)
        else:
            from qbench.detection.config import DetectRunConfig

            DetectRunConfig.from_dict(raw)  # the same checks run_from_config makes, before any import
    except (ConfigError, ValueError) as e:
        print(f"qbench: config error: {e}", file=sys.stderr)
        return 2
    _set_threads(args.threads)
    if args.allow_data_change:
        from qbench.io import ALLOW_DATA_CHANGE_ENV

        os.environ[ALLOW_DATA_CHANGE_ENV] = "1"  # read where the run directory is checked
    from qbench.data import DatasetError
    from qbench.io import DiskFullError, FileFormatError, RunDirError
    from qbench.train import cache
    from qbench.train.trainer import TrainingError, run

    key = cache.run_key(config.to_dict()) if args.cache and task == "classify" else None
    try:
        if key and cache.restore(args.cache, key, args.out, config.to_dict()):
            if not args.quiet:
                print(f"qbench: restored {args.out} from the run cache {args.cache} ({key})")
            return 0
    except (cache.CacheError, RunDirError, FileFormatError) as e:
        print(f"qbench: error: {e}", file=sys.stderr)
        return 2
    try:
        if task == "detect":
            from qbench.detection.runner import run_from_config

            run_from_config(raw, args.out, args.quiet)
        else:
            run(config, args.out, quiet=args.quiet)
            if key:
                cache.store(args.cache, key, args.out)
    except (ConfigError, FileFormatError, RunDirError, DatasetError, FileNotFoundError) as e:
        print(f"qbench: error: {e}", file=sys.stderr)
        return 2
    except (DiskFullError, TrainingError, ValueError) as e:
        print(f"qbench: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qbench`` command.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "report":
            return cmd_report(args)
    except KeyboardInterrupt:  # Ctrl-C: the checkpoint is intact (atomic writes), say so in one line
        print("qbench: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
