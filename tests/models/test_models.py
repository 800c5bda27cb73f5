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
