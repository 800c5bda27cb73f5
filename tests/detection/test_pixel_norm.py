"""SSD inputs at the scale the VGG16 weights were trained on (detect.pixel_norm).

torchvision's VGG16 (the paper scale's ImageNet start) was trained on [0, 1] RGB pixels
normalised by ImageNet's mean and std; mmdet's SSD300 preprocessing (0-255 minus the mean,
std 1) is made for the Caffe VGG16 and feeds torchvision's weights inputs ~58x too large. No
weights are downloaded here, so the check is on what reaches the first conv: a synthetic image
with natural-image statistics goes through the SSD's own data preprocessor and must come out
exactly as torchvision's Normalize makes it, in ImageNet-normalised range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qbench.detection.config import IMAGENET_MEAN, IMAGENET_STD, PIXEL_NORMS, DetectRunConfig
from qbench.train.config import ConfigError


def natural_image(size: int = 300, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) with a 1/f amplitude spectrum and correlated channels,
    pixel mean and spread close to ImageNet's (mean ~0.45, std ~0.23 of 255)."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    base = np.real(np.fft.ifft2(amplitude * np.exp(2j * math.pi * rng.random((size, size)))))
    channels = []
    for c in range(3):
        tint = np.real(np.fft.ifft2(amplitude * np.exp(2j * math.pi * rng.random((size, size)))))
        x = 0.8 * base / base.std() + 0.2 * tint / tint.std()
        channels.append(255 * (IMAGENET_MEAN[c] + IMAGENET_STD[c] * x / x.std()))
    return np.clip(np.stack(channels, -1), 0, 255).round().astype(np.uint8)


def torchvision_normalised(rgb: np.ndarray) -> torch.Tensor:
    """What torchvision's VGG16 weights were trained on: ToTensor then Normalize."""
    from torchvision.transforms import functional as TF

    return TF.normalize(TF.to_tensor(rgb), IMAGENET_MEAN, IMAGENET_STD)


def test_torchvision_norm_is_imagenet_mean_and_std_in_pixel_units():
    rgb = natural_image()
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()
    for name, expect_std in (("torchvision", 1.0), ("caffe", 58.0)):
        n = PIXEL_NORMS[name]
        out = (x - torch.tensor(n["mean"])[:, None, None]) / torch.tensor(n["std"])[:, None, None]
        if name == "torchvision":
            torch.testing.assert_close(out, torchvision_normalised(rgb), rtol=1e-5, atol=1e-5)
        assert out.std().item() == pytest.approx(expect_std, rel=0.15), name


def test_an_imagenet_vgg16_start_requires_its_normalisation():
    cfg = {"task": "detect", "data": {"dataset": "voc", "root": "/x"}, "epochs": {"fp": 1}, "optim": {"milestones": []},
           "detect": {"backbone_checkpoint": "vgg16.pth", "pixel_norm": "caffe"}}
    with pytest.raises(ConfigError, match="^detect.pixel_norm: must be 'torchvision' with detect.backbone_checkpoint"):
        DetectRunConfig.from_dict(cfg)
    cfg["detect"]["pixel_norm"] = "torchvision"
    assert DetectRunConfig.from_dict(cfg).detect.pixel_norm == "torchvision"
    with pytest.raises(ConfigError, match="^detect.pixel_norm: must be one of"):
        DetectRunConfig.from_dict({"task": "detect", "data": {"dataset": "voc", "root": "/x"}, "epochs": {"fp": 1}, "optim": {"milestones": []},
                                   "detect": {"pixel_norm": "bgr"}})


@pytest.mark.parametrize("pixel_norm", ["torchvision", "caffe"])
def test_the_ssd_preprocessor_feeds_conv1_what_the_weights_expect(tiny_config, mmdet_stack, pixel_norm):
    """The SSD's data preprocessor (what conv1_1 sees) on a natural-looking 0-255 image: with
    torchvision's normalisation exactly torchvision's Normalize (per-channel mean ~0, std ~1),
    with mmdet's Caffe one about 58x larger."""
    from mmdet.structures import DetDataSample

    from qbench.detection.model import build_ssd

    tiny_config["data"]["image_size"] = 300
    tiny_config["detect"]["pixel_norm"] = pixel_norm
    model = build_ssd(DetectRunConfig.from_dict(tiny_config)).eval()
    rgb = natural_image()
    bgr = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)  # mmcv loads images as BGR
    sample = DetDataSample(metainfo={"img_shape": (300, 300), "ori_shape": (300, 300)})
    seen = model.data_preprocessor({"inputs": [bgr], "data_samples": [sample]}, False)["inputs"][0]
    if pixel_norm == "torchvision":
        torch.testing.assert_close(seen, torchvision_normalised(rgb), rtol=1e-5, atol=1e-4)
        assert seen.mean(dim=(1, 2)).abs().max() < 0.3
        assert 0.7 < seen.std(dim=(1, 2)).min() and seen.std(dim=(1, 2)).max() < 1.3
    else:
        assert seen.std().item() == pytest.approx(58 * torchvision_normalised(rgb).std().item(), rel=0.05)
    # conv1_1's outputs scale with its inputs (a linear layer before the first ReLU): the trained
    # range is what the torchvision-normalised image gives
    conv1 = model.backbone.features[0]
    with torch.no_grad():
        out = conv1(seen[None]) - conv1.bias[None, :, None, None]
        ref = conv1(torchvision_normalised(rgb)[None]) - conv1.bias[None, :, None, None]
    ratio = (out.std() / ref.std()).item()
    assert ratio == pytest.approx(1.0 if pixel_norm == "torchvision" else 58.0, rel=0.05)
