"""Do two result trees of one scale hold the same results? For a change that must not move a number
(a refactoring): the tables, the per-cell aggregate and the claims, compared value by value.

``python -m qbench.workflow.compare results/smoke OTHER/results/smoke``: one line per difference,
exit 0 when there is none, 1 when there are, 2 when a tree lacks a file.

What a run measures about itself (wall time, throughput, memory, its directory) differs between
any two runs and is left out; everything else, numbers and verdicts, must be equal as written.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

# the files that hold results (relative to results/<scale>), and the columns that describe the
# run rather than its result
RESULT_FILES = ("claims.csv", "aggregate/cells.csv", "tables/*.csv")
RUN_COLUMNS = re.compile(r"(^|_)(wall|time_s|images_per_s|peak_memory|run_dir|process_time|seconds|minutes)($|_)")


def _files(tree: Path) -> dict[str, Path]:
    out = {}
    for pattern in RESULT_FILES:
        for path in sorted(tree.glob(pattern)):
            out[str(path.relative_to(tree))] = path
    return out


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return [], []
    header = rows[0]
    keep = [i for i, name in enumerate(header) if not RUN_COLUMNS.search(name)]
    return [header[i] for i in keep], [[row[i] if i < len(row) else "" for i in keep] for row in rows[1:]]


def differences(old: Path, new: Path) -> list[str]:
    """One line per difference between the result files of two trees.

    Raises:
        FileNotFoundError: a tree has no result file at all.
    """
    a, b = _files(old), _files(new)
    for tree, found in ((old, a), (new, b)):
        if not found:
            raise FileNotFoundError(f"{tree}: no result files ({', '.join(RESULT_FILES)})")
    out = [f"{name}: only in {old}" for name in sorted(set(a) - set(b))]
    out += [f"{name}: only in {new}" for name in sorted(set(b) - set(a))]
    for name in sorted(set(a) & set(b)):
        (head_a, rows_a), (head_b, rows_b) = _rows(a[name]), _rows(b[name])
        if head_a != head_b:
            out.append(f"{name}: columns differ: {head_a} vs {head_b}")
            continue
        if len(rows_a) != len(rows_b):
            out.append(f"{name}: {len(rows_a)} rows vs {len(rows_b)}")
        for i, (ra, rb) in enumerate(zip(rows_a, rows_b), start=2):
            for col, va, vb in zip(head_a, ra, rb):
                if va != vb:
                    out.append(f"{name}:{i} {col}: {va!r} vs {vb!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="results/<scale> of one tree")
    ap.add_argument("new", type=Path, help="results/<scale> of the other")
    args = ap.parse_args(argv)
    try:
        found = differences(args.old, args.new)
    except FileNotFoundError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    print(f"{len(found)} difference(s)" if found else "no differences", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
