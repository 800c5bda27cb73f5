"""The paper-scale detection recipe: ImageNet VGG16 initialisation, lr/T from the epoch plan,
and training under torchrun through mmengine's distributed launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from qbench.detection.config import DetectRunConfig


def _fake_vgg16(model, path):
    """A VGG16 state_dict in torchvision's layout, sized for ``model``'s (narrow) backbone."""
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    g = torch.Generator().manual_seed(1)
    state, index = {}, 0
    for conv in convs[:13]:
        state[f"features.{index}.weight"] = torch.randn(conv.weight.shape, generator=g)
        state[f"features.{index}.bias"] = torch.randn(conv.bias.shape, generator=g)
        index += 2 if index not in (2, 7, 14, 21) else 3  # ReLUs and the 4 max-pools between
    conv6, conv7 = convs[13], convs[14]
    fc = 4 * conv6.out_channels
    state["classifier.0.weight"] = torch.randn(fc, conv6.in_channels * 49, generator=g)
    state["classifier.0.bias"] = torch.randn(fc, generator=g)
    state["classifier.3.weight"] = torch.randn(fc, fc, generator=g)
    state["classifier.3.bias"] = torch.randn(fc, generator=g)
    torch.save(state, path)
    return state


def test_ssd_backbone_from_imagenet_vgg16(tiny_config, tmp_path, mmdet_stack):
    from qbench.detection.model import build_ssd, load_vgg16_backbone
    from qbench.detection.runner import run_from_config

    tiny_config["detect"]["width_div"] = 8
    model = build_ssd(DetectRunConfig.from_dict(tiny_config))
    state = _fake_vgg16(model, tmp_path / "vgg16.pth")
    assert len(load_vgg16_backbone(model, tmp_path / "vgg16.pth")) == 15
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert torch.equal(convs[0].weight, state["features.0.weight"])
    assert torch.equal(convs[12].weight, state["features.28.weight"])
    # conv6 = fc6 subsampled: every 4th unit, every 3rd position of the 7x7 kernel
    fc6 = state["classifier.0.weight"].view(-1, convs[13].in_channels, 7, 7)
    assert torch.equal(convs[13].weight, fc6[::4, :, ::3, ::3])
    assert torch.equal(convs[14].weight[:, :, 0, 0], state["classifier.3.weight"][::4, ::4])

    # through the runner: an FP run from scratch starts from the file's backbone
    tiny_config["detect"]["backbone_checkpoint"] = str(tmp_path / "vgg16.pth")
    tiny_config["detect"]["pixel_norm"] = "torchvision"  # the normalisation its weights expect
    tiny_config["optim"]["lr"] = 1e-12  # one step leaves the loaded weights (numerically) as they are
    run_from_config(tiny_config, tmp_path / "fp", quiet=True)
    trained = torch.load(tmp_path / "fp" / "checkpoint.pt", weights_only=True)["model"]
    torch.testing.assert_close(trained["backbone.features.2.weight"], state["features.2.weight"])
    assert "backbone from ImageNet VGG16" in (tmp_path / "fp" / "train.log").read_text()

    # a pickled object that is not plain data is refused (weights_only), a wrong layout named
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a VGG16 state_dict"):
        load_vgg16_backbone(model, tmp_path / "bad.pth")
    tiny_config["detect"]["backbone_checkpoint"] = str(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="^detect.backbone_checkpoint: "):
        run_from_config(tiny_config, tmp_path / "fp2", quiet=True)


def test_temperature_epoch_scale_and_per_phase_lr(tiny_config, tmp_path, mmdet_stack):
    from qbench.detection.runner import run_from_config

    tiny_config["quant"].update(weights="ternary")
    tiny_config["epochs"] = {"fp": 0, "weights": 2}
    tiny_config["optim"].update(milestones=[1], gamma=0.5)
    tiny_config["temperature"] = {"slope": 10, "epoch_scale": 3}
    tiny_config["detect"]["eval_interval"] = 2
    hist = run_from_config(tiny_config, tmp_path / "q", quiet=True)["history"]
    assert [r["T"] for r in hist] == [30.0, 60.0]
    assert [r["lr"] for r in hist] == pytest.approx([1e-3, 5e-4])


@pytest.mark.slow
def test_two_processes_match_one(tiny_config, tmp_path, mmdet_stack):
    """torchrun with 2 gloo CPU processes trains the run 1 process trains: same global batches,
    one set of files, rank 0's model close to the single process's. SSD's loss is normalised
    by the positive anchors of each process's share, so the averaged gradient is close to, not
    equal to, the single-process one."""
    if not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with gloo")
    tiny_config["optim"]["lr"] = 1e-3
    tiny_config["data"]["batch_size"] = 4
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    one, two = tmp_path / "one", tmp_path / "two"
    train = ["-m", "qbench", "train", str(cfg), "--quiet", "--out"]
    subprocess.run([sys.executable, *train, str(one)], check=True, env=env, capture_output=True, timeout=600)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    res = subprocess.run(torchrun + train + [str(two)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((two / "env.json").read_text())["world_size"] == 2
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    # one training, not two: one history row per epoch, the whole set seen once per epoch
    assert len(m2["history"]) == len(m1["history"]) == 1
    assert (two / "train.log").read_text().count("epoch 1/1") == 1
    c1 = torch.load(one / "checkpoint.pt", weights_only=True)
    c2 = torch.load(two / "checkpoint.pt", weights_only=True)
    assert c1["train_images"] == c2["train_images"] == tiny_config["data"]["train_size"]
    assert c1["iter"] == c2["iter"]  # same number of optimisation steps of the global batch
    assert m2["history"][0]["train_loss"] == pytest.approx(m1["history"][0]["train_loss"], rel=0.25)
    torch.manual_seed(0)
    from qbench.detection.model import build_ssd

    init = build_ssd(DetectRunConfig.from_dict(tiny_config)).state_dict()
    for key in ("backbone.features.2.weight", "bbox_head.cls_convs.0.0.weight"):
        d1, d2 = c1["model"][key] - init[key], c2["model"][key] - init[key]
        cos = torch.nn.functional.cosine_similarity(d1.flatten(), d2.flatten(), dim=0)
        assert cos > 0.8, (key, float(cos))


def test_paper_scale_plans_every_job_on_cuda_with_the_cited_ssd_batch(tmp_path):
    """`snakemake -n --config scale=paper` with a site file plans, and every job it plans (every
    cell and seed) runs on CUDA; the FP SSD takes mmdet's batch 64, >= 8 images per GPU."""
    from pathlib import Path

    from qbench.paper import load_cells
    from qbench.workflow import plan

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "imagenet").mkdir()
    weights = {}
    for name in ("resnet18", "resnet50", "vgg16"):
        weights[name] = tmp_path / f"{name}.pth"
        weights[name].write_bytes(b"x")
    site = {"train": {"data": {"root": str(tmp_path / "imagenet")}},
            "fp_weights": {a: str(weights[a]) for a in ("resnet18", "resnet50")},
            "detection": {"phases": {"fp": {"detect": {"backbone_checkpoint": str(weights["vgg16"])}}}}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
                          "-n", "reproduce_tables", "--config", "scale=paper", "--configfile",
                          str(tmp_path / "site.yaml")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr

    cfg = plan.merge_scale_file({"scale": "paper", **site}, root / "workflows" / "config")
    cells = plan.enabled_cells(cfg)
    assert {c.id for c in cells} == set(load_cells())
    devices = {(c.id, s): plan.run_config(cfg, c, s)["device"] for c in cells for s in plan.seeds_of(cfg, c)}
    assert set(devices.values()) == {"cuda"}, {k: v for k, v in devices.items() if v != "cuda"}
    gpus = cfg["resources"]["train"]["gpu"]
    fp = DetectRunConfig.from_dict(plan.run_config(cfg, load_cells()["ssd_fp"], 0))
    assert (fp.data.batch_size, fp.optim.lr, fp.detect.warmup_iters, fp.epochs.fp) == (64, 1e-3, 500, 240)
    assert fp.data.batch_size // gpus >= 8 and fp.detect.pixel_norm == "torchvision"
    for cid in ("ssd_w2a32", "ssd_w3pm4a32", "ssd_w3pm4a8"):
        q = DetectRunConfig.from_dict(plan.run_config(cfg, load_cells()[cid], 0))
        assert q.data.batch_size == 16 and q.detect.pixel_norm == "torchvision"  # Sec. 4.2's batch


def test_cited_ssd_fp_recipe_is_the_installed_mmdet_config(mmdet_stack):
    """recipe.yaml's cited FP SSD values are what mmdet's SSD300 VOC07+12 config gives, read from
    the installed package: batch 8 x 8 GPUs, lr 1e-3, 500 warm-up iterations, milestones 16/20 of
    24 epochs over a 10x repeated dataset (= 160/200 of 240 passes here)."""
    from mmengine.config import Config

    from qbench.detection.model import mmdet_config_path
    from qbench.paper.recipe import _recipe

    mm = Config.fromfile(str(mmdet_config_path()))
    times = mm.train_dataloader.dataset.times
    warmup, steps = mm.param_scheduler
    fp = _recipe()["detect"]["fp"]
    assert fp["data.batch_size"] == mm.auto_scale_lr.base_batch_size == 8 * mm.train_dataloader.batch_size
    assert fp["optim.lr"] == mm.optim_wrapper.optimizer.lr
    assert warmup.type == "LinearLR" and not warmup.by_epoch and fp["detect.warmup_iters"] == warmup.end
    assert fp["optim.milestones"] == [m * times for m in steps.milestones]
    assert fp["epochs.fp"] == mm.train_cfg.max_epochs * times
    assert mm.model.data_preprocessor.std == [1, 1, 1]  # Caffe-style: why pixel_norm exists
