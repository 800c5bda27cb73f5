"""Stand-in for `qbench train` in pipeline tests: writes a run directory per docs/CONTRACTS.md
(config.yaml, env.json, metrics.json, checkpoint.pt, model_hard.pt, predictions.npz, train.log)
in well under a second, with accuracies derived from the config so that different cells differ:
every run predicts the same test labels, correct on a fraction of images that follows the cell.

Usage (as the pipeline calls the trainer): python fake_train.py CONFIG.yaml --out DIR [--quiet]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import yaml


def _noise(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--cache", default=None)
    args = ap.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    if os.environ.get("FAKE_TRAIN_FAIL_ARCH") == cfg["model"]["arch"]:
        print("fake failure", file=sys.stderr)
        return 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cache:  # shows which directory the argument named, exactly as it arrived
        Path(args.cache).mkdir(parents=True, exist_ok=True)
    q = cfg.get("quant", {})
    bits = {None: 32, "binary": 1, "ternary": 2, "3bit_pm2": 3, "3bit_pm4": 3, "5bit": 5}
    wb = bits.get(q.get("weights"), 8)
    ab = {None: 32, "act_binary": 1, "act_2bit": 2}.get(q.get("activations"), 8)
    base = 60 + 5 * min(wb, 5) + 2 * min(ab, 5) - (3 if q.get("init") == "linear" else 0) \
        - (2 if q.get("sharing") == "shared" else 0) - (20 if cfg["start"]["mode"] == "scratch" and q.get("weights") else 0)
    top1 = base + 2 * _noise(args.config + str(cfg["seed"]))
    import numpy as np

    n_test = int(cfg.get("data", {}).get("test_size") or 100)
    stride = int(cfg.get("data", {}).get("epoch_test_stride", 1))
    labels = np.random.default_rng(cfg.get("data", {}).get("subset_seed", 0)).integers(0, 10, n_test)
    rng = np.random.default_rng(int(_noise(args.config + str(cfg["seed"])) * 2**32))

    def predict(acc: float, n: int, lab: np.ndarray) -> np.ndarray:
        right = rng.random(n) < acc / 100.0
        return np.where(right, lab, (lab + 1) % 10).astype(np.int16)

    hard = predict(top1, n_test, labels)
    top1 = 100.0 * float((hard == labels).mean())
    history = []
    epochs = sum(cfg.get("epochs", {}).values()) or 1
    slope = cfg.get("temperature", {}).get("slope", 5)
    curve_label = labels[::stride]
    curve_hard, curve_soft = [], []
    for ep in range(1, epochs + 1):
        gap = 10.0 / ep
        curve_hard.append(predict(top1 - 3 / ep, curve_label.size, curve_label))
        curve_soft.append(predict(top1 - 3 / ep + gap, curve_label.size, curve_label))
        history.append({"epoch": ep, "phase": "weights", "T": slope * ep, "lr": 0.01,
                        "train_loss": 2.0 / ep, "train_top1": top1 - 5 + ep,
                        "hard_top1": 100.0 * float((curve_hard[-1] == curve_label).mean()),
                        "hard_top5": 90.0, "soft_top1": 100.0 * float((curve_soft[-1] == curve_label).mean()),
                        "soft_top5": 92.0, "test_images": int(curve_label.size), "time_s": 0.1})
    soft = predict(top1 + 1, n_test, labels)
    np.savez(out / "predictions.npz", label=labels.astype(np.int16), hard=hard, soft=soft,
             curve_epoch=np.arange(1, epochs + 1, dtype=np.int16), curve_hard=np.stack(curve_hard),
             curve_soft=np.stack(curve_soft), curve_label=curve_label.astype(np.int16),
             curve_stride=np.array(stride, np.int32))
    n_params = 1000
    metrics = {"task": "classify", "status": "complete",
               "final": {"hard_top1": top1, "hard_top5": min(99.0, top1 + 20),
                         "soft_top1": 100.0 * float((soft == labels).mean()),
                         "soft_top5": min(99.0, top1 + 21), "test_images": n_test},
               "history": history, "wall_time_s": 0.1, "images_per_s": 1000.0, "peak_memory_mb": 10.0,
               "quant_report": {"weight_layers": [], "activation_layers": []},
               "model_bits": {"fp_bits": 32 * n_params, "quantized_bits": wb * n_params + 64,
                              "ratio": 32 * n_params / (wb * n_params + 64)}}
    import torch

    torch.save({"conv.weight": torch.randn(4, 2, 3, 3), "layer2.0.conv1.weight": torch.randn(8, 4, 3, 3)},
               out / "checkpoint.pt")
    if q.get("weights") or q.get("activations"):
        torch.save({"layers": {}}, out / "model_hard.pt")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    (out / "env.json").write_text(json.dumps({"python": sys.version}))
    (out / "train.log").write_text("fake\n")
    (out / "metrics.json").write_text(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
