"""mmdet dataset and dataloader configs for VOC and the generated fmnist_voc set."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from .config import DetectRunConfig, default_data_root
from .data import FMNIST_CLASSES, SUBSET, FmnistVocSpec, generate_fmnist_voc

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")
# the mean RGB pixel: what Expand fills its canvas with (the same under both detect.pixel_norm)
MEAN = [123.675, 116.28, 103.53]


def train_pipeline(size: int, augment: str) -> list[dict]:
    """Training transforms: mmdet's SSD300-VOC pipeline ("ssd") or resize + flip ("light").

    Args:
        size: network input side.
        augment: "ssd" or "light".
    """
    head = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]
    tail = [dict(type="Resize", scale=(size, size), keep_ratio=False),
            dict(type="RandomFlip", prob=0.5)]
    if augment == "light":
        return head + tail + [dict(type="PackDetInputs")]
    return head + [
        dict(type="Expand", mean=MEAN, to_rgb=True, ratio_range=(1, 4)),
        dict(type="MinIoURandomCrop", min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    ] + tail + [
        dict(type="PhotoMetricDistortion", brightness_delta=32, contrast_range=(0.5, 1.5),
             saturation_range=(0.5, 1.5), hue_delta=18),
        dict(type="PackDetInputs"),
    ]


def test_pipeline(size: int) -> list[dict]:
    """Test transforms of mmdet's SSD300-VOC config at ``size``."""
    return [dict(type="LoadImageFromFile"),
            dict(type="Resize", scale=(size, size), keep_ratio=False),
            dict(type="LoadAnnotations", with_bbox=True),
            dict(type="PackDetInputs",
                 meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))]


def _subset_list(src: Path, n: int | None, seed: int, dest: Path) -> Path:
    ids = [line.strip() for line in src.read_text().splitlines() if line.strip()]
    if n is None or n >= len(ids):
        return src
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(ids), size=n, replace=False).tolist())
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(ids[i] for i in keep) + "\n")
    return dest


def dataset_cfgs(cfg: DetectRunConfig, work: Path) -> tuple[dict, dict, tuple[str, ...]]:
    """Train and test dataset configs (mmdet ``VOCDataset``), and the class names.

    For fmnist_voc the set is generated (once, atomically) under ``data.root``. For voc,
    ``data.root`` is a VOCdevkit directory; subsets (``train_size``/``test_size``) are drawn
    with ``subset_seed`` and written as image-id lists under ``work``.

    Args:
        cfg: the run config.
        work: run-private directory for subset lists.
    """
    d = cfg.data
    root = Path(d.root).expanduser() if d.root else default_data_root(d.dataset)
    size = d.image_size
    if d.dataset == "fmnist_voc":
        data_root = generate_fmnist_voc(root, FmnistVocSpec.from_config(cfg))
        classes = FMNIST_CLASSES
        common = dict(type="VOCDataset", data_root=str(data_root), metainfo=dict(classes=classes),
                      data_prefix=dict(sub_data_root=f"{SUBSET}/"))
        train = dict(common, ann_file=f"{SUBSET}/ImageSets/Main/trainval.txt",
                     filter_cfg=dict(filter_empty_gt=True, min_size=32),
                     pipeline=train_pipeline(size, cfg.detect.augment))
        test = dict(common, ann_file=f"{SUBSET}/ImageSets/Main/test.txt", test_mode=True,
                    pipeline=test_pipeline(size))
        return train, test, classes

    classes = VOC_CLASSES
    for year in sorted(set(cfg.detect.voc_years) | {2007}):
        if not (root / f"VOC{year}" / "ImageSets" / "Main").is_dir():
            raise FileNotFoundError(f"VOC{year} not found under {root} (VOCdevkit layout: "
                                    f"{root}/VOC{year}/{{JPEGImages,Annotations,ImageSets}})")
    years = sorted(cfg.detect.voc_years)
    # split train_size over the years in proportion to their trainval sizes
    lists = {y: root / f"VOC{y}" / "ImageSets" / "Main" / "trainval.txt" for y in years}
    counts = {y: sum(1 for line in lists[y].read_text().splitlines() if line.strip()) for y in years}
    total = sum(counts.values())
    datasets = []
    for i, y in enumerate(years):
        n = None if d.train_size is None else max(1, round(d.train_size * counts[y] / total))
        ann = _subset_list(lists[y], n, d.subset_seed + i, work / f"VOC{y}_trainval.txt")
        datasets.append(dict(type="VOCDataset", data_root=str(root), ann_file=str(ann),
                             data_prefix=dict(sub_data_root=f"VOC{y}/"),
                             filter_cfg=dict(filter_empty_gt=True, min_size=32),
                             pipeline=train_pipeline(size, cfg.detect.augment)))
    train = datasets[0] if len(datasets) == 1 else dict(
        type="ConcatDataset", ignore_keys=["dataset_type"], datasets=datasets)
    test_ann = _subset_list(root / "VOC2007" / "ImageSets" / "Main" / "test.txt", d.test_size,
                            d.subset_seed + 100, work / "VOC2007_test.txt")
    test = dict(type="VOCDataset", data_root=str(root), ann_file=str(test_ann),
                data_prefix=dict(sub_data_root="VOC2007/"), test_mode=True,
                pipeline=test_pipeline(size))
    return train, test, classes


def dataloader_cfg(dataset: dict, batch_size: int, workers: int, shuffle: bool) -> dict:
    """An mmengine dataloader config around ``dataset``.

    Args:
        dataset: dataset config.
        batch_size: images per batch.
        workers: worker processes.
        shuffle: shuffle each epoch (seeded by the runner).
    """
    return dict(batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                drop_last=False, sampler=dict(type="DefaultSampler", shuffle=shuffle),
                dataset=copy.deepcopy(dataset))
