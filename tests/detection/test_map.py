"""VOC mAP on a tiny generated set, through mmdet's dataset, pipeline and VOC evaluation."""

import pytest
import torch
from torch import nn

from qbench.detection.config import DetectRunConfig


class Oracle(nn.Module):
    """Predicts the ground truth, optionally shifted or with the wrong class."""

    def __init__(self, shift: float = 0.0, relabel: bool = False, keep_every: int = 1) -> None:
        super().__init__()
        self.shift, self.relabel, self.keep_every = shift, relabel, keep_every

    def test_step(self, batch):
        from mmengine.structures import InstanceData

        out = []
        for ds in batch["data_samples"]:
            gt = ds.gt_instances
            boxes = getattr(gt.bboxes, "tensor", gt.bboxes).clone().float()
            w = boxes[:, 2] - boxes[:, 0]
            boxes[:, [0, 2]] += self.shift * w[:, None]
            labels = (gt.labels + 1) % 10 if self.relabel else gt.labels.clone()
            keep = torch.arange(len(labels)) % self.keep_every == 0
            ds.pred_instances = InstanceData(bboxes=boxes[keep], labels=labels[keep],
                                             scores=torch.ones(int(keep.sum())))
            out.append(ds)
        return out


@pytest.fixture
def test_loader(tiny_config, tmp_path, mmdet_stack):
    from mmengine.runner import Runner

    from qbench.detection.datasets import dataloader_cfg, dataset_cfgs

    tiny_config["data"].update(train_size=4, test_size=12)
    cfg = DetectRunConfig.from_dict(tiny_config)
    _, test_ds, classes = dataset_cfgs(cfg, tmp_path)
    return Runner.build_dataloader(dataloader_cfg(test_ds, 4, 0, shuffle=False), seed=0), classes


def test_perfect_detections_score_100(test_loader):
    from qbench.detection.evaluate import voc_map

    loader, classes = test_loader
    r = voc_map(Oracle(), loader, classes)
    assert r["num_images"] == 12
    assert r["map"] == pytest.approx(100.0)


def test_wrong_boxes_or_classes_score_0(test_loader):
    from qbench.detection.evaluate import voc_map

    loader, classes = test_loader
    assert voc_map(Oracle(shift=1.5), loader, classes)["map"] == pytest.approx(0.0)
    assert voc_map(Oracle(relabel=True), loader, classes)["map"] == pytest.approx(0.0)


def test_missed_objects_lower_the_map(test_loader):
    from qbench.detection.evaluate import voc_map

    loader, classes = test_loader
    partial = voc_map(Oracle(keep_every=2), loader, classes, eval_mode="area")["map"]
    assert 0.0 < partial < 100.0
