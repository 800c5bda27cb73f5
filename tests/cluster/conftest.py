"""A one-node SLURM cluster of this test session (scripts/slurm_local.sh)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from slurm_cluster import SLURM_LOCAL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def slurm():
    """Start a fresh cluster (installing Debian's SLURM if needed), yield the environment its
    clients need, stop what was started."""
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (CI runs as root)")
    # munged runs as user munge and must reach its files: not under pytest's private tmp dir
    state = Path(tempfile.mkdtemp(prefix="qbench-slurm-", dir="/tmp"))
    state.chmod(0o755)
    env = {**os.environ, "QB_SLURM_DIR": str(state), "QB_SLURM_CTLD_PORT": str(_free_port()),
           "QB_SLURM_SLURMD_PORT": str(_free_port())}
    res = subprocess.run(["bash", str(SLURM_LOCAL), "start"], env=env, capture_output=True, text=True,
                         timeout=900)
    if res.returncode != 0:
        subprocess.run(["bash", str(SLURM_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"slurm_local.sh start failed:\n{res.stdout}\n{res.stderr}")
    env["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SLURM_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
