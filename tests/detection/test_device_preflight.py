"""The device pre-flight of every training job (qbench.preflight), on a CPU machine by faking
the GPU environment: a job that asked for GPUs and cannot use them exits 2 in seconds with
one line naming the reason, before any data or model is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qbench import preflight
from qbench.preflight import DeviceUnavailable, require_device
from qbench.train.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _fake_gpus(monkeypatch, count: int, cuda_build: str = "12.1") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.version, "cuda", cuda_build)


def test_cpu_and_auto_never_fail(monkeypatch):
    _fake_gpus(monkeypatch, 0)
    require_device("cpu")
    require_device("auto", mmcv_ops=True)


def test_cuda_without_a_visible_gpu_names_cuda_visible_devices(monkeypatch):
    _fake_gpus(monkeypatch, 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceUnavailable, match=r"^device: cuda requested but torch sees no GPU "
                       r"\(CUDA_VISIBLE_DEVICES ''\)$"):
        require_device("cuda")
    assert issubclass(DeviceUnavailable, ConfigError)  # qbench train: exit 2


def test_cpu_only_torch_is_named(monkeypatch):
    _fake_gpus(monkeypatch, 0, cuda_build=None)
    with pytest.raises(DeviceUnavailable, match="this torch has no CUDA support"):
        require_device("cuda:0")


def test_a_torchrun_process_without_its_gpu(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    require_device("cuda")  # GPU 1 of 2
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(DeviceUnavailable, match=r"GPU 3 \(LOCAL_RANK 3\) but only 2 GPU\(s\) are visible"):
        require_device("cuda")
    with pytest.raises(DeviceUnavailable, match="GPU 2"):
        require_device("cuda:2")


def test_detection_needs_mmcv_cuda_ops(monkeypatch):
    _fake_gpus(monkeypatch, 1)
    monkeypatch.setattr(preflight, "mmcv_cuda_ops", lambda device=None: "mmcv 2.1.0 was built without CUDA ops (x)")
    require_device("cuda")  # classification does not need mmcv
    with pytest.raises(DeviceUnavailable, match="^device: cuda requested but mmcv 2.1.0 was built without CUDA ops"):
        require_device("cuda", mmcv_ops=True)
    seen = []
    monkeypatch.setattr(preflight, "mmcv_cuda_ops", lambda device=None: seen.append(device))
    require_device("cuda", mmcv_ops=True)
    assert seen == ["cuda:0"]  # one op is run on the job's own GPU


def test_mmcv_build_is_read_from_its_compiled_extension(monkeypatch, mmdet_stack):
    import mmcv.ops

    monkeypatch.setattr(mmcv.ops, "get_compiling_cuda_version", lambda: "not available")
    assert "was built without CUDA ops" in preflight.mmcv_cuda_ops()
    assert "setup_detection.sh" in preflight.mmcv_cuda_ops()
    monkeypatch.setattr(mmcv.ops, "get_compiling_cuda_version", lambda: "12.1")
    assert preflight.mmcv_cuda_ops() is None
    # a CUDA build whose ops cannot run on the job's GPU (here: no GPU at all) is named too
    assert "mmcv's CUDA ops (built for CUDA 12.1) fail on cuda:0" in preflight.mmcv_cuda_ops("cuda:0")


def test_every_task_resolves_its_device_through_the_preflight(monkeypatch):
    from qbench.run import resolve_device

    _fake_gpus(monkeypatch, 1)
    monkeypatch.setattr(preflight, "mmcv_cuda_ops", lambda device=None: "mmcv was built without CUDA ops")
    # detection (mmcv's ops): auto is the CPU when mmcv cannot run on CUDA, cuda fails naming why
    assert resolve_device("auto", mmcv_ops=True) == "cpu"
    with pytest.raises(DeviceUnavailable, match="mmcv was built without CUDA ops"):
        resolve_device("cuda", mmcv_ops=True)
    # classification needs no mmcv: the same GPU is usable, each process its local one
    assert resolve_device("auto") == "cuda" and resolve_device("cuda", local_rank=0) == "cuda:0"
    monkeypatch.setattr(preflight, "mmcv_cuda_ops", lambda device=None: None)
    assert resolve_device("auto", mmcv_ops=True) == "cuda"
    assert resolve_device("cuda", mmcv_ops=True) == "cuda"
    with pytest.raises(DeviceUnavailable, match="only 1 GPU"):
        resolve_device("cuda:3")


def _train(config: Path, tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "qbench.cli", "train", str(config),
                          "--out", str(tmp_path / "run"), *(a for o in overrides for a in ("--set", o))],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return res, time.perf_counter() - t0


@pytest.mark.parametrize("config", [
    ROOT / "qbench" / "detection" / "configs" / "paper_fp.yaml",
    ROOT / "qbench" / "train" / "configs" / "paper_alexnet_bn_fp.yaml",
], ids=lambda p: p.name)
def test_a_gpu_job_without_gpus_exits_2_in_seconds_with_one_line(config, tmp_path):
    """CUDA_VISIBLE_DEVICES="" hides every GPU: the job fails before reading data (the paper
    configs' data roots do not exist here) or writing its run directory."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    site = [f"detect.backbone_checkpoint={weights}"] if "detection" in config.parts else []
    res, seconds = _train(config, tmp_path, "device=cuda", *site)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbench: error: device: cuda requested but "), res.stderr
    assert seconds < 60
    assert not (tmp_path / "run").exists()


def test_device_detect_script_stops_at_the_preflight_without_gpus(tmp_path):
    """scripts/device_detect.py (step detect of scripts/device_check.sh) reports the pre-flight's
    reason and fails, instead of building an SSD, on a machine without usable GPUs."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_detect.py"), "--device", "cuda",
                          "--out-json", str(tmp_path / "d.json")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 1
    assert "preflight: device: cuda requested but " in res.stdout and "detect FAILED on cuda" in res.stdout
    import json

    assert json.loads((tmp_path / "d.json").read_text())["runs"] == []


def test_device_detect_script_trains_one_ssd_iteration_on_the_cpu(tmp_path, mmdet_stack):
    """The same script's CPU check (what device_check.sh --cpu-dry-run runs): FP and W3(+-4)/A8
    SSD, one step and one prediction each, with torchvision-normalised inputs."""
    import json

    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_detect.py"), "--device", "cpu",
                          "--small", "--images", "2", "--out-json", str(tmp_path / "d.json")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = json.loads((tmp_path / "d.json").read_text())["runs"]
    assert [r["quantized"] for r in runs] == [False, True] and all(r["ok"] for r in runs)
    assert runs[1]["quantized_layers"] > 0 and 0.3 < runs[0]["input_std"] < 3
