"""VOC-style mAP of a detector on a dataloader, with quantizers in a chosen mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn



@torch.no_grad()
def voc_map(model: nn.Module, dataloader, classes: tuple[str, ...], eval_mode: str = "11points",
            quant_mode: str | None = None, iou_thr: float = 0.5, method=None) -> dict:
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

    Returns:
        ``{"map": float, "ap": {class: float}, "num_images": int}``, AP values in percent.
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
    mean_ap, per_class = eval_map(list(dets), list(gts), scale_ranges=None, iou_thr=iou_thr,
                                  dataset=list(classes), logger="silent", eval_mode=eval_mode,
                                  use_legacy_coordinate=True)
    ap = {c: 100.0 * float(r["ap"]) for c, r in zip(classes, per_class)}
    return {"map": 100.0 * float(np.nan_to_num(mean_ap)), "ap": ap, "num_images": n}
