"""The process group of a run under torchrun, or none: one rule for every task."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Process-group facts of this process.

    Args:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this node (selects the GPU).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> DistInfo:
    """What torchrun's environment says this process is, before joining any group."""
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def join_process_group(device: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1), or run alone.

    Args:
        device: the run's device ("cuda..." joins with nccl, anything else with gloo).
    """
    env = torchrun_env()
    if env.world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), env.local_rank)


def leave_process_group(info: DistInfo) -> None:
    """Leave the process group (if one was joined)."""
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
