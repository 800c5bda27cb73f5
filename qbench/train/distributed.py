"""Data parallelism under ``torchrun``: gradient averaging and batch statistics over all processes.

Each process gets a strided share of the same global batch (qbench.data.common.shard). Gradients
are summed over processes and divided by the world size after every backward, which equals the
gradient of the global-batch mean loss when the shares have equal size (training drops the
last partial batch). BatchNorm uses the statistics of the whole global batch (nn.SyncBatchNorm on
GPU, ``CpuSyncBatchNorm`` on CPU where nn.SyncBatchNorm is unsupported), so 2 processes compute
what 1 process computes on the same global batch, up to float summation order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from qbench.run.process import DistInfo


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes that gradients flow through: every process's input contributed to the
    sum each process uses, so the backward pass sums the upstream gradients as well.
    (torch.distributed.nn.functional.all_reduce does this but is deprecated.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all processes (CPU/gloo).

    Same parameters and buffers as nn.BatchNorm1d/2d, so checkpoints are interchangeable.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        count = x.new_tensor([float(x.numel() // c)])
        stats = _AllReduceSum.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c:2 * c] / total - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                # momentum None: the cumulative average, as nn.BatchNorm (BatchNorm re-estimation)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * total / (total - 1), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(model: nn.Module, device_kind: str) -> nn.Module:
    """Make every BatchNorm synchronise its statistics across processes.

    Args:
        model: the model (modified in place where possible).
        device_kind: "cuda" uses nn.SyncBatchNorm, "cpu" uses CpuSyncBatchNorm.
    """
    if device_kind == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            new = CpuSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_batchnorm(child, device_kind)
    return model


def average_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of ``params`` over all processes (one flat all-reduce).

    Args:
        params: parameters that may hold gradients.
        info: process-group facts.
    """
    if info.world <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (metrics)."""
    if info.world <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
