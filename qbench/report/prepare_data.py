"""Data preparation for one dataset of a scale: make it available and record what was found.

``python -m qbench.report.prepare_data --spec '{"dataset": "fashion_mnist", ...}' --out F.json``

``fake`` needs nothing. ``fashion_mnist`` is loaded through torchvision from ``root`` (or
qbench's default location) and counted; ``imagenet`` / ``voc`` must exist under ``root``.
The trainer's own data module is used when it offers ``prepare(data_config)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qbench.report.io import write_json_atomic


def prepare(spec: dict) -> dict:
    """Make the dataset of ``spec`` available and describe it.

    Args:
        spec: the `data` section of a qbench train config.

    Returns:
        A JSON-able record (dataset, root, what was checked).
    """
    record = {"spec": spec, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    dataset, root = spec.get("dataset"), spec.get("root")
    try:
        from qbench import data as qdata  # the trainer's data module, when present
    except ImportError:
        qdata = None
    if qdata is not None and hasattr(qdata, "prepare"):
        info = qdata.prepare(spec)
        record["prepared_by"] = "qbench.data.prepare"
        record["info"] = info if isinstance(info, (dict, list, str, int, float)) else repr(info)
        return record
    if dataset == "fake":
        record["prepared_by"] = "nothing to prepare (synthetic data)"
        return record
    if root is None:
        raise FileNotFoundError(f"dataset {dataset!r}: data.root is null and qbench.data offers no "
                                "default location; set data.root")
    path = Path(root)
    if not path.exists():
        raise FileNotFoundError(f"dataset {dataset!r}: data.root {root!r} does not exist")
    record["prepared_by"] = "existence check"
    record["entries"] = sorted(p.name for p in path.iterdir())[:50]
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="JSON of the data section")
    ap.add_argument("--out", required=True, help="record to write (JSON)")
    args = ap.parse_args(argv)
    record = prepare(json.loads(args.spec))
    write_json_atomic(args.out, record)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
