"""Batching shared by all datasets: one global batch order, split across processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch


class DatasetError(RuntimeError):
    """A dataset is missing or malformed; the message names the path and how to get it."""


def stratified_subset(labels: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a deterministic class-stratified subset.

    Each class gets ``size * class_count / N`` samples (largest remainders get the leftovers,
    ties broken by class id); within a class the samples are a seeded random choice.

    Args:
        labels: 1-D integer class labels of the whole split.
        size: subset size; None (or >= N) keeps everything.
        seed: subset seed.

    Returns:
        Sorted 1-D long tensor of indices.
    """
    n = labels.numel()
    if size is None or size >= n:
        return torch.arange(n)
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * size / n
    take = exact.floor().long()
    remainder = size - int(take.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - take[i]).item(), i))
    for i in order[:remainder]:
        take[i] += 1
    g = torch.Generator().manual_seed(int(seed))
    chosen = []
    for c, k in zip(classes.tolist(), take.tolist()):
        idx = torch.nonzero(labels == c).flatten()
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    return torch.sort(torch.cat(chosen)).values


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch), so a resumed run replays the same order."""
    # modulo int64: the same seeds as before for every seed the product fits
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))


def global_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool) -> list[torch.Tensor]:
    """The epoch's global batches (lists of sample indices), identical for every world size."""
    perm = torch.randperm(n, generator=epoch_generator(seed, epoch))
    stop = (n // batch_size) * batch_size if drop_last else n
    return [perm[i:i + batch_size] for i in range(0, stop, batch_size)]


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This process's share of a global batch (strided so shares differ by at most one)."""
    return indices[rank::world]


@dataclass
class DataBundle:
    """Train/test data of a run, independent of where it comes from.

    Args:
        name: dataset name.
        num_classes: classes in the labels.
        num_train: training samples (after subsetting).
        num_test: test samples (after subsetting).
        train_batches: ``(epoch, batch_size, seed, rank, world) -> iterator of (x, y)``; the
            augmented local shards of the epoch's global batches (last partial batch dropped).
        test_batches: ``(batch_size, rank, world) -> iterator of (x, y)``; un-augmented.
        calib_batches: ``(batch_size, seed) -> iterator of x``; un-augmented training images in
            a seeded order, for activation calibration.
        files: provenance of what was read (path, size, sha256), recorded in env.json and
            metrics.json; empty for generated data.
    """

    name: str
    num_classes: int
    num_train: int
    num_test: int
    train_batches: Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]
    test_batches: Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]
    calib_batches: Callable[..., Iterator[torch.Tensor]]
    files: list[dict] = field(default_factory=list)


def tensor_bundle(name: str, num_classes: int, x_train: torch.Tensor, y_train: torch.Tensor,
                  x_test: torch.Tensor, y_test: torch.Tensor, in_channels: int, flip: bool) -> DataBundle:
    """A DataBundle over in-memory normalised tensors (N, C, H, W) with C in {1, in_channels}.

    Args:
        name: dataset name.
        num_classes: number of classes.
        x_train: training images.
        y_train: training labels.
        x_test: test images.
        y_test: test labels.
        in_channels: channels the model wants; 1-channel data is replicated (a view, no copy).
        flip: random horizontal flips for training (the paper's augmentation).
    """

    def channels(x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, in_channels, -1, -1) if x.shape[1] != in_channels else x

    def train_batches(epoch: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        # Flip decisions are drawn per sample (not per shard) so every world size sees the same.
        flips = torch.rand(x_train.shape[0], generator=epoch_generator(seed + 7919, epoch)) < 0.5
        for idx in global_batches(x_train.shape[0], batch_size, seed, epoch, drop_last=True):
            idx = shard(idx, rank, world)
            x = x_train[idx]
            if flip:
                f = flips[idx]
                x = torch.where(f[:, None, None, None], x.flip(-1), x)
            yield channels(x), y_train[idx]

    def test_batches(batch_size: int, rank: int = 0, world: int = 1):
        idx_all = shard(torch.arange(x_test.shape[0]), rank, world)
        for i in range(0, idx_all.numel(), batch_size):
            idx = idx_all[i:i + batch_size]
            yield channels(x_test[idx]), y_test[idx]

    def calib_batches(batch_size: int, seed: int):
        perm = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(int(seed)))
        for i in range(0, perm.numel(), batch_size):
            yield channels(x_train[perm[i:i + batch_size]])

    if x_train.shape[0] != y_train.shape[0] or x_test.shape[0] != y_test.shape[0]:
        raise ValueError("images and labels differ in length")
    return DataBundle(name, num_classes, x_train.shape[0], x_test.shape[0],
                      train_batches, test_batches, calib_batches)
