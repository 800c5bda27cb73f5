"""Model builders: shapes at every scale, AlexNet-BN's layout, loading FP weights from files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qbench.io import FileFormatError
from qbench.models import AlexNetBN, FitMaxPool2d, build_model, load_pretrained


@pytest.mark.parametrize("arch", ["alexnet_bn", "resnet18", "resnet50"])
@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3)])
def test_small_inputs_any_channels_and_classes(arch, size, channels):
    model = build_model(arch, num_classes=7, in_channels=channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_alexnet_bn_layout_and_paper_scale_shapes():
    model = AlexNetBN(1000, 3).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(convs) == 5 and len(linears) == 3 and len(bns) == 7
    assert [l.out_features for l in linears] == [4096, 4096, 1000]
    feats = model.features(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 256, 6, 6)  # as the original AlexNet at 224 px


def test_fit_maxpool_is_maxpool_when_it_fits_and_identity_on_1x1():
    x = torch.randn(2, 4, 13, 13)
    assert torch.equal(FitMaxPool2d(3, 2)(x), nn.MaxPool2d(3, 2)(x))
    y = torch.randn(2, 4, 1, 1)
    assert torch.equal(FitMaxPool2d(3, 2)(y), y)


def test_pretrained_rgb_imagenet_weights_into_grey_10_class_model(tmp_path):
    src = build_model("resnet18", 1000, 3)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(src.state_dict(), path)
    dst = build_model("resnet18", 10, 1)
    fc_before = dst.fc.weight.clone()
    info = load_pretrained(dst, path)
    assert info["adapted"] == ["conv1.weight"] and set(info["skipped"]) == {"fc.weight", "fc.bias"}
    torch.testing.assert_close(dst.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert torch.equal(dst.fc.weight, fc_before)
    # A grey image replicated to RGB gives the same first-layer response.
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(dst.conv1(x), src.conv1(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_pretrained_from_qbench_checkpoint_and_errors(tmp_path):
    src = build_model("alexnet_bn", 10, 1)
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    dst = build_model("alexnet_bn", 10, 1)
    load_pretrained(dst, tmp_path / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(FileFormatError, match="start.checkpoint: .*nope.pt: no such file"):
        load_pretrained(dst, tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(build_model("resnet18", 10, 1), tmp_path / "checkpoint.pt")
    torch.save({"model": "not tensors"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_pretrained(dst, tmp_path / "bad.pt")


def test_unknown_arch_and_channels_rejected():
    with pytest.raises(ValueError, match="model.arch"):
        build_model("vgg16", 10, 3)
    with pytest.raises(ValueError, match="in_channels"):
        build_model("resnet18", 10, 4)


# --- width and stem: the paper's topology at another size -----------------------------------

def _last_stage_map(model: nn.Module, arch: str, size: int) -> tuple[int, ...]:
    seen = {}
    stage = model.features if arch == "alexnet_bn" else model.layer4
    def record(module, inputs, output) -> None:
        seen["shape"] = tuple(output.shape)

    handle = stage.register_forward_hook(record)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    handle.remove()
    return seen["shape"]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_default_width_and_stem_are_torchvisions_network(arch):
    import torchvision

    ours = build_model(arch, num_classes=10, in_channels=3)
    ref = getattr(torchvision.models, arch)(weights=None, num_classes=10)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert isinstance(ours.maxpool, nn.MaxPool2d) and ours.conv1.kernel_size == (7, 7)


@pytest.mark.parametrize("arch", ["alexnet_bn", "resnet18", "resnet50"])
def test_width_scales_every_layer_and_keeps_names_and_quantized_layers(arch):
    from qbench.quant import QuantPolicy
    from qbench.quant.model import quantize_model

    full, narrow = build_model(arch, 10, 1), build_model(arch, 10, 1, width=0.25)
    assert [n for n, _ in full.named_modules()] == [n for n, _ in narrow.named_modules()]
    layers = lambda m: {n: x for n, x in m.named_modules() if isinstance(x, (nn.Conv2d, nn.Linear))}  # noqa: E731
    f, q = layers(full), layers(narrow)
    last = list(f)[-1]
    for name, layer in f.items():
        out_full = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        out_narrow = q[name].out_channels if isinstance(q[name], nn.Conv2d) else q[name].out_features
        if name == last:
            assert out_narrow == out_full == 10
        else:
            assert out_narrow == max(8, round(out_full / 4)), name
    # the paper's policy still leaves the first conv and the classifier full precision
    rep_full = quantize_model(build_model(arch, 10, 1), QuantPolicy("binary"))
    rep_narrow = quantize_model(build_model(arch, 10, 1, width=0.25), QuantPolicy("binary"))
    assert rep_full.weight_layers == rep_narrow.weight_layers and len(rep_full.weight_layers) > 3
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert params(narrow) < params(full) / 10


@pytest.mark.parametrize("arch, imagenet, small", [
    ("resnet18", (1, 512, 1, 1), (1, 512, 4, 4)),
    ("resnet50", (1, 2048, 1, 1), (1, 2048, 4, 4)),
    ("alexnet_bn", (1, 256, 1, 1), (1, 256, 3, 3)),
])
def test_small_stem_keeps_spatial_maps_at_32px(arch, imagenet, small):
    assert _last_stage_map(build_model(arch, 10, 1), arch, 32) == imagenet
    model = build_model(arch, 10, 1, stem="small")
    assert _last_stage_map(model, arch, 32) == small
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1) and first.in_channels == 1


def test_bad_width_and_stem_name_the_key():
    with pytest.raises(ValueError, match="model.width"):
        build_model("resnet18", 10, 1, width=0)
    with pytest.raises(ValueError, match="model.stem"):
        build_model("resnet18", 10, 1, stem="cifar10")
    from qbench.train.config import Config, ConfigError

    with pytest.raises(ConfigError, match="model.width"):
        Config.from_dict({"task": "classify", "model": {"arch": "resnet18", "width": -1}})
    with pytest.raises(ConfigError, match="model.stem"):
        Config.from_dict({"task": "classify", "model": {"arch": "resnet18", "stem": "tiny"}})


def test_bit_operation_model_builds_the_configured_width():
    from qbench.models.bitops import layer_macs

    full = dict((n, m) for n, m, _ in layer_macs("resnet18", 10, 1, 32))
    half = dict((n, m) for n, m, _ in layer_macs("resnet18", 10, 1, 32, width=0.5))
    assert half["layer2.0.conv2"] * 4 == full["layer2.0.conv2"]
    small = dict((n, m) for n, m, _ in layer_macs("resnet18", 10, 1, 32, stem="small"))
    assert small["layer4.0.conv2"] == 16 * full["layer4.0.conv2"]  # 4x4 maps instead of 1x1
