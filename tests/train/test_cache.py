"""The run cache: an unchanged FP run is restored, not retrained; any change of config misses."""

from __future__ import annotations

import json

from qbench.cli import main
from qbench.train import cache

FP = {"data": {"train_size": 16, "test_size": 16, "batch_size": 8}, "quant": {"weights": None},
      "epochs": {"fp": 1, "weights": 0, "activations": 0, "joint": 0}, "start": {"mode": "scratch"}}


def test_unchanged_run_is_restored_changed_run_is_not(tmp_path, write_config, capsys):
    cfg = write_config(FP)
    store = tmp_path / "cache"
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["train", str(cfg), "--out", str(first), "--cache", str(store), "--quiet"]) == 0
    keys = [p.name for p in store.iterdir()]
    assert len(keys) == 1 and (store / keys[0] / "metrics.json").is_file()
    assert main(["train", str(cfg), "--out", str(second), "--cache", str(store)]) == 0
    assert "restored" in capsys.readouterr().out
    for name in ("metrics.json", "predictions.npz", "checkpoint.pt", "config.yaml"):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name
    assert (second / "metrics.json").stat().st_mode & 0o044  # readable by co-workers
    # another seed is another run: trained, and stored under its own key
    other = write_config({**FP, "seed": 1}, name="other.yaml")
    assert main(["train", str(other), "--out", str(tmp_path / "c"), "--cache", str(store)]) == 0
    assert "restored" not in capsys.readouterr().out
    assert len(list(store.iterdir())) == 2
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["status"] == "complete"


def test_key_follows_config_and_code(monkeypatch):
    base = {"seed": 0, "model": {"arch": "resnet18"}}
    key = cache.run_key(base)
    assert key == cache.run_key(dict(base))
    assert key != cache.run_key({**base, "seed": 1})
    monkeypatch.setattr(cache, "code_version", lambda: "another version of the code")
    assert cache.run_key(base) != key
