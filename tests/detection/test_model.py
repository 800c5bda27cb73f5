"""mmdet's SSD: quantizer placement, parameter-wise learning rates, the predict workaround."""

import copy

import pytest
import torch
from torch import nn

from qbench.detection.config import DetectRunConfig
from qbench.detection.model import build_ssd, param_groups_cfg, ssd_levels, ssd_model_cfg, ssd_quant_layers
from qbench.quant import QuantPolicy, activation_quantizers, quantize_, quantize_model, weight_quantizers
from tests.detection.conftest import TINY

# VGG16 in mmdet's SSDVGG: conv1_1 .. conv5_3 at these indices of backbone.features, then
# conv6 (3x3, dilated) at 31 and conv7 (1x1) at 33
EXPECTED_QUANTIZED = [f"backbone.features.{i}" for i in (2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31)]


def _cfg(size=300):
    raw = copy.deepcopy(TINY)
    raw["data"]["image_size"] = size
    return DetectRunConfig.from_dict(raw)


@pytest.fixture(scope="module")
def ssd300(request):
    request.getfixturevalue("mmdet_stack")
    torch.manual_seed(0)
    return build_ssd(_cfg(300))


def test_ssd300_is_mmdets_voc_ssd(ssd300):
    head = ssd300.bbox_head
    assert type(ssd300).__name__ == "SingleStageDetector"
    assert type(ssd300.backbone).__name__ == "SSDVGG"
    assert head.num_classes == 10 and head.cls_out_channels == 11
    assert head.prior_generator.base_sizes == [30, 60, 111, 162, 213, 264]  # SSD300-VOC anchors
    convs = [n for n, m in ssd300.backbone.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 15  # 13 VGG16 convs + conv6 + conv7
    feats = ssd300.extract_feat(torch.zeros(1, 3, 300, 300))
    assert [f.shape[-1] for f in feats] == [38, 19, 10, 5, 3, 1]


def test_quantized_layers_are_the_papers(ssd300):
    names = ssd_quant_layers(ssd300)
    assert names == EXPECTED_QUANTIZED
    modules = dict(ssd300.named_modules())
    assert "backbone.features.0" not in names  # first conv
    assert modules["backbone.features.33"].kernel_size == (1, 1) and "backbone.features.33" not in names
    assert not any(n.startswith(("neck.", "bbox_head.")) for n in names)


def test_quantize_model_places_weight_and_activation_quantizers(mmdet_stack):
    torch.manual_seed(0)
    model = build_ssd(_cfg(96))
    report = quantize_model(model, QuantPolicy("3bit_pm4", "act_linear8", include=ssd_quant_layers(model)))
    assert report.weight_layers == EXPECTED_QUANTIZED
    assert report.activation_layers == EXPECTED_QUANTIZED
    assert sorted(weight_quantizers(model)) == sorted(EXPECTED_QUANTIZED)
    assert sorted(activation_quantizers(model)) == sorted(EXPECTED_QUANTIZED)
    # layer-wise: one quantizer object per layer
    assert len({id(q) for q in weight_quantizers(model).values()}) == len(EXPECTED_QUANTIZED)
    # quantized weights take at most |Y| = 7 distinct values per layer in hard mode
    from qbench.quant import set_mode

    set_mode(model, "hard")
    w = model.backbone.features[2].weight
    assert torch.unique(w.detach()).numel() <= 7
    assert torch.unique(model.backbone.features[0].weight.detach()).numel() > 100


def test_param_groups_give_paper_learning_rates(mmdet_stack):
    from mmengine.optim import build_optim_wrapper

    torch.manual_seed(0)
    model = build_ssd(_cfg(96))
    layers = ssd_quant_layers(model)
    method = quantize_(model, QuantPolicy("ternary", "act_linear8", include=layers))
    wrapper = build_optim_wrapper(model, dict(
        type="OptimWrapper", optimizer=dict(type="SGD", lr=1e-5, momentum=0.9, weight_decay=5e-4),
        paramwise_cfg=param_groups_cfg(model, layers, 1e-5, 1e-7, method.parameters(model))))
    group_of = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    seen = 0
    for name, p in model.named_parameters():
        g = group_of[id(p)]
        quantized = name.startswith(tuple(f"{n}." for n in layers))
        assert g["lr"] == pytest.approx(1e-5 if quantized else 1e-7), name
        is_quantizer = name.endswith((".alpha", ".beta"))
        assert g["weight_decay"] == pytest.approx(0.0 if is_quantizer else 5e-4), name
        seen += 1
    assert seen == len(group_of)
    # quantized parameters: weight, bias, 2 weight-quantizer and 2 input-quantizer params per layer
    assert sum(1 for p in model.parameters() if group_of[id(p)]["lr"] > 1e-6) == 6 * len(layers)


def test_small_inputs_adapt_levels_and_anchors(mmdet_stack):
    assert [f for f, _, _ in ssd_levels(300)] == [38, 19, 10, 5, 3, 1]
    assert [f for f, _, _ in ssd_levels(160)] == [20, 10, 5, 3, 1]
    assert [f for f, _, _ in ssd_levels(96)] == [12, 6, 3, 2]
    cfg = ssd_model_cfg(10, 160)
    assert len(cfg["bbox_head"]["in_channels"]) == 5
    torch.manual_seed(0)
    model = build_ssd(_cfg(160))
    feats = model.extract_feat(torch.zeros(1, 3, 160, 160))
    assert [f.shape[-1] for f in feats] == [20, 10, 5, 3, 1]
    outs = model.bbox_head(feats)
    priors = model.bbox_head.prior_generator.num_base_priors
    assert [o.shape[1] for o in outs[0]] == [n * 11 for n in priors]
    assert ssd_quant_layers(model) == EXPECTED_QUANTIZED


def _batch(model, size):
    from mmdet.structures import DetDataSample

    sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         scale_factor=(1.0, 1.0), pad_shape=(size, size)))
    return torch.rand(1, 3, size, size) * 255, [sample]


def test_upstream_ssdhead_predict_bug_still_present(mmdet_stack):
    """If this fails, mmdet fixed SSDHead.loss_cls: drop qbench's workaround."""
    from mmdet.registry import MODELS

    torch.manual_seed(0)
    vanilla = MODELS.build(ssd_model_cfg(10, 96))
    vanilla.eval()
    x, samples = _batch(vanilla, 96)
    with pytest.raises(AttributeError, match="loss_cls"):
        vanilla(x, samples, mode="predict")


def test_workaround_makes_predict_work(mmdet_stack):
    from qbench.detection.mmdet_compat import fix_ssd_head_predict, ssd_head_needs_loss_cls_fix

    torch.manual_seed(0)
    model = build_ssd(_cfg(96))
    assert not ssd_head_needs_loss_cls_fix(model.bbox_head)
    assert not fix_ssd_head_predict(model)  # already applied by build_ssd, idempotent
    assert "bbox_head.loss_cls" not in str(list(model.state_dict()))
    model.eval()
    x, samples = _batch(model, 96)
    with torch.no_grad():
        out = model(x, samples, mode="predict")
    pred = out[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels) > 0
    assert float(pred.scores.max()) <= 1.0 and int(pred.labels.max()) < 10


def test_param_groups_follow_the_methods_own_groups(mmdet_stack):
    # PACT decays its clipping level (QuantMethod.param_groups): the detection optimizer does too
    from mmengine.optim import build_optim_wrapper

    from qbench.quant import get_method

    torch.manual_seed(0)
    model = build_ssd(_cfg(96))
    layers = ssd_quant_layers(model)
    method = get_method("pact")(get_method("pact").config_from_section(None, "act_2bit", {}))
    method.quantize(model, include=layers)
    groups = method.param_groups(model)
    decayed = {id(p) for g in groups if g["decay_mult"] > 0 for p in g["params"]}
    assert decayed  # PACT's alpha carries weight decay
    wrapper = build_optim_wrapper(model, dict(
        type="OptimWrapper", optimizer=dict(type="SGD", lr=1e-5, momentum=0.9, weight_decay=5e-4),
        paramwise_cfg=param_groups_cfg(model, layers, 1e-5, 1e-7, method.parameters(model), groups)))
    group_of = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    for g in groups:
        for p in g["params"]:
            assert group_of[id(p)]["weight_decay"] == pytest.approx(5e-4 * g["decay_mult"])
            assert group_of[id(p)]["lr"] == pytest.approx(1e-5 * g["lr_mult"])
