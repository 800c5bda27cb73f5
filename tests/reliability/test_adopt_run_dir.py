"""The one adoption rule of a run directory, shared by the classification trainer, the detection
runner and the FP cache (qbench.io.adopt_run_dir)."""

from __future__ import annotations

import pytest

from qbench import run_files
from qbench.io import RunDirError, adopt_run_dir, write_json, write_yaml

RESOLVED = {"task": "detect", "seed": 0, "optim": {"lr": 1e-05}}


def test_an_empty_or_config_only_directory_is_adopted(tmp_path):
    assert adopt_run_dir(tmp_path, RESOLVED) is None
    write_yaml(tmp_path / run_files.CONFIG, {"anything": 1})  # a run that wrote nothing else yet
    assert adopt_run_dir(tmp_path, RESOLVED) is None


@pytest.mark.parametrize("name", [run_files.CHECKPOINT, run_files.METRICS])
def test_run_files_without_their_config_are_another_runs(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(RunDirError, match=f"holds {name} but no config.yaml.*new --out"):
        adopt_run_dir(tmp_path, RESOLVED)


def test_another_config_is_refused_and_a_finished_run_is_returned(tmp_path):
    write_yaml(tmp_path / run_files.CONFIG, RESOLVED)
    write_json(tmp_path / run_files.METRICS, {"status": "complete", "final": {"hard_map": 40.0}})
    assert adopt_run_dir(tmp_path, RESOLVED)["final"] == {"hard_map": 40.0}
    with pytest.raises(RunDirError, match="holds a run with another config"):
        adopt_run_dir(tmp_path, {**RESOLVED, "seed": 1})
    (tmp_path / run_files.CONFIG).write_text("a: [unclosed\n")
    with pytest.raises(RunDirError, match="damaged: restore config.yaml"):
        adopt_run_dir(tmp_path, RESOLVED)
