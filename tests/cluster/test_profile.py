"""The slurm profile and a site file, planned without a cluster (dry run): resources come from
the scale config, site settings from the site file's `cluster` section, nothing site-specific
from the profile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from slurm_cluster import ROOT

PROFILE = ROOT / "workflows" / "profiles" / "slurm"


def _dry_run(workdir: Path, *configfiles: Path, scale: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n",
           "--profile", str(PROFILE), "--configfile", *map(str, configfiles), "--config", f"scale={scale}",
           "--", "reproduce_tables"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _resources(out: str) -> dict[str, list[dict]]:
    """rule -> the `resources:` of each of its jobs in a dry run."""
    found: dict[str, list[dict]] = {}
    rule = None
    for line in out.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s*resources: (.*)$", line)
        if m and rule:
            found.setdefault(rule, []).append(dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
    return found


def test_profile_names_no_site():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    text = yaml.safe_dump(profile)
    for key in ("slurm_account", "slurm_partition", "runtime", "cpus_per_task", "mem_mb"):
        assert key not in text, key
    assert profile["slurm-status-command"] == "squeue"
    assert profile["retries"] >= 1 and profile["keep-going"] is True


def test_paper_scale_resources_and_site_settings(tmp_path):
    data = tmp_path / "imagenet"
    data.mkdir()
    weights = {arch: tmp_path / f"{arch}.pth" for arch in ("resnet18", "resnet50")}
    for path in weights.values():
        path.write_bytes(b"x")
    vgg16 = tmp_path / "vgg16.pth"  # the SSD's ImageNet backbone, a site path at paper scale
    vgg16.write_bytes(b"x")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "cluster": {"account": "proj42", "partition": "cpu", "gpu_partition": "gpu-a100", "qos": "normal",
                    "gpu_request": "gres", "gpu_model": "a100"},
        "train": {"data": {"root": str(data)}}, "fp_weights": {k: str(v) for k, v in weights.items()},
        "detection": {"phases": {"fp": {"detect": {"backbone_checkpoint": str(vgg16)}}}}}))
    res = _resources(_dry_run(tmp_path, site, scale="paper"))
    from qbench.workflow import plan

    train = plan.merge_scale_file({"scale": "paper"}, ROOT / "workflows" / "config")["resources"]["train"]
    for job in res["train_fp"] + res["train_quant"]:
        assert job["runtime"] == str(train["runtime"]) and job["mem_mb"] == str(train["mem_mb"])
        assert job["cpus_per_task"] == str(train["threads"] * train["gpu"])
        assert job["gres"] == f"gpu:a100:{train['gpu']}" and "gpu" not in job
        assert (job["slurm_account"], job["slurm_partition"], job["qos"]) == ("proj42", "gpu-a100", "normal")
    for rule in ("tables", "figures", "report"):
        (job,) = res[rule]
        assert (job["slurm_account"], job["slurm_partition"]) == ("proj42", "cpu")


def test_example_site_file_leaves_everything_to_the_cluster(tmp_path):
    res = _resources(_dry_run(tmp_path, PROFILE / "site.example.yaml", scale="smoke"))
    for job in res["train_fp"] + res["train_quant"]:
        assert (job["runtime"], job["mem_mb"], job["cpus_per_task"], job["gpu"]) == ("10", "2000", "1", "0")
        assert not {"slurm_account", "slurm_partition", "qos", "gres"} & set(job)
