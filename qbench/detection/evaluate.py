"""VOC-style mAP of a detector on a dataloader, with quantizers in a chosen mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qbench.quant import set_mode


@torch.no_grad()
def voc_map(model: nn.Module, dataloader, classes: tuple[str, ...], eval_mode: str = "11points",
            quant_mode: str | None = None, iou_thr: float = 0.5) -> dict:
    """Pascal VOC mAP (IoU 0.5) of ``model`` on ``dataloader``, in percent.

    Uses mmdet's ``VOCMetric`` to collect detections and ground truth (difficult boxes are
    ignored, as in VOC) and ``eval_map`` for the AP, without the 3-decimal rounding of
    ``VOCMetric.compute_metrics``.

    Args:
        model: an mmdet detector (quantized or not).
        dataloader: test dataloader built from an mmdet VOC-style dataset.
        classes: class names, in label order.
        eval_mode: "11points" (VOC2007) or "area".
        quant_mode: "hard", "soft" or "off" for the quantizers during evaluation; None leaves
            the current mode.
        iou_thr: IoU for a true positive.

    Returns:
        ``{"map": float, "ap": {class: float}, "num_images": int}``, AP values in percent.
    """
    from mmdet.evaluation import VOCMetric
    from mmdet.evaluation.functional import eval_map

    was_training = model.training
    model.eval()
    states = {}
    if quant_mode is not None:
        states = {id(m.state): (m.state, m.state.mode) for m in model.modules() if hasattr(m, "state")
                  and hasattr(m.state, "mode")}
        set_mode(model, quant_mode)
    metric = VOCMetric(metric="mAP", eval_mode=eval_mode, iou_thrs=iou_thr)
    metric.dataset_meta = {"classes": classes}
    try:
        n = 0
        for batch in dataloader:
            outputs = model.test_step(batch)
            metric.process(batch, [o.to_dict() for o in outputs])
            n += len(outputs)
    finally:
        for st, mode in states.values():
            st.set_mode(mode)
        model.train(was_training)
    if n == 0:
        raise ValueError("empty test set")
    gts, dets = zip(*metric.results)
    mean_ap, per_class = eval_map(list(dets), list(gts), scale_ranges=None, iou_thr=iou_thr,
                                  dataset=list(classes), logger="silent", eval_mode=eval_mode,
                                  use_legacy_coordinate=True)
    ap = {c: 100.0 * float(r["ap"]) for c, r in zip(classes, per_class)}
    return {"map": 100.0 * float(np.nan_to_num(mean_ap)), "ap": ap, "num_images": n}
