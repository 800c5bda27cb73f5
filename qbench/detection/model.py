"""mmdet's SSD300-VGG16 (the packaged ``pascal_voc/ssd300_voc0712.py``), sized and quantized.

The model, anchors and pipelines come from mmdet's own config file; qbench only sets the
number of classes, drops the ImageNet-pretrained backbone init (no downloads), and, for inputs
other than 300x300, adapts the SSD extra levels and anchor sizes (docs/detection.md).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Iterable

from torch import nn

from qbench.io import load_state_dict

from .config import PIXEL_NORMS, DetectRunConfig
from .mmdet_compat import fix_ssd_head_predict, require_mmdet

SSD_VOC_CONFIG = "pascal_voc/ssd300_voc0712.py"
# channels of the extra SSD levels after conv4_3 (512) and conv7 (1024), as in SSD300
EXTRA_CHANNELS = (512, 256, 256, 256)


def mmdet_config_path(rel: str = SSD_VOC_CONFIG) -> Path:
    """Path of a config file shipped inside the installed mmdet package.

    Args:
        rel: path below ``mmdet/.mim/configs``.
    """
    require_mmdet()
    import mmdet

    path = Path(mmdet.__file__).parent / ".mim" / "configs" / rel
    if not path.exists():
        raise FileNotFoundError(f"mmdet config {rel} not found at {path}")
    return path


def ssd_levels(input_size: int) -> list[tuple[int, int, int]]:
    """Feature levels of SSD-VGG16 for a square input: (map size, extra stride, extra padding).

    The first two levels are conv4_3 and conv7 (stride/padding 0 = not an extra layer). Like
    SSD300, two stride-2 extra levels follow, then stride-1 unpadded 3x3 levels while the map
    stays >= 1 (at most two). 300 gives maps 38, 19, 10, 5, 3, 1.

    Args:
        input_size: network input side in pixels.
    """
    f = input_size
    for _ in range(3):  # pool1-3 with ceil_mode
        f = math.ceil(f / 2)
    levels = [(f, 0, 0)]
    f = math.ceil(f / 2)  # pool4; pool5 is 3x3 stride 1
    levels.append((f, 0, 0))
    for _ in range(2):
        f = (f + 2 - 3) // 2 + 1
        levels.append((f, 2, 1))
    for _ in range(2):
        if f - 2 < 1:
            break
        f -= 2
        levels.append((f, 1, 0))
    if levels[-1][0] < 1:
        raise ValueError(f"input size {input_size} is too small for SSD-VGG16")
    return levels


def _anchor_sizes(input_size: int, num_levels: int) -> tuple[list[float], list[float]]:
    # mmdet's SSD300-VOC rule (basesize_ratio_range 0.2-0.9, first level 0.1-0.2), any size
    step = int(math.floor(90 - 20) / (num_levels - 2))
    ratios = list(range(20, 90 + 1, step))[: num_levels - 1]
    min_sizes = [input_size * 10 / 100] + [input_size * r / 100 for r in ratios]
    max_sizes = [input_size * 20 / 100] + [input_size * (r + step) / 100 for r in ratios]
    return min_sizes, max_sizes


_BACKBONE_REGISTERED = False


def _register_narrow_backbone() -> None:
    """Register ``QBenchSSDVGG``: mmdet's SSDVGG with every conv's channels divided by ``width_div``.

    Same layers, indices, kernels, strides and dilations as SSDVGG (so the same layers are
    quantized); only the channel counts shrink. ``width_div=1`` is never used (plain SSDVGG is).
    """
    global _BACKBONE_REGISTERED
    if _BACKBONE_REGISTERED:
        return
    from mmdet.models.backbones import SSDVGG
    from mmdet.registry import MODELS

    class QBenchSSDVGG(SSDVGG):
        def __init__(self, width_div: int = 1, **kwargs) -> None:
            super().__init__(**kwargs)
            first = True
            for idx, m in enumerate(self.features):
                if isinstance(m, nn.Conv2d):
                    in_ch = m.in_channels if first else m.in_channels // width_div
                    first = False
                    self.features[idx] = nn.Conv2d(in_ch, m.out_channels // width_div, m.kernel_size,
                                                   m.stride, m.padding, m.dilation)

    MODELS.register_module(name="QBenchSSDVGG", module=QBenchSSDVGG, force=True)
    _BACKBONE_REGISTERED = True


def ssd_model_cfg(num_classes: int, input_size: int = 300, score_thr: float = 0.02,
                  width_div: int = 1, pixel_norm: str = "caffe") -> dict:
    """mmdet model config of SSD-VGG16 for VOC-style data.

    Args:
        num_classes: foreground classes.
        input_size: network input side; 300 is mmdet's SSD300 unchanged.
        score_thr: test-time score threshold.
        width_div: divide every backbone/neck/head channel count by this (1 = VGG16 as is;
            only for small-scale runs on CPUs).
        pixel_norm: input normalisation, a key of ``PIXEL_NORMS``.

    Returns:
        A ``ConfigDict`` for ``mmdet.registry.MODELS.build`` (mmdet reads ``test_cfg`` by attribute).
    """
    from mmengine.config import Config, ConfigDict

    base = Config.fromfile(str(mmdet_config_path()))
    model = copy.deepcopy(base.to_dict()["model"])
    model["backbone"]["init_cfg"] = None  # SSDVGG then uses Kaiming init: no ImageNet download
    model["data_preprocessor"].update(copy.deepcopy(PIXEL_NORMS[pixel_norm]))
    head = model["bbox_head"]
    head["num_classes"] = num_classes
    model["test_cfg"]["score_thr"] = score_thr
    if input_size != 300:
        levels = ssd_levels(input_size)
        n = len(levels)
        neck = model["neck"]
        neck["out_channels"] = tuple([512, 1024] + list(EXTRA_CHANNELS[: n - 2]))
        neck["level_strides"] = tuple(s for _, s, _ in levels[2:])
        neck["level_paddings"] = tuple(p for _, _, p in levels[2:])
        head["in_channels"] = neck["out_channels"]
        min_sizes, max_sizes = _anchor_sizes(input_size, n)
        head["anchor_generator"] = dict(
            type="SSDAnchorGenerator", scale_major=False,
            strides=[max(1, round(input_size / f)) for f, _, _ in levels],
            ratios=[[2]] + [[2, 3]] * (n - 3) + [[2]] * 2 if n >= 5 else [[2]] + [[2, 3]] * (n - 2) + [[2]],
            min_sizes=min_sizes, max_sizes=max_sizes)
    if width_div != 1:
        _register_narrow_backbone()
        model["backbone"]["type"] = "QBenchSSDVGG"
        model["backbone"]["width_div"] = width_div
        neck = model["neck"]
        neck["in_channels"] = tuple(c // width_div for c in neck["in_channels"])
        neck["out_channels"] = tuple(c // width_div for c in neck["out_channels"])
        head["in_channels"] = neck["out_channels"]
    return ConfigDict(model)


def build_ssd(cfg: DetectRunConfig) -> nn.Module:
    """Build and initialise mmdet's SSD for ``cfg`` (weights: Kaiming, as mmdet without pretraining).

    Args:
        cfg: the run config (classes, input size, score threshold).

    Returns:
        The detector, with the SSDHead predict workaround applied.
    """
    require_mmdet()
    from mmdet.registry import MODELS

    model = MODELS.build(ssd_model_cfg(cfg.model.num_classes, cfg.data.image_size, cfg.detect.score_thr,
                                       cfg.detect.width_div, cfg.detect.pixel_norm))
    model.init_weights()  # once here; mmengine's Runner then skips it (already initialised)
    fix_ssd_head_predict(model)
    return model


def load_vgg16_backbone(model: nn.Module, path: Path) -> list[str]:
    """Initialise the SSD backbone from an ImageNet VGG16 state_dict, as SSD [24] does.

    The file has torchvision's VGG16 layout (``features.<i>.weight/bias`` for the 13 convs,
    ``classifier.0`` = fc6, ``classifier.3`` = fc7) and is read with ``weights_only=True``.
    The 13 convs are copied in order; conv6 and conv7 (SSD's dilated fc6 and 1x1 fc7) are fc6
    and fc7 subsampled as in SSD: every 4th output (and input, for fc7) unit and every 3rd
    position of fc6's 7x7 kernel, giving 3x3 with dilation 6.

    Args:
        model: an mmdet SSD detector (backbone ``SSDVGG``).
        path: the VGG16 state_dict file.

    Returns:
        Names of the backbone convs that were set.
    """
    import torch

    state = load_state_dict(path, "detect.backbone_checkpoint")
    convs = [(n, m) for n, m in model.backbone.named_modules() if isinstance(m, nn.Conv2d)]
    src = sorted((k[: -len(".weight")] for k, v in state.items()
                  if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4),
                 key=lambda k: int(k.split(".")[1]))
    if len(src) != 13 or len(convs) < 15 or "classifier.0.weight" not in state \
            or "classifier.3.weight" not in state:
        raise ValueError(f"{path}: not a VGG16 state_dict (13 features convs, classifier.0 and "
                         f"classifier.3), found {len(src)} convs")

    def put(conv: nn.Conv2d, name: str, weight, bias) -> None:
        if tuple(weight.shape) != tuple(conv.weight.shape) or tuple(bias.shape) != tuple(conv.bias.shape):
            raise ValueError(f"{path}: {name} has shape {tuple(weight.shape)}, the backbone's conv "
                             f"{tuple(conv.weight.shape)} (detect.width_div must be 1)")
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)

    for (_, conv), key in zip(convs[:13], src):
        put(conv, key, state[f"{key}.weight"], state[f"{key}.bias"])
    conv6, conv7 = convs[13][1], convs[14][1]
    fc6, fc7 = state["classifier.0.weight"], state["classifier.3.weight"]
    c_in = conv6.in_channels
    side = int(round((fc6.shape[1] / c_in) ** 0.5))
    if side * side * c_in != fc6.shape[1]:
        raise ValueError(f"{path}: classifier.0 has {fc6.shape[1]} inputs, not {c_in} x k x k")
    step6 = fc6.shape[0] // conv6.out_channels
    w6 = fc6.view(fc6.shape[0], c_in, side, side)[::step6, :, ::3, ::3]
    put(conv6, "classifier.0", w6, state["classifier.0.bias"][::step6])
    step7 = fc7.shape[0] // conv7.out_channels
    w7 = fc7[::step7, ::step6].reshape(conv7.out_channels, conv7.in_channels, 1, 1)
    put(conv7, "classifier.3", w7, state["classifier.3.bias"][::step7])
    return [n for n, _ in convs[:15]]


def ssd_quant_layers(model: nn.Module) -> list[str]:
    """Names of the layers the paper quantizes in SSD: every VGG16 backbone conv except the
    first conv and the 1x1 convs (conv7, ex-fc7). The SSD extra levels (neck) and the
    prediction convs (head) stay full precision.

    Args:
        model: an mmdet SSD detector.
    """
    convs = [(name, m) for name, m in model.backbone.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("model.backbone has no Conv2d")
    first = convs[0][0]
    return [f"backbone.{name}" for name, m in convs
            if name != first and tuple(m.kernel_size) != (1, 1)]


def param_groups_cfg(model: nn.Module, quantized_layers: list[str], lr: float, lr_other: float,
                     quantizer_params: Iterable[nn.Parameter], quantizer_groups: list[dict] | None = None) -> dict:
    """mmengine ``paramwise_cfg`` giving the paper's parameter-wise learning rates.

    "Quantized parameters" (lr ``lr``) are everything that defines a quantized layer: its
    full-precision weight (the parametrization's ``original``), its bias, and the alpha/beta
    (and learnable biases) of its weight and input quantizers. Every other parameter (first
    conv, conv7, SSD extra levels, L2Norm, prediction head) gets ``lr_other``. Quantizer
    parameters get no weight decay (they are scales, not weights).

    Args:
        model: the quantized detector.
        quantized_layers: module names of the quantized layers.
        lr: learning rate of quantized parameters (the optimizer's base lr).
        lr_other: learning rate of the others.
        quantizer_params: the quantization method's parameters (``method.parameters(model)``).
        quantizer_groups: the method's own groups (``method.param_groups(model)``: lr and
            weight-decay multipliers, e.g. a decayed clipping level), applied to its
            parameters in quantized layers; None: lr x1 and no weight decay for all of them.

    Returns:
        ``dict(custom_keys=...)`` keyed by full parameter names.
    """
    own = {id(p): dict(decay_mult=0.0) for p in quantizer_params}
    for group in quantizer_groups or ():
        for p in group["params"]:
            own[id(p)] = dict(lr_mult=float(group.get("lr_mult", 1.0)), decay_mult=float(group.get("decay_mult", 0.0)))
    prefixes = tuple(f"{name}." for name in quantized_layers)
    custom: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if not name.startswith(prefixes):
            custom[name] = dict(lr_mult=lr_other / lr)
        elif id(p) in own:
            custom[name] = own[id(p)]
    return dict(custom_keys=custom)
