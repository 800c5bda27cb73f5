"""``build_data``: from the ``data`` section of a config to a DataBundle."""

from __future__ import annotations

from pathlib import Path

import torch

from qbench.io import file_record

from . import fashion_mnist as fm
from .common import DataBundle, DatasetError, global_batches, shard, stratified_subset, tensor_bundle
from .registry import available_datasets, get_dataset, register_dataset
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FAKE_DEFAULT_SIZES = (256, 128)


def build_data(dataset: str, root: str | None, image_size: int, in_channels: int, num_classes: int,
               train_size: int | None = None, test_size: int | None = None, subset_seed: int = 0,
               workers: int = 0) -> DataBundle:
    """Load a dataset for classification.

    Args:
        dataset: a registered classification dataset ("fashion_mnist", "imagenet", "fake", ...).
        root: dataset directory; None means the dataset's default location.
        image_size: side length fed to the model.
        in_channels: channels the model expects (grey data is replicated, RGB is converted to grey).
        num_classes: the model's classes; must match the dataset's.
        train_size: stratified training subset size (None: all; fake: 256).
        test_size: stratified test subset size (None: all; fake: 128).
        subset_seed: seed of the subsets.
        workers: DataLoader worker processes (ImageNet only; in-memory datasets need none).
    """
    if dataset not in available_datasets("classify"):
        raise ValueError(f"data.dataset must be one of {available_datasets('classify')}, got {dataset!r}")
    return get_dataset(dataset).build(root, image_size, in_channels, num_classes, train_size, test_size,
                                      subset_seed, workers)


@register_dataset("fashion_mnist")
def _fashion_mnist(root: str | None, image_size: int, in_channels: int, num_classes: int,
                   train_size: int | None, test_size: int | None, subset_seed: int, workers: int) -> DataBundle:
    """Fashion-MNIST from its idx files (``fashion_mnist.find_fashion_mnist``), stratified subsets."""
    if num_classes != 10:
        raise DatasetError(f"fashion_mnist has 10 classes, model.num_classes is {num_classes}")
    files = fm.find_fashion_mnist(root)
    splits = {}
    for split, size, seed in (("train", train_size, subset_seed), ("test", test_size, subset_seed + 1)):
        x, y = fm.load_split(files, split)
        idx = stratified_subset(y, size, seed)
        splits[split] = (fm.to_model_input(x[idx], image_size), y[idx])
    bundle = tensor_bundle("fashion_mnist", 10, *splits["train"], *splits["test"], in_channels, flip=True)
    bundle.files = [file_record(p) for p in files.values()]
    return bundle


@register_dataset("imagenet")
def _imagenet(root: str | None, image_size: int, in_channels: int, num_classes: int,
              train_size: int | None, test_size: int | None, seed: int, workers: int) -> DataBundle:
    """ImageFolder train/val with the paper's augmentation, scaled to ``image_size``.

    Paper scale (224): resize shorter side 256, random crop 224 + flip; test resize 256 +
    centre crop 224. Other sizes keep the 256/224 ratio.
    """
    from torchvision import datasets, transforms

    how = ("expected ImageNet in ImageFolder layout: ROOT/train/<wnid>/*.JPEG and "
           "ROOT/val/<wnid>/*.JPEG (set data.root; the validation images must be sorted into "
           "class folders)")
    if root is None:
        raise DatasetError(f"data.root is required for imagenet; {how}")
    base = Path(root)
    for split in ("train", "val"):
        if not (base / split).is_dir():
            raise DatasetError(f"{base / split}: not a directory; {how}")
    resize = round(image_size * 256 / 224)
    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if in_channels == 1:
        grey_mean, grey_std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
        norm = [transforms.Grayscale(1), transforms.ToTensor(), transforms.Normalize((grey_mean,), (grey_std,))]
    train_tf = transforms.Compose([transforms.Resize(resize), transforms.RandomCrop(image_size),
                                   transforms.RandomHorizontalFlip(), *norm])
    test_tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(image_size), *norm])
    try:
        train = datasets.ImageFolder(str(base / "train"), train_tf, loader=_load_image)
        test = datasets.ImageFolder(str(base / "val"), test_tf, loader=_load_image)
    except (FileNotFoundError, RuntimeError) as e:
        raise DatasetError(f"{base}: {e}; {how}") from None
    if train.classes != test.classes:
        raise DatasetError(f"{base}: train and val have different class folders; {how}")
    if len(train.classes) != num_classes:
        raise DatasetError(f"{base}: {len(train.classes)} classes, model.num_classes is {num_classes}")
    tr_idx = stratified_subset(torch.tensor(train.targets), train_size, seed)
    te_idx = stratified_subset(torch.tensor(test.targets), test_size, seed + 1)

    def loader(ds, batches):
        try:
            yield from torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=workers,
                                                   persistent_workers=False)
        except DatasetError as e:  # from a worker the message carries its traceback: keep the last line
            raise DatasetError(str(e).strip().splitlines()[-1].split("DatasetError: ")[-1]) from None

    def train_batches(epoch: int, batch_size: int, seed_: int, rank: int = 0, world: int = 1):
        batches = [tr_idx[shard(b, rank, world)].tolist()
                   for b in global_batches(tr_idx.numel(), batch_size, seed_, epoch, drop_last=True)]
        yield from loader(train, batches)

    def test_batches(batch_size: int, rank: int = 0, world: int = 1):
        mine = te_idx[shard(torch.arange(te_idx.numel()), rank, world)]
        yield from loader(test, [mine[i:i + batch_size].tolist() for i in range(0, mine.numel(), batch_size)])

    def calib_batches(batch_size: int, seed_: int):
        # Calibration looks at un-augmented training images (test transform).
        plain = datasets.ImageFolder(str(base / "train"), test_tf, loader=_load_image)
        perm = tr_idx[torch.randperm(tr_idx.numel(), generator=torch.Generator().manual_seed(int(seed_)))]
        for x, _ in loader(plain, [perm[i:i + batch_size].tolist() for i in range(0, perm.numel(), batch_size)]):
            yield x

    return DataBundle("imagenet", num_classes, tr_idx.numel(), te_idx.numel(),
                      train_batches, test_batches, calib_batches,
                      files=[_listing_record(base / "train", train.samples),
                             _listing_record(base / "val", test.samples)])


@register_dataset("fake")
def _fake(root: str | None, image_size: int, in_channels: int, num_classes: int, train_size: int | None,
          test_size: int | None, seed: int, workers: int = 0) -> DataBundle:
    """Deterministic random images whose class is a fixed pattern plus noise (learnable)."""
    g = torch.Generator().manual_seed(int(seed))
    patterns = torch.randn(num_classes, in_channels, image_size, image_size, generator=g)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = patterns[y] + 1.5 * torch.randn(n, in_channels, image_size, image_size, generator=g)
        return x, y

    n_train = train_size or FAKE_DEFAULT_SIZES[0]
    n_test = test_size or FAKE_DEFAULT_SIZES[1]
    return tensor_bundle("fake", num_classes, *make(n_train), *make(n_test), in_channels, flip=False)


def _load_image(path: str):
    """ImageFolder's loader, stopping at an image that cannot be decoded (truncated, not an image)."""
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            img = Image.open(fh)
            return img.convert("RGB")  # decodes the whole file: a truncated JPEG fails here
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: cannot decode image ({e}); replace or remove the file") from None


def _listing_record(split_dir: Path, samples: list[tuple[str, int]]) -> dict:
    """Provenance of an ImageFolder split. Reading (or even stat-ing) 1.3M images at every start
    costs minutes on a cluster file system, so the sha256 covers the sorted list of
    (relative path, class) that ImageFolder already built, not the content."""
    import hashlib

    h = hashlib.sha256()
    for path, target in sorted(samples):
        h.update(f"{Path(path).relative_to(split_dir)}\t{target}\n".encode())
    return {"path": str(split_dir.resolve()), "size": None, "files": len(samples),
            "sha256": h.hexdigest(), "sha256_of": "sorted listing of (relative path, class)"}
