"""Fashion-MNIST from idx files (Debian's ``dataset-fashion-mnist`` package or a directory)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .common import DatasetError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MEAN, STD = 0.2860, 0.3530
HOW_TO_GET = ("get it with `apt-get install dataset-fashion-mnist` (files in "
              f"{DEBIAN_DIR}), or put the four idx(.gz) files in $QBENCH_DATA/fashion-mnist or in "
              "data.root (torchvision.datasets.FashionMNIST(DIR, download=True) writes them to "
              "DIR/FashionMNIST/raw, also accepted)")


def _candidates(root: str | Path | None) -> list[Path]:
    if root is not None:
        root = Path(root)
        return [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    env = os.environ.get("QBENCH_DATA")
    if env:
        # a typo must not silently fall back to another copy: when set, it is the only place
        if not Path(env).is_dir():
            raise DatasetError(f"QBENCH_DATA={env}: no such directory; fix it, or unset it to use "
                               f"{DEBIAN_DIR}")
        return [Path(env) / "fashion-mnist", Path(env) / "FashionMNIST" / "raw", Path(env)]
    return [DEBIAN_DIR]


def _file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_fashion_mnist(root: str | Path | None = None) -> dict[str, Path]:
    """Locate the four idx files.

    Args:
        root: a directory (``data.root``); None searches ``$QBENCH_DATA`` then Debian's path.

    Returns:
        ``{"train_images", "train_labels", "test_images", "test_labels"}`` -> file path.
    """
    tried = _candidates(root)
    for d in tried:
        found = {k: _file(d, stem) for k, stem in FILES.items()}
        if all(found.values()):
            return found
    env = os.environ.get("QBENCH_DATA")
    if root is None and env:
        raise DatasetError(f"QBENCH_DATA={env}: no Fashion-MNIST idx files there (looked in "
                           f"{', '.join(map(str, tried))}); fix it, or unset it to use {DEBIAN_DIR}")
    raise DatasetError(f"Fashion-MNIST not found (looked in {', '.join(map(str, tried))}); {HOW_TO_GET}")


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an idx file (optionally gzipped) of unsigned bytes.

    Args:
        path: the file.

    Returns:
        uint8 tensor of the stored shape.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a damaged gzip stream
        raise DatasetError(f"{path}: cannot read ({e}); {HOW_TO_GET}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte idx file (bad magic); {HOW_TO_GET}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise DatasetError(f"{path}: truncated idx header; {HOW_TO_GET}")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(f"{path}: {len(data)} bytes, the header promises {expected}; {HOW_TO_GET}")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy())


def load_split(files: dict[str, Path], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) long of ``split`` ("train" or "test")."""
    x = read_idx(files[f"{split}_images"])
    y = read_idx(files[f"{split}_labels"]).long()
    if x.dim() != 3 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{files[f'{split}_images']}: images {tuple(x.shape)} do not match "
                           f"labels {tuple(y.shape)}; {HOW_TO_GET}")
    if x.shape[0] == 0:  # an accuracy over no images would read as 0.0
        raise DatasetError(f"{files[f'{split}_images']}: holds 0 images; {HOW_TO_GET}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DatasetError(f"{files[f'{split}_labels']}: labels outside 0..9")
    return x, y


def to_model_input(x: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    """uint8 (N, H, W) -> normalised float (N, 1, size, size), resized once (antialiased bilinear).

    Args:
        x: images.
        size: target side length.
        chunk: images resized at a time (bounds peak memory).
    """
    out = []
    for i in range(0, x.shape[0], chunk):
        part = x[i:i + chunk, None].float().div_(255.0)
        if part.shape[-1] != size or part.shape[-2] != size:
            part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False)
        out.append(part.sub_(MEAN).div_(STD))
    return torch.cat(out) if out else torch.empty(0, 1, size, size)
