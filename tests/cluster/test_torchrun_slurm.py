"""torchrun inside a SLURM job: 2 gloo processes on the job's 2 CPUs train one cell to what one
process trains (the DDP test's case and tolerances). The GPU variant (nccl, one process per GPU)
is what the paper scale submits; scripts/device_check.sh runs it on a GPU machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from slurm_cluster import ROOT, slurm_jobs
from tests.train.test_ddp import CASE, assert_two_processes_match_one

pytestmark = pytest.mark.slow


def test_torchrun_two_cpu_processes_in_one_slurm_job(slurm, tmp_path, write_config):
    cfg = write_config(CASE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "qbench", "train", str(cfg), "--out", str(one), "--quiet"],
                   check=True, env=env, capture_output=True, timeout=300)
    # the command the training rules run with launcher: torchrun, on the job's CPUs
    train = (f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node=2 "
             f"-m qbench.cli train {cfg} --out {two} --quiet")
    res = subprocess.run(["sbatch", "--parsable", "--wait", "--job-name", "qbench-torchrun", "--ntasks=1",
                          "--cpus-per-task=2", "--mem=4000", "-t", "10", "-D", str(tmp_path),
                          "--output", str(tmp_path / "job.log"), f"--export=ALL,OMP_NUM_THREADS=1,PYTHONPATH={ROOT}",
                          "--wrap", train],
                         env={**slurm, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    log = (tmp_path / "job.log").read_text() if (tmp_path / "job.log").is_file() else ""
    assert res.returncode == 0, res.stderr + log[-3000:]
    assert "torch.distributed.nn.functional" not in log  # no deprecated collective
    job = next(j for j in slurm_jobs(slurm) if j["JobId"] == res.stdout.strip().split(";")[0])
    assert job["JobState"] == "COMPLETED" and int(job["NumCPUs"]) == 2, job
    assert_two_processes_match_one(one, two)
