"""scripts/setup_detection.sh picks a CPU-only or a CUDA mmcv build (faked: a stand-in torch and
nvcc, and a cached wheel so nothing is built or installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "setup_detection.sh"


def _fake_venv(tmp_path: Path, torch_cuda: str | None) -> Path:
    """A venv whose python sees a stand-in torch (version 2.9.9, CUDA ``torch_cuda``)."""
    fake = tmp_path / "fake_site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        f"__version__ = '2.9.9'\nclass version:\n    cuda = {torch_cuda!r}\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(f"#!/bin/sh\nPYTHONPATH={fake.parent} exec python3 \"$@\"\n")
    py.chmod(0o755)
    return venv


def _run(tmp_path: Path, venv: Path, *args: str, nvcc: bool = False, **env) -> subprocess.CompletedProcess:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if nvcc:
        (bindir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.1, V12.1.105'\n")
        (bindir / "nvcc").chmod(0o755)
    path = f"{bindir}:/usr/bin:/bin"
    full_env = {"PATH": path, "HOME": str(tmp_path), "QBENCH_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(["bash", str(SCRIPT), str(venv), *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


def _cached_wheel(tmp_path: Path, variant: str) -> Path:
    import sys

    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    d = tmp_path / "cache" / "wheels" / "mmcv-2.1.0" / f"torch-2.9.9-{tag}-{variant}"
    d.mkdir(parents=True)
    (d / f"mmcv-2.1.0-{tag}-{tag}-linux_x86_64.whl").write_bytes(b"")
    return d


@pytest.fixture(autouse=True)
def _python3_is_the_interpreter():
    if subprocess.run(["sh", "-c", "command -v python3"], capture_output=True).returncode:
        pytest.skip("python3 not on PATH")


def test_default_is_the_cpu_build(tmp_path):
    venv = _fake_venv(tmp_path, "12.1")
    wheels = _cached_wheel(tmp_path, "cpu")
    res = _run(tmp_path, venv, "--wheel-only", nvcc=True)
    assert res.returncode == 0, res.stderr
    assert f"wheel ready in {wheels}" in res.stdout and "CUDA ops" not in res.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cuda_build_uses_its_own_wheel_directory(tmp_path, how):
    venv = _fake_venv(tmp_path, "12.1")
    wheels = _cached_wheel(tmp_path, "cu121")
    args, env = (["--wheel-only", "--cuda"], {}) if how == "flag" else (["--wheel-only"], {"QBENCH_MMCV_CUDA": "1"})
    res = _run(tmp_path, venv, *args, nvcc=True, **env)
    assert res.returncode == 0, res.stderr
    assert "CUDA ops: torch built for CUDA 12.1" in res.stdout and "release 12.1" in res.stdout
    assert f"wheel ready in {wheels}" in res.stdout


def test_cuda_build_without_nvcc_or_cuda_torch_fails_naming_why(tmp_path):
    venv = _fake_venv(tmp_path, "12.1")
    res = _run(tmp_path, venv, "--wheel-only", "--cuda")
    assert res.returncode == 1 and "--cuda: nvcc not found" in res.stderr
    cpu_torch = _fake_venv(tmp_path / "cpu", None)
    res = _run(tmp_path, cpu_torch, "--wheel-only", "--cuda", nvcc=True)
    assert res.returncode == 1 and "has no CUDA support" in res.stderr
    res = _run(tmp_path, venv, "--bogus")
    assert res.returncode == 2 and "unknown option --bogus" in res.stderr
