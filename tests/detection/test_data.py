"""The generated fmnist_voc set: deterministic, atomic, valid VOC, readable by mmdet."""

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from qbench.data import DatasetError
from qbench.detection.data import FMNIST_CLASSES, SUBSET, FmnistVocSpec, generate_fmnist_voc

SPEC = FmnistVocSpec(trainval=12, test=6, seed=3)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = generate_fmnist_voc(tmp_path / "a", SPEC)
    b = generate_fmnist_voc(tmp_path / "b", SPEC)
    c = generate_fmnist_voc(tmp_path / "c", FmnistVocSpec(trainval=12, test=6, seed=4))
    assert a.name == b.name != c.name
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_generation_is_atomic_and_reused(tmp_path):
    path = generate_fmnist_voc(tmp_path, SPEC)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary leftovers
    stamp = (path / "meta.json").stat().st_mtime_ns
    assert generate_fmnist_voc(tmp_path, SPEC) == path
    assert (path / "meta.json").stat().st_mtime_ns == stamp


def test_generation_failure_leaves_nothing(tmp_path):
    # the classification reader's error: where it looked and how to get the data
    with pytest.raises(DatasetError, match=r"Fashion-MNIST not found \(looked in .*missing"):
        generate_fmnist_voc(tmp_path, SPEC, source=tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


def test_voc_layout_and_boxes(tmp_path):
    root = generate_fmnist_voc(tmp_path, SPEC) / SUBSET
    trainval = (root / "ImageSets/Main/trainval.txt").read_text().split()
    test = (root / "ImageSets/Main/test.txt").read_text().split()
    assert len(trainval) == 12 and len(test) == 6 and not set(trainval) & set(test)
    n_objects = 0
    for name in trainval + test:
        assert (root / "JPEGImages" / f"{name}.jpg").exists()
        tree = ET.parse(root / "Annotations" / f"{name}.xml")
        objects = tree.findall("object")
        assert SPEC.min_objects <= len(objects) <= SPEC.max_objects
        for obj in objects:
            assert obj.find("name").text in FMNIST_CLASSES
            box = [int(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] < box[2] <= SPEC.canvas and 1 <= box[1] < box[3] <= SPEC.canvas
            n_objects += 1
    assert n_objects >= 18


def test_spec_validation():
    with pytest.raises(ValueError, match="min_objects"):
        FmnistVocSpec(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="max_size"):
        FmnistVocSpec(max_size=400)


def test_mmdet_reads_the_generated_set(tmp_path, mmdet_stack):
    from mmdet.datasets import VOCDataset

    root = generate_fmnist_voc(tmp_path, SPEC)
    ds = VOCDataset(data_root=str(root), ann_file=f"{SUBSET}/ImageSets/Main/test.txt",
                    data_prefix=dict(sub_data_root=f"{SUBSET}/"), metainfo=dict(classes=FMNIST_CLASSES),
                    test_mode=True, pipeline=[])
    assert len(ds) == 6
    info = ds.get_data_info(0)
    assert info["width"] == info["height"] == 300
    xml = ET.parse(root / SUBSET / "Annotations" / f"{info['img_id']}.xml")
    names = [o.find("name").text for o in xml.findall("object")]
    assert [FMNIST_CLASSES[i["bbox_label"]] for i in info["instances"]] == names
