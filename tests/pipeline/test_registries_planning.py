"""A broken registry (experiments.yaml, claims.yaml) stops the dry run with one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, copy_checkout


@pytest.mark.parametrize("name, old, new, message", [
    ("experiments.yaml", '"table1:ours:w3pm4a32"', '"table1:ourz:w3pm4a32"', "no row 'ourz' in table1"),
    ("claims.yaml", "claims:\n", "claims:\n  w3_lossless: {source: x, statement: y, test: superiority, "
                                 "comparisons: [[alexnet_w2a32, alexnet_w1a32]]}\n",
     "duplicate key 'w3_lossless'"),
    ("claims.yaml", "[alexnet_w3pm4a32, alexnet_w1a32]", "[alexnet_w3pm4a32, alexnet_w3pm4a32]",
     "compares 'alexnet_w3pm4a32' with itself"),
])
def test_broken_registry_stops_the_dry_run(tmp_path, name, old, new, message):
    checkout = copy_checkout(tmp_path / "src")
    path = checkout / "qbench" / "paper" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    work = tmp_path / "work"
    work.mkdir()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"), "-d", str(work),
                          "-n", "--config", "scale=smoke"], capture_output=True, text=True, timeout=300, cwd=work,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(checkout)})
    assert res.returncode == 2, res.stdout[-1000:] + res.stderr[-2000:]
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("invalid registry: ") and message in last, last


def test_duplicate_key_in_a_site_file_stops_the_dry_run(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("cluster:\n  partition: gpu\nseeds: [0]\ncluster:\n  qos: long\n")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "-n", "--config", "scale=smoke", "--configfile", str(site)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last == f"invalid pipeline config: {site}:4: duplicate key 'cluster' (first on line 1); keep one of them"
