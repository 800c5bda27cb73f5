"""Config text and paths are data in every job's shell command (docs/reliability.md, "No shell
command built from config text"): a checkout and a working directory at paths with a space, an
apostrophe and non-ASCII letters, and config values that carry ``$(...)``, run the jobs without
running anything they hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FAKE_TRAIN, ROOT, copy_checkout, write_yaml

from qbench.workflow import plan

HOSTILE = "$(touch PWN)"
RULES = sorted((ROOT / "workflows" / "rules").glob("*.smk"))


def run_snakemake(checkout: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir)


def pwned(*roots: Path) -> list[Path]:
    return [p for r in roots for p in r.rglob("PWN")]


def test_odd_checkout_path_and_hostile_values_run_nothing(tmp_path):
    checkout = copy_checkout(tmp_path / "src a b" / "it's" / "qbënch")
    work = tmp_path / "wörk d'ir"
    work.mkdir()
    root = tmp_path / f"d'{HOSTILE}'"  # data.root reaches prepare_data's --spec
    root.mkdir()
    cache = tmp_path / f"c'{HOSTILE}'"  # fp_cache reaches the train rule
    cfg = write_yaml(work / "site.yaml", {
        "train_command": f"{sys.executable} {FAKE_TRAIN}", "cells": {"only": ["resnet18_fp"]},
        "seeds": [0], "fp_seeds": [0], "fp_cache": str(cache), "train": {"data": {"root": str(root)}}})
    res = run_snakemake(checkout, work, "results/smoke/eval/resnet18_fp_s0.json", "--cores", "1",
                        "--config", "scale=smoke", "--configfile", str(cfg))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not pwned(tmp_path, Path.cwd()), "a config value ran as shell code"
    assert cache.is_dir(), "the --cache argument did not arrive as one word"
    spec = (work / "results" / "smoke" / "data").glob("*.json")
    assert any(str(root) in p.read_text() for p in spec)


@pytest.mark.parametrize("extra, message", [
    (f"--hint=nomultithread {HOSTILE}", "is not a long sbatch option"),
    ("--hint=nomultithread;touch PWN", "is not a long sbatch option"),
    ("--constraint=ib", "use 'cluster.constraint'"),
    ("--qos=long", "use 'cluster.qos'"),
])
def test_cluster_extra_is_checked_before_any_job(tmp_path, extra, message):
    site = write_yaml(tmp_path / "site.yaml", {"cluster": {"extra": extra}})
    res = run_snakemake(ROOT, tmp_path, "-n", "--config", "scale=smoke", "--configfile", str(site))
    assert res.returncode == 2, res.stderr[-2000:]
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert err[-1].startswith("invalid pipeline config: config key 'cluster.extra'") and message in err[-1]
    assert not pwned(tmp_path)


def test_every_sbatch_option_the_plugin_refuses_is_refused_here():
    validation = pytest.importorskip("snakemake_executor_plugin_slurm.validation")
    for pattern, what in validation.get_forbidden_slurm_options().items():
        long = re.match(r"--([a-z-]+)", pattern).group(1)
        with pytest.raises(plan.PipelineConfigError, match="set by the SLURM executor plugin"):
            plan.check_sbatch_extra(f"--{long}=x" if "[=" in pattern else f"--{long}")


def test_constraint_is_the_plugins_own_resource(tmp_path):
    site = write_yaml(tmp_path / "site.yaml", {"cluster": {"constraint": "a100&ib", "extra": "--hint=nomultithread"}})
    res = run_snakemake(ROOT, tmp_path, "results/smoke/data/fake_32px_n64.json", "-n", "-p",
                        "--config", "scale=smoke", "--configfile", str(site))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "constraint=a100&ib" in res.stdout and "slurm_extra=--hint=nomultithread" in res.stdout


def test_every_shell_value_is_quoted():
    """Each {placeholder} of every rule's shell command carries :q, except the job's threads."""
    for path in RULES:
        text = path.read_text()
        for block in re.findall(r"shell:\n((?:\s+f?\".*\"\n)+)", text):
            for field in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", block):
                if field.startswith(("TRAIN_ENV",)) or field == "threads":
                    continue
                assert field.endswith(":q"), f"{path.name}: {{{field}}} reaches the shell unquoted"


paths = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(checkout=paths, value=paths)
def test_paths_reach_the_job_as_one_word(checkout, value):
    """The PYTHONPATH prefix and a quoted value, formatted as snakemake formats a job's command,
    give the shell exactly the strings they started from."""
    from snakemake.utils import format as sm_format

    template = plan.pythonpath_prefix(checkout) + "printf '%s\\0' \"$PYTHONPATH\" {params.x:q} {input:q}"

    class NS:
        x = value

    cmd = sm_format(template, params=NS, input=[value, checkout])
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1] == [checkout, value, value, checkout]
