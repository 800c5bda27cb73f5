"""Helpers to run the Snakemake workflow of this checkout in a temporary working directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
FAKE_TRAIN = Path(__file__).resolve().parent / "fake_train.py"


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake -s <repo>/Snakefile -d workdir ARGS`` and capture its output."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def copy_checkout(dest: Path) -> Path:
    """The workflow's files (Snakefile, workflows/, qbench/) copied to ``dest``."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    ignore = shutil.ignore_patterns("__pycache__", "*.so")
    for name in ("workflows", "qbench"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest



def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: rule -> count."""
    counts: dict[str, int] = {}
    block = output.split("Job stats:", 1)
    if len(block) < 2:
        return counts
    for line in block[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def jobs_with_wildcards(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards text) of every job a dry run lists."""
    jobs, rule = [], None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            jobs.append((rule, ""))
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and jobs:
            jobs[-1] = (jobs[-1][0], m.group(1))
    return jobs


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def fake_trainer_config(tmp_path: Path) -> Path:
    """A config file that replaces qbench train by the fast stand-in."""
    return write_yaml(tmp_path / "fake.yaml", {"train_command": f"{sys.executable} {FAKE_TRAIN}"})
