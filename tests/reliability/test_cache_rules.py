"""The run cache obeys the run-directory rules (lock, adoption check, no overwrite of another
config's run), its entries appear whole or not at all, and the temp-file sweep removes only the
project's own temporary files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qbench.cli import main
from qbench.io import RunDirLock, remove_stale_tmp, write_bytes
from qbench.train import cache

FP = {"data": {"train_size": 16, "test_size": 16, "batch_size": 8}, "epochs": {"fp": 1}}


def _err(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def cached(tmp_path, write_config):
    """A config A stored in a cache, and a finished run of another config B in dB."""
    a = write_config(FP, name="a.yaml")
    b = write_config({**FP, "seed": 1}, name="b.yaml")
    store = tmp_path / "cache"
    assert main(["train", str(a), "--out", str(tmp_path / "dA"), "--cache", str(store), "--quiet"]) == 0
    assert main(["train", str(b), "--out", str(tmp_path / "dB"), "--quiet"]) == 0
    return a, b, store


def test_restore_refuses_another_configs_finished_run(tmp_path, cached, capsys):
    a, _, store = cached
    before = (tmp_path / "dB" / "metrics.json").read_bytes()
    assert main(["train", str(a), "--out", str(tmp_path / "dB"), "--cache", str(store), "--quiet"]) == 2
    assert "holds a run with another config" in _err(capsys)
    assert (tmp_path / "dB" / "metrics.json").read_bytes() == before


def test_restore_into_a_run_dir_another_job_holds_is_refused(tmp_path, cached, capsys):
    a, _, store = cached
    target = tmp_path / "dC"
    with RunDirLock(target):  # a job writing dC
        assert main(["train", str(a), "--out", str(target), "--cache", str(store), "--quiet"]) == 2
    assert "in use by pid" in _err(capsys)
    assert not (target / "metrics.json").exists()


def test_cache_at_a_file_and_out_a_file_on_a_hit_are_one_line(tmp_path, cached, capsys):
    a, _, store = cached
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", str(a), "--out", str(tmp_path / "dD"), "--cache", str(afile), "--quiet"]) == 2
    assert _err(capsys).startswith(f"qbench: error: --cache {afile}: exists and is not a directory")
    assert main(["train", str(a), "--out", str(afile), "--cache", str(store), "--quiet"]) == 2
    assert "exists and is not a directory" in _err(capsys)


def test_a_complete_entry_is_never_removed_by_a_second_writer(tmp_path, cached, monkeypatch):
    from pathlib import Path

    a, _, store = cached
    (entry,) = list(store.iterdir())
    before = {p.name: p.read_bytes() for p in entry.iterdir()}
    # the second writer looked before the first one's rename: it saw no complete entry once
    real, looked = Path.is_file, []

    def is_file(self):
        if self == entry / "metrics.json" and not looked:
            looked.append(self)
            return False
        return real(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    cache.store(store, entry.name, tmp_path / "dB")
    monkeypatch.undo()
    assert looked
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == before
    assert [p.name for p in store.iterdir()] == [entry.name]  # no temporary left behind


def test_sweep_removes_only_the_projects_temporaries(tmp_path):
    write_bytes(tmp_path / "metrics.json", b"{}")
    ours = [".checkpoint.pt.k2j3h.qbench.tmp", ".checkpoint.pt.k2j3h.tmp", ".metrics.json.tmp-1234"]
    theirs = [".notes.txt.tmp", ".editor.tmp", ".foo.abc.tmp", "keep.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    removed = sorted(p.name for p in remove_stale_tmp(tmp_path))
    assert removed == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + ["metrics.json"])
