"""The one atomic writer and the one data-only loader (qbench.io)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qbench.io import (DiskFullError, FileFormatError, RunLog, atomic_directory, load_state_dict, load_torch,
                       read_yaml, remove_stale_tmp, run_environment, save_torch, write_bytes, write_json)

MARKER_SCRIPT = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('ran')"


class _RunsCommand:
    """Unpickling this calls ``subprocess.call`` (what an attacker would put in a checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, ([sys.executable, "-c", MARKER_SCRIPT, str(self.marker)],))


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    sd = {"conv1.weight": torch.ones(2, 1, 3, 3), "fc.weight": torch.ones(3, 2)}
    torch.save({"model": sd, "epoch": 1, "extra": _RunsCommand(marker)}, path)
    return path


def test_crafted_pickle_is_refused_everywhere_and_runs_nothing(tmp_path):
    from qbench.models import build_model, load_pretrained
    from qbench.report.figures import _state_dict

    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(tmp_path / "checkpoint.pt", marker)
    # the figures rule used to retry with weights_only=False and run the command
    with pytest.raises(FileFormatError, match="checkpoint.pt: holds Python objects .* refused"):
        _state_dict(str(ckpt))
    with pytest.raises(FileFormatError, match="start.checkpoint: .*refused"):
        load_pretrained(build_model("resnet18", 4, 1), ckpt)
    with pytest.raises(FileFormatError, match="refused"):
        load_torch(ckpt)
    assert not marker.exists()


def test_figures_command_refuses_crafted_checkpoint(tmp_path):
    """The figures rule as a process: exit 2 naming the file, the command never runs."""
    from qbench.paper import cells_for_figure

    marker = tmp_path / "marker"
    run = tmp_path / "runs" / "fp" / "s0"
    run.mkdir(parents=True)
    _crafted_checkpoint(run / "checkpoint.pt", marker)
    cell = cells_for_figure("fig3")[0].id
    (tmp_path / "plan.json").write_text('{"scale": "smoke", "cells": []}')
    (tmp_path / "runs.csv").write_text(f"cell,seed,run_dir\n{cell},0,{run}\n")
    (tmp_path / "cells.csv").write_text("")
    res = subprocess.run([sys.executable, "-m", "qbench.report.figures", "--plan", str(tmp_path / "plan.json"),
                          "--runs", str(tmp_path / "runs.csv"), "--cells", str(tmp_path / "cells.csv"),
                          "--outdir", str(tmp_path / "fig")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 2, res.stderr[-2000:]
    assert "checkpoint.pt: holds Python objects" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_outputs_get_ordinary_file_modes(tmp_path):
    """mkstemp makes 0600; shared results must be readable (0666 minus the umask)."""
    from qbench.io import save_figure, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "table.md", "x")
        write_json(tmp_path / "a.json", {"a": 1})
        save_torch(tmp_path / "c.pt", {"w": torch.ones(1)})
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure()
        save_figure(fig, tmp_path / "f.png")
        plt.close(fig)
        os.umask(0o077)
        write_bytes(tmp_path / "private.bin", b"x")
    finally:
        os.umask(old)
    for name in ("table.md", "a.json", "c.pt", "f.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (b"\x00garbage that is not a torch file" * 10, "not a"),
    ("truncated", "truncated or not a torch file"),
])
def test_bad_torch_files_name_the_file_and_the_fix(tmp_path, content, problem):
    path = tmp_path / "checkpoint.pt"
    if content == "truncated":
        torch.save({"model": {"w": torch.randn(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_bytes(content)
    with pytest.raises(FileFormatError, match=f"resume checkpoint: {path}: {problem}.*delete it") as info:
        load_torch(path, "resume checkpoint", "delete it to restart")
    assert "\n" not in str(info.value)


def test_state_dict_files(tmp_path):
    sd = {"a": torch.ones(2)}
    torch.save(sd, tmp_path / "bare.pt")
    torch.save({"state_dict": sd, "meta": 1}, tmp_path / "wrapped.pt")
    torch.save({"model": {"a": "text"}}, tmp_path / "bad.pt")
    assert torch.equal(load_state_dict(tmp_path / "bare.pt")["a"], sd["a"])
    assert set(load_state_dict(tmp_path / "wrapped.pt")) == {"a"}
    with pytest.raises(FileFormatError, match="k: .*bad.pt: not a state dict"):
        load_state_dict(tmp_path / "bad.pt", "k")
    # a start must be full precision: quantized layers' keys (classification or detection) are refused
    torch.save({"format": "any", "model": {"conv.parametrizations.weight.original": torch.ones(1)}},
               tmp_path / "quantized.pt")
    assert set(load_state_dict(tmp_path / "quantized.pt")) == {"conv.parametrizations.weight.original"}
    with pytest.raises(FileFormatError, match="start.checkpoint: .*quantized.pt: holds a quantized model"):
        load_state_dict(tmp_path / "quantized.pt", "start.checkpoint", full_precision=True)


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "set"
    with pytest.raises(RuntimeError):
        with atomic_directory(dest) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(dest) as tmp:
        (tmp / "a").write_text("1")
        assert not dest.exists()
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    # a second builder of the same directory keeps the first one's result
    with atomic_directory(dest) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_run_environment_keeps_starts_and_names_packages(tmp_path):
    env_path = tmp_path / "env.json"
    first = run_environment(env_path, "cpu", 3, 1, resumed=False, data_files=[{"path": "x"}],
                            packages=("numpy", "no-such-package-qbench"))
    assert first["seed"] == 3 and first["device"] == "cpu" and first["world_size"] == 1
    assert first["no-such-package-qbench"] is None and first["numpy"] is not None
    assert first["data_files"] == [{"path": "x"}] and len(first["starts"]) == 1
    write_json(env_path, first)
    second = run_environment(env_path, "cpu", 3, 2, resumed=True)
    assert [s["world_size"] for s in second["starts"]] == [1, 2] and "data_files" not in second


def test_run_log_appends_lines_and_is_quiet_when_asked(tmp_path, capsys):
    log = RunLog(tmp_path / "train.log", quiet=True)
    log("epoch 1")
    log("epoch 2")
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["epoch 1", "epoch 2"]
    assert capsys.readouterr().out == ""
    RunLog(None, quiet=False)("to the console only")
    assert capsys.readouterr().out.endswith(" to the console only\n")


def test_stale_tmp_files_are_recognised(tmp_path):
    for name in (".checkpoint.pt.k2j3h.tmp", ".metrics.json.abc.tmp", ".checkpoint.pt.tmp-1234", "keep.tmp",
                 "checkpoint.pt"):
        (tmp_path / name).write_text("x")
    removed = sorted(p.name for p in remove_stale_tmp(tmp_path))
    assert removed == [".checkpoint.pt.k2j3h.tmp", ".checkpoint.pt.tmp-1234", ".metrics.json.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "keep.tmp"]


def test_yaml_reader_names_file_and_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(FileFormatError, match=rf"^{p}:\d+: not valid YAML"):
        read_yaml(p)
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(FileFormatError, match="not a UTF-8 text file"):
        read_yaml(p)
    p.write_text("lr: 1e-3\nwd: 5E-4\nn: 1_000\ns: '1e-3'\n")
    assert read_yaml(p) == {"lr": 0.001, "wd": 0.0005, "n": 1000, "s": "1e-3"}


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount rights; skipped where mounting is impossible)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({res.stderr.decode().strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_the_old_file_and_says_so(small_tmpfs):
    target = small_tmpfs / "checkpoint.pt"
    save_torch(target, {"w": torch.zeros(10)})
    before = target.read_bytes()
    with pytest.raises(DiskFullError, match=f"no space left on {small_tmpfs}"):
        save_torch(target, {"w": torch.zeros(1_000_000)})  # 4 MB into 1 MiB
    assert target.read_bytes() == before
    assert [p.name for p in small_tmpfs.iterdir()] == ["checkpoint.pt"]  # no temporary left over
