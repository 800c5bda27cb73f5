"""Helpers of the cluster tests: the repository root and the jobs a SLURM cluster knows.
(Not in conftest.py: several test directories have one, and `from conftest import` would find
whichever was imported last.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLURM_LOCAL = ROOT / "scripts" / "slurm_local.sh"


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
