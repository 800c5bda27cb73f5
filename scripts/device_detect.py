"""One SSD300-VGG16 training iteration and one prediction on a device, FP and W3(+-4)/A8.

Used by ``scripts/device_check.sh`` (step ``detect``) to confirm, in seconds, what a
paper-scale Table 4 job needs before it holds GPUs for days: the device pre-flight passes
(a GPU is visible and mmcv has CUDA ops, ``qbench.preflight``), mmdet's SSD with torchvision's
input normalisation trains one step (loss, backward, SGD) and predicts (mmcv's NMS) on the
device, and the paper's quantizers (weights 3(+-4), activations A8 calibrated on the batch)
do the same inside it. Synthetic images; nothing is downloaded.

    python3 scripts/device_detect.py --device cuda --out-json OUT/detect_cuda.json
    python3 scripts/device_detect.py --device cpu --small     # check the script here
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the qbench of this checkout, installed or not


def _batch(n: int, size: int, num_classes: int, device: str, seed: int):
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g))
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = 0.1 * size + torch.rand(3, 2, generator=g) * size * 0.3
        s = DetDataSample(metainfo={"img_shape": (size, size), "ori_shape": (size, size),
                                    "scale_factor": (1.0, 1.0), "pad_shape": (size, size)})
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1).clamp(max=size - 1),
                                      labels=torch.randint(0, num_classes, (3,), generator=g))
        samples.append(s)
    return {"inputs": inputs, "data_samples": samples}


def one_iteration(device: str, small: bool, quantized: bool, images: int) -> dict:
    """Build the SSD (full SSD300 unless ``small``), optionally quantize it as the W3(+-4)/A8
    cell, and run one training step and one prediction on ``device``."""
    import torch

    from qbench.detection.config import DetectRunConfig
    from qbench.detection.model import build_ssd, ssd_quant_layers
    from qbench.quant import quantize_

    size = 96 if small else 300
    raw = {"task": "detect", "device": device,
           "data": {"dataset": "voc", "root": "/unused", "image_size": size, "batch_size": images},
           "epochs": {"fp": 1} if not quantized else {"joint": 1},
           "optim": {"milestones": []}, "detect": {"pixel_norm": "torchvision", "width_div": 8 if small else 1}}
    if quantized:
        raw["quant"] = {"weights": "3bit_pm4", "activations": "act_linear8", "act_init": "linear"}
        raw["start"] = {"mode": "scratch"}
    cfg = DetectRunConfig.from_dict(raw)
    t0 = time.perf_counter()
    model = build_ssd(cfg).to(device)
    batch = _batch(images, size, cfg.model.num_classes, device, seed=0)
    method = None
    if quantized:
        layers = ssd_quant_layers(model)
        method = quantize_(model, cfg.quant.method_config(), include=layers)
        model.train()
        inputs = model.data_preprocessor(batch, False)["inputs"]
        method.calibrate(model, iter([inputs]), images)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode="loss")
    loss = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v) for v in losses.values())
    opt.zero_grad()
    loss.backward()
    grad_ok = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_train = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = model(**model.data_preprocessor(batch, False), mode="predict")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    on = {p.device.type for p in model.parameters()}
    return {"quantized": quantized, "loss": float(loss), "finite_grads": bool(grad_ok),
            "param_devices": sorted(on), "predictions": len(pred),
            "boxes_device": str(pred[0].pred_instances.bboxes.device),
            "input_std": float(data["inputs"].float().std()),
            "seconds": round(time.perf_counter() - t0, 2), "train_step_s": round(t_train, 2),
            "quantized_layers": len(method.report.weight_layers) if method is not None else 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="1/8-width SSD at 96 px (CPU check)")
    parser.add_argument("--images", type=int, default=8, help="images in the batch (8 per GPU)")
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args(argv)

    from qbench.preflight import cuda_problem

    result = {"device": args.device, "small": args.small, "runs": []}
    rc = 0
    if args.device.startswith("cuda"):
        result["preflight"] = cuda_problem(args.device, mmcv_ops=True) or "ok"
        print(f"preflight: {result['preflight']}")
        if result["preflight"] != "ok":
            rc = 1
    if rc == 0:
        for quantized in (False, True):
            try:
                r = one_iteration(args.device, args.small, quantized, args.images)
                ok = r["finite_grads"] and r["param_devices"] == [args.device.split(":")[0]] and \
                    r["boxes_device"].startswith(args.device.split(":")[0]) and 0.3 < r["input_std"] < 3
                r["ok"] = bool(ok)
                rc |= 0 if ok else 1
            except Exception as e:  # the report says what failed; the next run still goes
                r = {"quantized": quantized, "ok": False, "error": f"{type(e).__name__}: {e}",
                     "traceback": traceback.format_exc()[-2000:]}
                rc = 1
            result["runs"].append(r)
            print(("W3(+-4)/A8" if quantized else "FP") + f" SSD one iteration on {args.device}: "
                  + ("ok" if r["ok"] else "FAILED") + " " + json.dumps({k: v for k, v in r.items() if k != "traceback"}))
    print(f"detect {'ok' if rc == 0 else 'FAILED'} on {args.device}")
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
