"""The device a run computes on, one rule for every task."""

from __future__ import annotations

import torch

from qbench.preflight import cuda_problem, require_device


def resolve_device(name: str, mmcv_ops: bool = False, local_rank: int | None = None) -> str:
    """The torch device string of the config's ``device``.

    ``auto`` is CUDA when this process can use it (and, with ``mmcv_ops``, mmcv's CUDA ops,
    which detection needs), else the CPU. An explicit CUDA device must be usable: otherwise the
    job fails here, in seconds, naming the reason (qbench.preflight; exit 2 from ``qbench
    train``).

    Args:
        name: "auto", "cpu", "cuda" or "cuda:N".
        mmcv_ops: the run also needs mmcv's CUDA ops.
        local_rank: the process's GPU on its node; "cuda" becomes ``cuda:<local_rank>``
            (None: left as "cuda").
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() and cuda_problem("cuda", mmcv_ops) is None else "cpu"
    elif name != "cpu":
        require_device(name, mmcv_ops=mmcv_ops)
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    return name
