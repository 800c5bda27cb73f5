"""Run directories: one writer at a time, never another config's files, nothing lost on kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from qbench.cli import main

SLOW_FP = {"data": {"train_size": 256, "test_size": 32}, "epochs": {"fp": 4}}  # a few seconds per epoch


def _cmd(cfg, out, *extra):
    return [sys.executable, "-m", "qbench", "train", str(cfg), "--out", str(out), "--threads", "1", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}


def _wait_for(pred, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_second_writer_fails_naming_the_holder(tmp_path, write_config):
    cfg = write_config(SLOW_FP)
    out = tmp_path / "run"
    first = subprocess.Popen(_cmd(cfg, out, "--quiet"), env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: (out / "config.yaml").is_file(), first), first.stderr.read()
        second = subprocess.run(_cmd(cfg, out, "--quiet"), env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert f"in use by pid {first.pid}" in second.stderr and "another --out" in second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert json.loads((out / "metrics.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_kill_9_releases_the_lock_cleans_temporaries_and_keeps_env_history(tmp_path, write_config):
    cfg = write_config(SLOW_FP)
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(cfg, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train.log"
    ok = _wait_for(lambda: log.is_file() and "epoch 1/4" in log.read_text(), proc)
    assert ok and proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # what a writer killed inside a write leaves behind
    stale = [out / ".checkpoint.pt.x1y2z3.tmp", out / ".metrics.json.a1b2c3.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    first_env = json.loads((out / "env.json").read_text())
    res = subprocess.run(_cmd(cfg, out, "--quiet"), env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not any(p.exists() for p in stale)
    assert "removed 2 temporary file(s)" in log.read_text()
    assert "resumed from" in log.read_text()
    env = json.loads((out / "env.json").read_text())
    assert len(env["starts"]) == 2 and env["resumed"] is True
    assert env["starts"][0]["started_at"] == first_env["started_at"] and env["starts"][0]["resumed"] is False


def _copy_finished_run(fp_checkpoint, tmp_path):
    """A copy of the session's finished 1-epoch smoke run (the config write_config() writes)."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(fp_checkpoint.parent, out)
    return out


def test_checkpoint_without_config_yaml_is_not_adopted(tmp_path, write_config, fp_checkpoint, capsys):
    out = _copy_finished_run(fp_checkpoint, tmp_path)
    (out / "config.yaml").unlink()
    (out / "metrics.json").unlink()
    assert main(["train", str(write_config()), "--out", str(out), "--quiet", "--set", "seed=1"]) == 2
    err = capsys.readouterr().err
    assert "holds checkpoint.pt but no config.yaml" in err and "new --out" in err
    assert not (out / "metrics.json").exists()


def test_checkpoint_of_another_config_is_refused(tmp_path, write_config, fp_checkpoint, capsys):
    """config.yaml says seed 1, the checkpoint was written by seed 0: the checkpoint's own record wins."""
    out = _copy_finished_run(fp_checkpoint, tmp_path)
    (out / "metrics.json").unlink()
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    (out / "config.yaml").write_text(yaml.safe_dump({**resolved, "seed": 1}, sort_keys=False))
    assert main(["train", str(write_config()), "--out", str(out), "--quiet", "--set", "seed=1"]) == 2
    assert "written by a run with another config" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("damage", ["metrics", "config"])
def test_corrupt_run_files_are_named(tmp_path, write_config, fp_checkpoint, capsys, damage):
    out = _copy_finished_run(fp_checkpoint, tmp_path)
    if damage == "metrics":
        (out / "metrics.json").write_text('{"status": "compl')
        hint = "delete metrics.json"
    else:
        (out / "config.yaml").write_text("seed: [0\n")
        hint = "restore config.yaml"
    assert main(["train", str(write_config()), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    name = "metrics.json" if damage == "metrics" else "config.yaml"
    assert re.search(rf"{out / name}:\d+: not valid", err) and hint in err and "\n" not in err


@pytest.mark.parametrize("what", ["truncated", "empty", "garbage"])
def test_bad_resume_checkpoint_says_delete_to_restart(tmp_path, write_config, fp_checkpoint, capsys, what):
    out = _copy_finished_run(fp_checkpoint, tmp_path)
    cfg = write_config()
    (out / "metrics.json").unlink()
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                                         "garbage": b"not a checkpoint at all"}[what])
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"resume checkpoint: {out / 'checkpoint.pt'}" in err
    assert "delete it to restart the run from epoch 0" in err and "\n" not in err
    if what == "truncated":  # ... and the hint is true
        (out / "checkpoint.pt").unlink()
        assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0


@pytest.mark.parametrize("what", ["truncated", "garbage"])
def test_bad_start_checkpoint_names_the_key(tmp_path, write_config, fp_checkpoint, capsys, what):
    bad = tmp_path / "fp.pt"
    data = fp_checkpoint.read_bytes()
    bad.write_bytes(data[:1000] if what == "truncated" else b"\x80\x02garbage")
    cfg = write_config({"start": {"mode": "pretrained", "checkpoint": str(bad)}, "quant": {"weights": "ternary"},
                        "epochs": {"fp": 0, "weights": 1}})
    assert main(["train", str(cfg), "--out", str(tmp_path / "q"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"start.checkpoint: {bad}" in err and "\n" not in err


def test_out_is_a_file(tmp_path, write_config, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    assert main(["train", str(write_config()), "--out", str(f), "--quiet"]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert f.read_text() == "keep me"


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(options) -> dir``: a fresh tmpfs; the test is skipped where mounting is impossible."""
    mounted = []

    def mount(options: str):
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()})")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_out_read_only(mount_tmpfs, write_config, capsys):
    ro = mount_tmpfs("ro,size=1m")  # chmod does not stop root; a read-only mount does
    assert main(["train", str(write_config()), "--out", str(ro / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {ro / 'run'}: cannot write there" in err and "Read-only file system" in err


@pytest.mark.slow
def test_disk_full_during_training(mount_tmpfs, write_config):
    """A real process on a 1 MiB file system: the checkpoint (45 MB) does not fit."""
    small = mount_tmpfs("size=1m")
    out = small / "run"
    res = subprocess.run(_cmd(write_config(), out, "--quiet"), env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1
    assert f"no space left on {out} while writing checkpoint.pt" in res.stderr and "Traceback" not in res.stderr
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 0  # the small files are whole


def test_lock_is_released_while_a_forked_child_still_holds_the_descriptor(tmp_path):
    # DataLoader workers are forked while the lock is held; one still exiting after the run
    # returns must not keep the directory locked against the next job in the same process.
    from qbench.io import RunDirError, RunDirLock

    lock = RunDirLock(tmp_path).__enter__()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # holds the inherited descriptor until the parent says stop
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    try:
        with pytest.raises(RunDirError, match="in use by pid"):
            RunDirLock(tmp_path).__enter__()
        lock.__exit__(None, None, None)
        with RunDirLock(tmp_path):  # the child is alive and still holds the descriptor
            assert os.waitpid(child, os.WNOHANG) == (0, 0)
    finally:
        os.write(write_end, b"x")
        os.close(write_end)
        os.waitpid(child, 0)
