"""VOC-style mAP of a detector on a dataloader, with quantizers in a chosen mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# test images are grouped for the jackknife of the mAP: every image its own group up to this
# many (mini's 60 scenes), groups of ~50 on VOC07 test (4952 images); G evaluations of the mAP
JACKKNIFE_GROUPS = 100



@torch.no_grad()
def voc_map(model: nn.Module, dataloader, classes: tuple[str, ...], eval_mode: str = "11points",
            quant_mode: str | None = None, iou_thr: float = 0.5, method=None,
            jackknife_groups: int | None = None) -> dict:
    """Pascal VOC mAP (IoU 0.5) of ``model`` on ``dataloader``, in percent.

    Uses mmdet's ``VOCMetric`` to collect detections and ground truth (difficult boxes are
    ignored, as in VOC) and ``eval_map`` for the AP, without the 3-decimal rounding of
    ``VOCMetric.compute_metrics``.

    Args:
        model: an mmdet detector (quantized or not).
        dataloader: test dataloader built from an mmdet VOC-style dataset.
        classes: class names, in label order.
        eval_mode: "11points" (VOC2007) or "area".
        quant_mode: one of ``method.modes`` (the paper's: "hard", "soft" or "off") for the
            quantizers during evaluation; None leaves the current mode.
        iou_thr: IoU for a true positive.
        method: the model's quantization method (``qbench.quant.QuantMethod``); needed with
            ``quant_mode``.
        jackknife_groups: also return the grouped-jackknife pseudo-values of the mAP
            (``map_pseudo_values``) over this many groups of test images (at most one group per
            image); None: not computed.

    Returns:
        ``{"map": float, "ap": {class: float}, "num_images": int}``, AP values in percent, plus
        ``"pseudo": list[float]`` with ``jackknife_groups``.
    """
    from mmdet.evaluation import VOCMetric
    from mmdet.evaluation.functional import eval_map

    was_training = model.training
    model.eval()
    previous = None
    if quant_mode is not None:
        if method is None:
            raise ValueError("voc_map: quant_mode needs the model's quantization method")
        previous = method.current_mode(model)
        method.set_mode(model, quant_mode)
    metric = VOCMetric(metric="mAP", eval_mode=eval_mode, iou_thrs=iou_thr)
    metric.dataset_meta = {"classes": classes}
    try:
        n = 0
        for batch in dataloader:
            outputs = model.test_step(batch)
            metric.process(batch, [o.to_dict() for o in outputs])
            n += len(outputs)
    finally:
        if previous is not None:
            method.set_mode(model, previous)
        model.train(was_training)
    if n == 0:
        raise ValueError("empty test set")
    gts, dets = zip(*metric.results)

    def mean_ap_of(keep: list[int]) -> tuple[float, list]:
        value, per_class = eval_map([dets[i] for i in keep], [gts[i] for i in keep], scale_ranges=None,
                                    iou_thr=iou_thr, dataset=list(classes), logger="silent",
                                    eval_mode=eval_mode, use_legacy_coordinate=True)
        return 100.0 * float(np.nan_to_num(value)), per_class

    full, per_class = mean_ap_of(list(range(n)))
    ap = {c: 100.0 * float(r["ap"]) for c, r in zip(classes, per_class)}
    out = {"map": full, "ap": ap, "num_images": n}
    if jackknife_groups is not None:
        out["pseudo"] = map_pseudo_values(n, jackknife_groups, lambda keep: mean_ap_of(keep)[0], full)
    return out


def jackknife_group(num_images: int, groups: int) -> np.ndarray:
    """Group of each test image (in test order): ``i mod G``, G = min(groups, images), so
    every run of a scale groups the same images together."""
    if groups < 2 or num_images < 2:
        raise ValueError(f"jackknife needs >= 2 groups and images, got {groups} groups, {num_images} images")
    return np.arange(num_images) % min(groups, num_images)


def map_pseudo_values(num_images: int, groups: int, map_of, full: float) -> list[float]:
    """Grouped-jackknife pseudo-values of the mAP, ``G * mAP - (G - 1) * mAP(without group g)``.

    mAP is not a mean over images, so its test-sampling error has no per-image terms; the
    pseudo-values are (Tukey): their mean is the jackknife estimate of the mAP and their variance
    / G its variance, so they enter the same seeds x images interval as per-image correctness
    (qbench.stats.contrast_interval), paired by group across runs.

    Args:
        num_images: test images, in test order.
        groups: number of groups (``jackknife_group``).
        map_of: ``map_of(kept image indices) -> mAP``.
        full: the mAP of all images.
    """
    group = jackknife_group(num_images, groups)
    G = int(group.max()) + 1
    return [G * full - (G - 1) * map_of([int(i) for i in np.flatnonzero(group != g)]) for g in range(G)]
