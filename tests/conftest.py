"""Shared fixtures: writing run configs, a small full-precision checkpoint to start from, one
local smoke-scale pipeline run, and a one-node SLURM cluster (tests/cluster)."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

SMOKE = {
    "task": "classify", "seed": 0, "device": "cpu",
    "model": {"arch": "resnet18", "num_classes": 4, "in_channels": 1},
    "data": {"dataset": "fake", "image_size": 32, "train_size": 64, "test_size": 32, "batch_size": 16},
    "start": {"mode": "scratch", "checkpoint": None},
    "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001, "milestones": [1], "gamma": 0.1,
              "grad_clip": 5.0},
    "epochs": {"fp": 1},
}


def merge(base: dict, update: dict) -> dict:
    """Nested dict update (returns a new dict)."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


PAPER_TEXT_NAME = "quantization-networks-cvpr2019.txt"


@pytest.fixture(scope="session")
def paper_text() -> str:
    """The paper's text: ``$QBENCH_PAPER_TEXT``, else ``shared/paper/`` beside the checkout (where
    CI lays it) or inside it; the test is skipped where none is found."""
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ["QBENCH_PAPER_TEXT"])] if os.environ.get("QBENCH_PAPER_TEXT") else []
    candidates += [root.parent / "shared" / "paper" / PAPER_TEXT_NAME, root / "shared" / "paper" / PAPER_TEXT_NAME]
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    pytest.skip(f"the paper's text ({PAPER_TEXT_NAME}) is not in shared/paper/ beside the checkout; "
                "set QBENCH_PAPER_TEXT")


@pytest.fixture
def write_config(tmp_path):
    """``write_config(update, name="config.yaml") -> path`` of SMOKE updated with ``update``."""

    def write(update: dict | None = None, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merge(SMOKE, update or {})))
        return path

    return write


@pytest.fixture(scope="session")
def fp_checkpoint(tmp_path_factory) -> Path:
    """checkpoint.pt of a 1-epoch smoke FP ResNet-18 (4 classes, 1 channel, fake data)."""
    from qbench.train import Config, run

    out = tmp_path_factory.mktemp("fp_run")
    run(Config.from_dict(SMOKE), out, quiet=True)
    return out / "checkpoint.pt"


@pytest.fixture(scope="session")
def tiny_imagenet(tmp_path_factory) -> Path:
    """An ImageNet-layout tree: 3 classes, 8 train and 4 val JPEGs each, 40-60 px, random content."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for c, wnid in enumerate(("n01440764", "n01443537", "n01484850")):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(40, 61, size=2)
                img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                img[..., c] = 255  # class colour, so the classes are learnable
                Image.fromarray(img).save(d / f"{wnid}_{i}.JPEG", format="JPEG")
    return root


@pytest.fixture
def smoke() -> dict:
    """A copy of the smoke config dict (FP ResNet-18, fake data, 1 epoch)."""
    return copy.deepcopy(SMOKE)


@pytest.fixture(name="merge")
def merge_fixture():
    """The nested-dict ``merge(base, update)`` helper."""
    return merge


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> tuple[Path, float]:
    """(working directory, wall seconds) of one local `reproduce_tables` at smoke scale with the
    real trainer, shared by the tests that compare against it (the smoke, resume and SLURM
    end-to-end tests)."""
    root = Path(__file__).resolve().parents[1]
    wd = tmp_path_factory.mktemp("smoke_run")
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(wd),
                          "--cores", "all", "--config", "scale=smoke", "--", "reproduce_tables"],
                         capture_output=True, text=True, timeout=1500, cwd=wd)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return wd, time.time() - t0


_SLURM_LOCAL = Path(__file__).resolve().parents[1] / "scripts" / "slurm_local.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def slurm():
    """Start a fresh cluster (installing Debian's SLURM if needed), yield the environment its
    clients need, stop what was started."""
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (CI runs as root)")
    # munged runs as user munge and must reach its files: not under pytest's private tmp dir
    state = Path(tempfile.mkdtemp(prefix="qbench-slurm-", dir="/tmp"))
    state.chmod(0o755)
    env = {**os.environ, "QB_SLURM_DIR": str(state), "QB_SLURM_CTLD_PORT": str(_free_port()),
           "QB_SLURM_SLURMD_PORT": str(_free_port())}
    res = subprocess.run(["bash", str(_SLURM_LOCAL), "start"], env=env, capture_output=True, text=True,
                         timeout=900)
    if res.returncode != 0:
        subprocess.run(["bash", str(_SLURM_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"slurm_local.sh start failed:\n{res.stdout}\n{res.stderr}")
    env["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield env
    finally:
        subprocess.run(["bash", str(_SLURM_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
