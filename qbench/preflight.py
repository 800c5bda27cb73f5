"""Device pre-flight of every training job (classification and detection).

A job that asks for GPUs must find them before it loads data or builds a model: on a cluster
a job that silently falls back to the CPU holds its GPUs for the whole time limit. Both
trainers call ``require_device`` first; it raises ``DeviceUnavailable`` (a ``ConfigError``,
so ``qbench train`` exits 2 with one line naming the reason) when

- ``device`` is ``cuda``/``cuda:N`` and torch sees no GPU (no driver, a CPU-only torch, or
  ``CUDA_VISIBLE_DEVICES`` hiding every GPU);
- under torchrun, the process's ``LOCAL_RANK`` (or the ``cuda:N`` index) has no GPU;
- a detection job asks for CUDA and the installed mmcv was built without CUDA ops (SSD's NMS
  and friends are mmcv ops; ``scripts/setup_detection.sh --cuda`` builds them).

``device: auto`` never fails here: it means "CUDA if it is usable, else the CPU".
"""

from __future__ import annotations

import os

import torch

from qbench.errors import ConfigError

SETUP_HINT = "build mmcv with CUDA ops: QBENCH_MMCV_CUDA=1 scripts/setup_detection.sh (docs/cluster.md)"


class DeviceUnavailable(ConfigError):
    """The job asked for a device this process cannot use; the message says why."""


def mmcv_cuda_ops(device: str | None = None) -> str | None:
    """Why the installed mmcv cannot run its ops on CUDA, or None when it can.

    Reads the CUDA version mmcv's compiled extension was built against (no GPU needed):
    ``"not available"`` means a CPU-only build. With ``device``, also runs one NMS there (a
    build for other GPU architectures fails only when an op runs).

    Args:
        device: a CUDA device to run one op on; None: only read the build.
    """
    try:
        from mmcv.ops import get_compiling_cuda_version
    except Exception as e:  # not installed, or its compiled ops do not load
        return f"mmcv's compiled ops do not import ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    built = str(get_compiling_cuda_version())
    if built in ("", "not available"):
        import mmcv

        return f"mmcv {mmcv.__version__} was built without CUDA ops ({SETUP_HINT})"
    if device is not None:
        try:
            from mmcv.ops import nms

            box = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=device)
            nms(box, torch.ones(1, device=device), 0.5)
        except Exception as e:
            return (f"mmcv's CUDA ops (built for CUDA {built}) fail on {device}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
    return None


def _visible() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "unset" if value is None else repr(value)


def cuda_problem(device: str, mmcv_ops: bool = False) -> str | None:
    """Why ``device`` (a CUDA device) is unusable in this process, or None.

    Args:
        device: ``cuda`` or ``cuda:N``.
        mmcv_ops: the job also needs mmcv's CUDA ops (detection).
    """
    if not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else \
            f"torch sees no GPU (CUDA_VISIBLE_DEVICES {_visible()})"
        return f"device: {device} requested but {why}"
    count = torch.cuda.device_count()
    index = int(device.split(":", 1)[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= count:
        return (f"device: {device} requested for GPU {index} (LOCAL_RANK {os.environ.get('LOCAL_RANK', 'unset')}) "
                f"but only {count} GPU(s) are visible (CUDA_VISIBLE_DEVICES {_visible()})")
    if mmcv_ops:
        problem = mmcv_cuda_ops(f"cuda:{index}")
        if problem:
            return f"device: {device} requested but {problem}"
    return None


def require_device(device: str, mmcv_ops: bool = False) -> None:
    """Fail in seconds, with the reason, when a job asked for GPUs it cannot use.

    Args:
        device: the config's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        mmcv_ops: the job also needs mmcv's CUDA ops (detection).

    Raises:
        DeviceUnavailable: naming the reason in one line.
    """
    if not device.startswith("cuda"):
        return
    problem = cuda_problem(device, mmcv_ops)
    if problem:
        raise DeviceUnavailable(problem)


__all__ = ["DeviceUnavailable", "cuda_problem", "mmcv_cuda_ops", "require_device"]
