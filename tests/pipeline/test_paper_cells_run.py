"""Every paper-scale cell runs one optimisation step per phase through the pipeline's own launch
path (snakemake -> torchrun with 2 gloo CPU processes -> qbench train), on a tiny generated
ImageNet / VOC in the real folder layouts, with the FP weights (ResNets, SSD's ImageNet VGG16)
read from generated files. Only sizes and paths come from the site file below; every other
value is workflows/config/paper.yaml's, so a cluster user cannot hit a launch or config error
that this test never saw."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import ROOT, snakemake, write_yaml
from qbench.workflow import plan

# One cell per distinct run shape: each model's FP cell (trained or imported), each phase kind
# (weights / activations only / both), k-means with a level set of each size, linear init,
# shared quantizers, from scratch, and every SSD cell. QBENCH_ALL_PAPER_CELLS=1 runs all of them.
# Measured on a shared 2-core machine at load average 10-13: the 11 classification cells here
# 508 s; all classification cells about 1 min each (10 in 11 min).
REPRESENTATIVE = ("alexnet_fp", "alexnet_w3pm2a32", "alexnet_w1a2", "alexnet_w2a32_linear",
                  "alexnet_w2a32_shared", "resnet18_fp", "resnet18_w5a32", "resnet18_w32a2",
                  "resnet18_w3pm4a32_scratch", "resnet50_fp", "resnet50_w2a32", "ssd_fp",
                  "ssd_w2a32", "ssd_w3pm4a32", "ssd_w3pm4a8")

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")


def _fake_imagenet(root: Path, classes: int = 1000) -> Path:
    """ROOT/{train,val}/<wnid>/*.JPEG, one small image per class and split."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            img = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(img).save(d / f"n{c:08d}_{split}.JPEG", format="JPEG")
    return root


def _fake_vocdevkit(root: Path, per_year: int = 4) -> Path:
    """VOCdevkit/VOC2007 (trainval + test) and VOC2012 (trainval): JPEGs, XML boxes, id lists."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for year in (2007, 2012):
        base = root / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True)
        splits = {"trainval": per_year, **({"test": per_year} if year == 2007 else {})}
        for split, n in splits.items():
            ids = [f"{year}_{split}_{i:04d}" for i in range(n)]
            for k, iid in enumerate(ids):
                Image.fromarray(rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)).save(
                    base / "JPEGImages" / f"{iid}.jpg", format="JPEG")
                x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 40))
                (base / "Annotations" / f"{iid}.xml").write_text(
                    f"<annotation><filename>{iid}.jpg</filename><size><width>160</width>"
                    f"<height>120</height><depth>3</depth></size><object>"
                    f"<name>{VOC_CLASSES[k % 20]}</name><difficult>0</difficult><bndbox>"
                    f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x0 + 80}</xmax><ymax>{y0 + 60}</ymax>"
                    f"</bndbox></object></annotation>")
            (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def _fake_weights(tmp: Path) -> dict[str, str]:
    """FP weights of the ResNets (qbench's models, 1000 classes) and a torchvision-layout VGG16."""
    from qbench.models import build_model

    out = {}
    for arch in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        out[arch] = str(tmp / f"{arch}.pth")
        torch.save(build_model(arch, 1000, 3).state_dict(), out[arch])
    g = torch.Generator().manual_seed(0)
    vgg, i, c_in = {}, 0, 3
    for c_out in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if c_out == "M":
            i += 1
            continue
        vgg[f"features.{i}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * 0.02
        vgg[f"features.{i}.bias"] = torch.zeros(c_out)
        i, c_in = i + 2, c_out
    for name, shape in (("classifier.0", (4096, 25088)), ("classifier.3", (4096, 4096))):
        vgg[f"{name}.weight"] = torch.randn(*shape, generator=g) * 0.01
        vgg[f"{name}.bias"] = torch.zeros(shape[0])
    out["vgg16"] = str(tmp / "vgg16.pth")
    torch.save(vgg, out["vgg16"])
    return out


@pytest.mark.slow
def test_every_paper_cell_runs_one_step_per_phase_under_torchrun(tmp_path):
    if not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with gloo")
    detection = all(importlib.util.find_spec(m) for m in ("mmdet", "mmcv", "mmengine"))
    weights = _fake_weights(tmp_path)
    one_step = {"fp": {"epochs": {"fp": 1}}, "weights": {"epochs": {"weights": 1}},
                "activations": {"epochs": {"activations": 1, "joint": 1}},
                "both": {"epochs": {"weights": 1, "activations": 1, "joint": 1}}}
    site = {
        "scale": "paper",
        # 2 processes per job (torchrun --nproc_per_node=gpu), on CPUs
        "resources": {"train": {"threads": 1, "gpu": 2, "mem_mb": 4000}},
        "train": {"device": "cpu", "quant": {"calib_samples": 4},
                  "data": {"root": str(_fake_imagenet(tmp_path / "imagenet")), "train_size": 4,
                           "test_size": 4, "batch_size": 4, "workers": 0}},
        "fp_weights": {"resnet18": weights["resnet18"], "resnet50": weights["resnet50"]},
        "phases": one_step,
        "detection": {
            "enabled": detection,
            "train": {"device": "cpu", "quant": {"calib_samples": 2}, "optim": {"milestones": []},
                      "detect": {"eval_interval": 1},
                      "data": {"root": str(_fake_vocdevkit(tmp_path / "VOCdevkit")), "train_size": 4,
                               "test_size": 2, "batch_size": 4, "workers": 0}},
            "phases": {"fp": {"epochs": {"fp": 1}, "optim": {"milestones": []},
                              "detect": {"backbone_checkpoint": weights["vgg16"]}},
                       "weights": {"epochs": {"weights": 1}}, "both": {"epochs": {"joint": 1}}}},
    }
    if not os.environ.get("QBENCH_ALL_PAPER_CELLS"):
        site["cells"] = {"only": [c for c in REPRESENTATIVE if detection or not c.startswith("ssd")]}
    cfg = plan.merge_scale_file(dict(site), ROOT / "workflows" / "config")
    cells = plan.enabled_cells(cfg)
    if os.environ.get("QBENCH_ALL_PAPER_CELLS"):
        n_detect = sum(c.task == "detect" for c in plan.load_cells().values())
        assert len(cells) == len(plan.load_cells()) - (0 if detection else n_detect)
    site_file = write_yaml(tmp_path / "site.yaml", site)
    targets = [f"results/paper/runs/{c.id}/s0/metrics.json" for c in cells]
    res = snakemake(tmp_path, *targets, "--cores", "2", "--keep-going", "--configfile", str(site_file),
                    timeout=3000)
    logs = sorted((tmp_path / "results" / "paper" / "logs" / "train").glob("*.log"))
    tail = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs
                     if "Traceback" in p.read_text())
    assert res.returncode == 0, (res.stderr[-3000:], tail)
    for cell in cells:
        run = tmp_path / "results" / "paper" / "runs" / cell.id / "s0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "complete", cell.id
        env = json.loads((run / "env.json").read_text())
        assert env.get("world_size") == 2, cell.id
        rc = plan.run_config(cfg, cell, 0)
        epochs = sum(rc["epochs"].values())
        assert len(metrics["history"]) == epochs, cell.id  # FP rows of imported weights: 0
