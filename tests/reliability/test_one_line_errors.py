"""Inputs that used to end in a traceback: each is now one line naming the file or key, exit 2
(SIGINT: one line, exit 130)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from qbench.cli import main
from qbench.report import collect


def _err(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("setting, message", [
    ("seed=100000000000000", "seed: 100000000000000 is too large"),
    ("data.subset_seed=100000000000000000000", "data.subset_seed:"),
    ("epochs.fp=100000000000", "epochs: 100000000000 epochs in all"),
])
def test_huge_numbers_are_config_errors(tmp_path, write_config, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["train", str(write_config()), "--out", str(out), "--set", setting, "--quiet"]) == 2
    assert message in _err(capsys)
    assert not out.exists()


def _run_dir(tmp_path, arrays: dict | bytes, test_images: int = 4):
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"status": "complete", "final": {"hard_top1": 50.0,
                                                                                "test_images": test_images}}))
    if isinstance(arrays, bytes):
        (d / "predictions.npz").write_bytes(arrays)
    else:
        np.savez(d / "predictions.npz", **arrays)
    return d


GOOD = {k: np.arange(4, dtype=np.int16) for k in ("label", "hard", "soft")}


def _pickled() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, label=np.array([object()], dtype=object), hard=np.zeros(4, np.int16), soft=np.zeros(4, np.int16))
    return buf.getvalue()


def _zip_with_bad_member() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hard.npy", b"not an array")
    return buf.getvalue()


@pytest.mark.parametrize("arrays, message", [
    ({"label": GOOD["label"], "soft": GOOD["soft"]}, "no hard array"),
    (b"PK\x03\x04 truncated", "damaged or not a numpy archive"),
    (b"", "damaged or not a numpy archive"),
    (_pickled(), "holds Python objects"),
    (_zip_with_bad_member(), "predictions.npz"),
    ({**GOOD, "hard": np.zeros(1, np.int16)}, "hard has shape (1,)"),
    ({**GOOD, "soft": np.zeros(4, np.float32)}, "soft has shape (4,) and dtype float32"),
])
def test_damaged_predictions_stop_the_evaluation(tmp_path, capsys, arrays, message):
    d = _run_dir(tmp_path, arrays)
    rc = collect.main(["--run-dir", str(d), "--cell", "resnet18_fp", "--seed", "0", "--out", str(tmp_path / "e.json")])
    assert rc == 2
    line = _err(capsys)
    assert str(d / "predictions.npz") in line and message in line, line
    assert not (tmp_path / "e.json").exists()


def test_good_predictions_pass(tmp_path):
    d = _run_dir(tmp_path, GOOD)
    assert collect.collect(d, "resnet18_fp", 0)["test_images"] == 4


def test_stray_benchmark_files_are_left_out(tmp_path, caplog):
    from qbench.report.latex import stage_times

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tsv").write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\t10\n")
    (tmp_path / "binary.tsv").write_bytes(b"\xff\xfe\x00garbage\x80")
    (tmp_path / "notes.tsv").write_text("name\tvalue\nx\t1\n")
    df = stage_times(tmp_path)
    assert list(df["stage"]) == ["train"] and df["wall_s"].iloc[0] == 1.5
    assert "binary.tsv" in caplog.text and "notes.tsv" in caplog.text


@pytest.mark.slow
def test_sigint_is_one_line_and_exit_130(tmp_path, write_config):
    cfg = write_config({"data": {"train_size": 256, "test_size": 32}, "epochs": {"fp": 4}})
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    # a job started in the background of a non-interactive shell (as CI may start this suite)
    # inherits SIGINT ignored, and Python keeps it so: the child gets the default back
    proc = subprocess.Popen([sys.executable, "-m", "qbench", "train", str(cfg), "--out", str(out), "--quiet",
                             "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        log = out / "train.log"
        if log.is_file() and "epoch 1/4" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["qbench: interrupted; rerun the same command to resume from the last checkpoint"]
    res = subprocess.run([sys.executable, "-m", "qbench", "train", str(cfg), "--out", str(out), "--quiet",
                          "--threads", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resumed from" in (out / "train.log").read_text()
