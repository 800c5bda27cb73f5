"""The smoke scale through the slurm profile and the example site file on a real one-node SLURM
cluster: every job completes with the resources the scale asks for, a training job cancelled
mid-run (as a pre-emption would) resumes from its checkpoint in the next SLURM job, and the
tables equal the local run's (the shared `smoke_run`; the example site file only adds
settings local runs ignore) at the same seeds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slurm_cluster import ROOT, slurm_jobs
from qbench.workflow import plan

pytestmark = pytest.mark.slow

PROFILE = ROOT / "workflows" / "profiles" / "slurm"
SITE = PROFILE / "site.example.yaml"
CANCELLED_CELL = "alexnet_w1a1"  # three epochs at smoke scale: room to cancel after the first


def _snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args,
           "--configfile", str(SITE), "--config", "scale=smoke", "--", "reproduce_tables"]  # = smoke_run's config
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=workdir, env=env)


def _cancel_mid_run(workdir: Path, env: dict, done: threading.Event, record: dict) -> None:
    """scancel the SLURM job of CANCELLED_CELL once a checkpoint after its first epoch has
    replaced the one written at the start."""
    run = workdir / "results" / "smoke" / "runs" / CANCELLED_CELL / "s0"
    first_inode = None
    while not done.is_set():
        inode = (run / "checkpoint.pt").stat().st_ino if (run / "checkpoint.pt").is_file() else None
        first_inode = first_inode or inode
        text = (run / "train.log").read_text() if inode else ""
        if inode != first_inode and "epoch 1/3" in text and "epoch 2/3" not in text:
            for job in slurm_jobs(env):
                if job.get("Comment", "").endswith(f"{CANCELLED_CELL}_0") and job["JobState"] == "RUNNING":
                    subprocess.run(["scancel", job["JobId"]], env=env, check=True, timeout=60)
                    record["job"] = job["JobId"]
                    return
        time.sleep(0.05)


def _comparable(metrics: dict) -> dict:
    rows = [{k: v for k, v in r.items() if k != "time_s"} for r in metrics["history"]]
    return {"final": metrics["final"], "history": rows, "model_bits": metrics["model_bits"]}


def test_smoke_through_slurm_matches_local(slurm, tmp_path, smoke_run):
    (local, local_s), cluster = smoke_run, tmp_path / "slurm"
    cluster.mkdir()

    done, cancelled = threading.Event(), {}
    watcher = threading.Thread(target=_cancel_mid_run, args=(cluster, slurm, done, cancelled), daemon=True)
    watcher.start()
    t0 = time.time()
    res = _snakemake(cluster, "--profile", str(PROFILE), env=slurm)
    slurm_s = time.time() - t0
    done.set()
    watcher.join(timeout=30)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    assert cancelled, f"{CANCELLED_CELL} finished before it could be cancelled"
    print(f"smoke: local {local_s:.0f} s, SLURM {slurm_s:.0f} s (one job cancelled and resumed)")

    # every job the run submitted, with the resources of the scale config
    cfg = plan.merge_scale_file({"scale": "smoke"}, ROOT / "workflows" / "config")
    train, light = cfg["resources"]["train"], cfg["resources"]["light"]
    jobs = slurm_jobs(slurm)
    by_comment: dict[str, list[dict]] = {}
    for job in jobs:
        by_comment.setdefault(job["Comment"], []).append(job)
    train_jobs = [c for c in by_comment if c.startswith("rule_train_")]
    # one training job per smoke cell (one seed each)
    assert len(train_jobs) == len(plan.enabled_cells(cfg)) == 7, sorted(by_comment)
    for comment in train_jobs:
        for job in by_comment[comment]:
            assert int(job["NumCPUs"]) == train["threads"] * max(train["gpu"], 1), job
            assert job["MinMemoryNode"] == f"{train['mem_mb']}M", job
            assert job["TimeLimit"] == f"00:{train['runtime']:02d}:00", job
        states = [j["JobState"] for j in sorted(by_comment[comment], key=lambda j: int(j["JobId"]))]
        if comment.endswith(f"{CANCELLED_CELL}_0"):
            assert states == ["CANCELLED", "COMPLETED"], states
        else:
            assert states == ["COMPLETED"], (comment, states)
    # tables, figures and the report: one grouped job; the bookkeeping rules ran locally
    others = {c: js for c, js in by_comment.items() if c not in train_jobs}
    assert len(others) == 1 and len(next(iter(others.values()))) == 1, sorted(by_comment)
    group = next(iter(others.values()))[0]
    assert group["JobState"] == "COMPLETED", group
    assert int(group["MinMemoryNode"].rstrip("M")) >= light["mem_mb"], group
    assert len(jobs) == len(train_jobs) + 1 + 1  # + the cancelled attempt + the report group

    # the cancelled job's next attempt resumed from its checkpoint, and ended where an
    # uninterrupted run ends
    run = Path("results/smoke/runs") / CANCELLED_CELL / "s0"
    text = (cluster / run / "train.log").read_text()
    assert re.search(r"resumed from \S+ after epoch [12]\b", text) and text.count("epoch 1/3") == 1, text
    assert "resumed from" not in (local / run / "train.log").read_text()
    assert _comparable(json.loads((cluster / run / "metrics.json").read_text())) == \
        _comparable(json.loads((local / run / "metrics.json").read_text()))

    # the same tables (numbers identical at the same seeds) and a report
    tables = sorted((local / "results/smoke/tables").iterdir())
    from qbench.paper import table_names

    assert len(tables) == 3 * len(table_names()) + 1  # csv, md, tex of each, and all_cells.csv
    for table in tables:
        assert (cluster / "results/smoke/tables" / table.name).read_text() == table.read_text(), table.name
    pdf = cluster / "reports/smoke/report.pdf"
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 50_000
