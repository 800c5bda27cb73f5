"""Loading mmdet, and the workaround for its SSDHead predict bug.

mmdet 3.3.0's ``SSDHead.__init__`` skips ``AnchorHead.__init__`` and never sets ``loss_cls``,
while ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls`` (for v3det's custom
classifiers), so ``model(..., mode='predict')`` raises
``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``. SSD computes its classification
loss itself (hard negative mining), so the head needs no loss module: giving the instance
``loss_cls = None`` makes the lookup return "no custom channels" and predict proceeds with
SSD's softmax scores, as intended upstream.
"""

from __future__ import annotations

from torch import nn

_REGISTERED = False


def require_mmdet() -> None:
    """Import mmdet and register its modules in the mmengine registries (once).

    Raises:
        ImportError: with the set-up command when the detection stack is missing.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        import mmcv.ops  # noqa: F401  (mmdet needs mmcv's compiled ops, e.g. nms)
        from mmdet.utils import register_all_modules
    except ImportError as e:
        raise ImportError(
            "the detection stack (mmcv 2.1.0 with ops, mmengine, mmdet 3.3.0) is not installed: "
            f"run `scripts/setup_detection.sh .venv` ({e})") from e
    register_all_modules(init_default_scope=True)
    _REGISTERED = True


def ssd_head_needs_loss_cls_fix(head: nn.Module) -> bool:
    """True when ``head`` is an SSDHead without ``loss_cls`` (the upstream bug is present).

    Args:
        head: a detector's ``bbox_head``.
    """
    from mmdet.models.dense_heads import SSDHead

    return isinstance(head, SSDHead) and "loss_cls" not in head.__dict__ and \
        "loss_cls" not in head._modules and not hasattr(type(head), "loss_cls")


def fix_ssd_head_predict(model: nn.Module) -> bool:
    """Apply the ``loss_cls`` workaround to every SSDHead in ``model`` (in place).

    Args:
        model: an mmdet detector (or any module containing SSDHeads).

    Returns:
        Whether a head was patched (False when none needed it).
    """
    patched = False
    for module in model.modules():
        if ssd_head_needs_loss_cls_fix(module):
            # a plain attribute (not a submodule): it adds nothing to the state_dict
            module.loss_cls = None
            patched = True
    return patched
