"""What autograd keeps for backward: the measure behind "saved bytes" in the benchmark and tests."""

from __future__ import annotations

from typing import Any, Callable

import torch


def saved_storages(fn: Callable[[], Any]) -> tuple[Any, dict[int, int]]:
    """Run ``fn`` and record the storages autograd saves for its backward.

    Args:
        fn: builds the graph to inspect (e.g. ``lambda: soft_quantize(x, ...)``).

    Returns:
        ``(fn(), {storage data pointer: bytes})``; a storage saved twice counts once.
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, seen
