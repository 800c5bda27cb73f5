"""Helpers of the cluster tests (the cluster itself is the `slurm` fixture of tests/conftest.py).
Not in a tests/cluster/conftest.py: tests/pipeline imports names `from conftest`, which finds
whichever conftest was loaded last."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def slurm_jobs(env: dict) -> list[dict]:
    """Every job the cluster still knows (finished ones for MinJobAge), as `scontrol show job -o`
    key=value records."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    jobs = []
    for line in out.splitlines():
        if not line.strip() or line.startswith("No jobs"):
            continue
        # values never contain " Key=" in what we read; Command= may contain spaces
        jobs.append(dict(re.findall(r"(\w[\w/:]*)=(\S*)", line)))
    return jobs
