"""A training job killed together with snakemake resumes from its checkpoint when the workflow is
re-run with --rerun-incomplete, and ends with the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import SNAKEFILE, snakemake

CELL = "alexnet_w1a1"  # three epochs at smoke scale
TARGET = f"results/smoke/runs/{CELL}/s0/metrics.json"
ARGS = ("--cores", "1", "--config", "scale=smoke")


def _comparable(metrics: dict) -> dict:
    rows = [{k: v for k, v in r.items() if k != "time_s"} for r in metrics["history"]]
    return {"final": metrics["final"], "history": rows, "model_bits": metrics["model_bits"]}


@pytest.mark.slow
def test_killed_job_resumes_through_rerun_incomplete(tmp_path, smoke_run):
    ref, killed = smoke_run[0], tmp_path / "killed"
    killed.mkdir()

    # snakemake and its job in one process group, killed at once as a lost node would be
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(killed), *ARGS,
                             "--", TARGET], cwd=killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    run = killed / "results" / "smoke" / "runs" / CELL / "s0"
    log, ckpt = run / "train.log", run / "checkpoint.pt"
    # kill once a checkpoint after epoch 1 has replaced the one written at the start
    first_inode, deadline = None, time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        inode = ckpt.stat().st_ino if ckpt.is_file() else None
        first_inode = first_inode or inode
        if inode != first_inode and "epoch 1/3" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the workflow finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (run / "checkpoint.pt").is_file() and not (run / "metrics.json").exists()

    # the killed snakemake left its lock (--unlock) and an incomplete-job marker
    assert snakemake(killed, "--unlock", *ARGS).returncode == 0
    res = snakemake(killed, *ARGS, "--rerun-incomplete", "--", TARGET)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = log.read_text()
    assert re.search(r"resumed from \S+ after epoch [12]\b", text), text
    assert text.count("epoch 1/3") == 1  # epoch 1 was not trained again
    resumed = json.loads((run / "metrics.json").read_text())
    reference = json.loads((ref / TARGET).read_text())
    assert _comparable(resumed) == _comparable(reference)


def test_changed_inputs_start_over(tmp_path):
    """A job that re-runs because its config changed does not resume the old run's checkpoint."""
    from qbench.workflow.run_inputs import prepare_run_dir

    cfg, fp = tmp_path / "run.yaml", tmp_path / "fp.pt"
    fp.write_bytes(b"weights v1")
    cfg.write_text(f"seed: 0\nstart: {{mode: pretrained, checkpoint: {fp}}}\n")
    out = tmp_path / "run"
    assert prepare_run_dir(cfg, out) is False  # a new run
    (out / "checkpoint.pt").write_bytes(b"epoch 1")
    assert prepare_run_dir(cfg, out) is True  # killed and re-run: the checkpoint stays
    assert (out / "checkpoint.pt").read_bytes() == b"epoch 1"
    fp.write_bytes(b"weights v2")  # the FP run it fine-tunes was retrained
    assert prepare_run_dir(cfg, out) is False
    assert sorted(p.name for p in out.iterdir()) == ["inputs.json"]
    (out / "checkpoint.pt").write_bytes(b"epoch 1")
    cfg.write_text(f"seed: 1\nstart: {{mode: pretrained, checkpoint: {fp}}}\n")  # its config changed
    assert prepare_run_dir(cfg, out) is False and not (out / "checkpoint.pt").exists()
    (out / "checkpoint.pt").write_bytes(b"epoch 1")
    (out / "inputs.json").write_text("{not json")  # a record this step did not write
    assert prepare_run_dir(cfg, out) is False and not (out / "checkpoint.pt").exists()
