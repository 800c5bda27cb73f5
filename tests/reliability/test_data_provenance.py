"""Data files are part of a run: a resume on other data is refused (naming the file), every
start records what it read, and unusable data is one line and exit 2 before training."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from qbench.cli import main

STEMS = {"train-images-idx3-ubyte": (64, True), "train-labels-idx1-ubyte": (64, False),
         "t10k-images-idx3-ubyte": (32, True), "t10k-labels-idx1-ubyte": (32, False)}


def idx_bytes(n: int, images: bool, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    if images:
        head = bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        return head + rng.integers(0, 256, n * 28 * 28, dtype=np.uint8).tobytes()
    return bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + rng.integers(0, 10, n, dtype=np.uint8).tobytes()


def write_fashion(d, test_n: int = 32, seed: int = 0):
    d.mkdir(parents=True, exist_ok=True)
    for stem, (n, images) in STEMS.items():
        n = test_n if stem.startswith("t10k") else n
        (d / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(n, images, seed)))
    return d


def _fm(write_config, root, **data):
    return write_config({"model": {"num_classes": 10}, "data": {"dataset": "fashion_mnist", "root": str(root),
                                                                 "train_size": 32, "test_size": 16, **data},
                         "epochs": {"fp": 1}})


def _err(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_resume_on_other_data_is_refused_unless_asked(tmp_path, write_config, capsys):
    root = write_fashion(tmp_path / "fm")
    cfg = _fm(write_config, root)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    (out / "metrics.json").unlink()  # as if killed after the last checkpoint
    labels = root / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(32, False, seed=1)))  # replaced between kill and resume
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = _err(capsys)
    assert str(labels) in err and "changed since the run started" in err and "--allow-data-change" in err
    assert not (out / "metrics.json").exists()
    assert main(["train", str(cfg), "--out", str(out), "--quiet", "--allow-data-change"]) == 0
    env = json.loads((out / "env.json").read_text())
    shas = [next(r["sha256"] for r in s["data_files"] if r["path"].endswith("t10k-labels-idx1-ubyte.gz"))
            for s in env["starts"]]
    assert len(shas) == 2 and shas[0] != shas[1]  # every start's data files are kept


def test_qbench_data_without_the_files_is_an_error(monkeypatch, tmp_path):
    from qbench.data import DatasetError, find_fashion_mnist

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("QBENCH_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match=f"QBENCH_DATA={tmp_path / 'empty'}: no Fashion-MNIST idx files"):
        find_fashion_mnist()


def test_empty_test_set_is_refused(tmp_path, write_config, capsys):
    root = write_fashion(tmp_path / "fm", test_n=0)
    assert main(["train", str(_fm(write_config, root)), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "t10k-images-idx3-ubyte.gz: holds 0 images" in _err(capsys)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_damaged_gzip_is_one_line(tmp_path, write_config, capsys):
    root = write_fashion(tmp_path / "fm")
    path = root / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["train", str(_fm(write_config, root)), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert f"{path}: cannot read" in _err(capsys)
