"""A run killed at any point and restarted ends with the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch


QUANT = {"quant": {"weights": "ternary", "activations": "act_2bit", "calib_samples": 16},
         "data": {"train_size": 48, "test_size": 16, "batch_size": 16},
         "optim": {"lr": 0.01, "milestones": [3]},
         "epochs": {"fp": 0, "weights": 1, "activations": 1, "joint": 2}}


def _cmd(cfg, out):
    return [sys.executable, "-m", "qbench", "train", str(cfg), "--out", str(out), "--threads", "1"]


def _comparable(metrics: dict) -> dict:
    """Everything but timings and memory."""
    rows = [{k: v for k, v in r.items() if k != "time_s"} for r in metrics["history"]]
    return {"final": metrics["final"], "history": rows, "quant_report": metrics["quant_report"],
            "model_bits": metrics["model_bits"]}


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(tmp_path, write_config, fp_checkpoint, merge):
    cfg = write_config(merge(QUANT, {"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)}}))
    ref = tmp_path / "ref"
    subprocess.run(_cmd(cfg, ref), check=True, env=_env(), capture_output=True, timeout=300)
    reference = json.loads((ref / "metrics.json").read_text())

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(cfg, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "train.log"
    deadline = time.time() + 240
    # Kill in the middle: after epoch 2 (phase "activations") and before the run finishes.
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "epoch 2/4" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "metrics.json").exists()
    done = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < 4  # the kill may land between the log line and the checkpoint write
    subprocess.run(_cmd(cfg, out), check=True, env=_env(), capture_output=True, timeout=300)
    resumed = json.loads((out / "metrics.json").read_text())
    assert "resumed from" in log.read_text()
    assert _comparable(resumed) == _comparable(reference)
    a = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_kill_before_first_epoch_restarts_cleanly(tmp_path, write_config):
    cfg = write_config({"epochs": {"fp": 1}})
    out = tmp_path / "early"
    proc = subprocess.Popen(_cmd(cfg, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoint.pt").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    subprocess.run(_cmd(cfg, out), check=True, env=_env(), capture_output=True, timeout=300)
    ref = tmp_path / "ref"
    subprocess.run(_cmd(cfg, ref), check=True, env=_env(), capture_output=True, timeout=300)
    assert _comparable(json.loads((out / "metrics.json").read_text())) == \
        _comparable(json.loads((ref / "metrics.json").read_text()))
