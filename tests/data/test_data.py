"""Datasets: idx parsing, stratified subsets, batching across processes, ImageNet layout, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from qbench.data import DatasetError, build_data, find_fashion_mnist, read_idx, stratified_subset
from qbench.data.fashion_mnist import DEBIAN_DIR, FILES


def _write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def fmnist_dir(tmp_path) -> Path:
    """A tiny Fashion-MNIST in idx format: 100 train / 50 test images, 10 classes."""
    rng = np.random.default_rng(0)
    d = tmp_path / "fmnist"
    d.mkdir()
    for split, n in (("train", 100), ("test", 50)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28))
        images[:, 0, 0] = labels * 20  # a recognisable pixel to check image/label pairing
        _write_idx(d / FILES[f"{split}_images"], images, gz=(split == "train"))
        _write_idx(d / FILES[f"{split}_labels"], labels, gz=(split == "train"))
    return d


def test_stratified_subset_is_deterministic_and_balanced():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    a = stratified_subset(labels, 100, seed=3)
    assert torch.equal(a, stratified_subset(labels, 100, seed=3))
    assert not torch.equal(a, stratified_subset(labels, 100, seed=4))
    assert a.numel() == 100 and torch.equal(a, a.sort().values) and a.unique().numel() == 100
    assert torch.bincount(labels[a]).tolist() == [50, 30, 20]
    assert stratified_subset(labels, 7, 0).numel() == 7
    assert torch.equal(stratified_subset(labels, None, 0), torch.arange(1000))


def test_idx_directory_loads_resizes_and_replicates(fmnist_dir):
    bundle = build_data("fashion_mnist", str(fmnist_dir), 32, 3, 10, train_size=40, test_size=None)
    assert (bundle.num_train, bundle.num_test) == (40, 50)
    x, y = next(bundle.train_batches(1, 8, 0))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)
    assert torch.equal(x[:, 0], x[:, 1])  # grey replicated to 3 channels
    tx, ty = next(bundle.test_batches(50))
    assert tx.shape == (50, 3, 32, 32)
    assert torch.bincount(torch.cat([yy for _, yy in bundle.train_batches(1, 8, 0)]), minlength=10).sum() == 40
    native = build_data("fashion_mnist", str(fmnist_dir), 28, 1, 10)
    tx, ty = next(native.test_batches(50))
    # Pixel (0, 0) encodes the label: images stay paired with their labels.
    pix = torch.round((tx[:, 0, 0, 0] * 0.3530 + 0.2860) * 255)
    assert torch.equal(pix, (ty * 20).float())


def test_global_batches_split_across_processes(fmnist_dir):
    bundle = build_data("fashion_mnist", str(fmnist_dir), 28, 1, 10)
    one = list(bundle.train_batches(2, 10, 5))
    shards = [list(bundle.train_batches(2, 10, 5, rank=r, world=2)) for r in (0, 1)]
    assert len(one) == len(shards[0]) == len(shards[1]) == 10
    for (x, y), (x0, y0), (x1, y1) in zip(one, *shards):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1) and torch.equal(y[1::2], y1)
    other_epoch = list(bundle.train_batches(3, 10, 5))
    assert not torch.equal(one[0][1], other_epoch[0][1])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, bundle.train_batches(2, 10, 5)))


def test_missing_dataset_names_path_and_remedy(tmp_path):
    with pytest.raises(DatasetError) as err:
        find_fashion_mnist(tmp_path / "nothing")
    msg = str(err.value)
    assert str(tmp_path / "nothing") in msg and "apt-get install dataset-fashion-mnist" in msg


def test_malformed_idx_files(tmp_path, fmnist_dir):
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x00\x00\x0d\x01" + (5).to_bytes(4, "big") + b"\x00" * 20)
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(DatasetError, match="header promises"):
        read_idx(short)
    broken = fmnist_dir / (FILES["train_images"] + ".gz")
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=str(broken)):
        build_data("fashion_mnist", str(fmnist_dir), 28, 1, 10)


def test_class_count_mismatch(fmnist_dir):
    with pytest.raises(DatasetError, match="10 classes"):
        build_data("fashion_mnist", str(fmnist_dir), 28, 1, 4)


@pytest.mark.skipif(not (DEBIAN_DIR / (FILES["train_labels"] + ".gz")).is_file(),
                    reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_subset():
    bundle = build_data("fashion_mnist", None, 32, 1, 10, train_size=200, test_size=100, subset_seed=0)
    ys = torch.cat([y for _, y in bundle.test_batches(64)])
    assert ys.numel() == 100 and torch.bincount(ys).tolist() == [10] * 10


def test_imagenet_layout(tiny_imagenet):
    bundle = build_data("imagenet", str(tiny_imagenet), 32, 3, 3, train_size=6, test_size=None)
    assert (bundle.num_train, bundle.num_test) == (6, 12)
    x, y = next(bundle.train_batches(1, 3, 0))
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    tx, ty = next(bundle.test_batches(12))
    assert tx.shape == (12, 3, 32, 32) and sorted(ty.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    grey = build_data("imagenet", str(tiny_imagenet), 32, 1, 3)
    assert next(grey.test_batches(4))[0].shape == (4, 1, 32, 32)
    assert next(bundle.calib_batches(5, 0)).shape == (5, 3, 32, 32)


def test_imagenet_errors(tmp_path, tiny_imagenet):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match=r"val.*ImageFolder layout"):
        build_data("imagenet", str(tmp_path), 32, 3, 3)
    with pytest.raises(DatasetError, match="3 classes"):
        build_data("imagenet", str(tiny_imagenet), 32, 3, 1000)


def test_fake_is_deterministic():
    a = build_data("fake", None, 16, 1, 4, 32, 16, subset_seed=1)
    b = build_data("fake", None, 16, 1, 4, 32, 16, subset_seed=1)
    xa, ya = next(a.train_batches(1, 32, 0))
    xb, yb = next(b.train_batches(1, 32, 0))
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and ya.unique().numel() == 4
