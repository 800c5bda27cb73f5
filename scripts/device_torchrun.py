"""torchrun on the device: one cell trained by N processes (nccl on N GPUs, or gloo on the CPU
with --device cpu) against the same cell trained by one process, with the DDP test's case and
tolerances (tests/train/test_ddp.py). Used by scripts/device_check.sh.

    python scripts/device_torchrun.py --device cuda --nproc 2 --workdir DIR --out-json F.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import SMOKE, merge  # noqa: E402
from train.test_ddp import CASE, assert_two_processes_match_one  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cuda", "cpu"], required=True)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out-json", type=Path, required=True)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cfg = args.workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(merge(merge(SMOKE, CASE), {"device": args.device})))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one, many = args.workdir / "one", args.workdir / "many"
    record = {"device": args.device, "nproc": args.nproc}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "qbench", "train", str(cfg), "--out", str(one), "--quiet"],
                   check=True, env=env, timeout=300)
    record["one_process_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          f"--nproc_per_node={args.nproc}", "-m", "qbench.cli", "train", str(cfg),
                          "--out", str(many), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    record["torchrun_s"] = round(time.time() - t0, 1)
    record["torchrun_rc"] = res.returncode
    record["deprecation_warning"] = "torch.distributed.nn.functional" in res.stderr
    if res.returncode != 0:
        print(res.stderr[-4000:], file=sys.stderr)
    else:
        m1 = json.loads((one / "metrics.json").read_text())
        mn = json.loads((many / "metrics.json").read_text())
        record["final_one"], record["final_torchrun"] = m1["final"], mn["final"]
        if args.nproc == 2:
            try:
                assert_two_processes_match_one(one, many)
                record["match"] = True
            except AssertionError as exc:
                record["match"] = False
                record["mismatch"] = str(exc)[:500]
        else:  # one GPU: a single torchrun process must train exactly what a plain run trains
            record["match"] = [r["train_loss"] for r in m1["history"]] == [r["train_loss"] for r in mn["history"]]
    args.out_json.write_text(json.dumps(record, indent=1))
    print(json.dumps(record))
    ok = res.returncode == 0 and record.get("match") and not record["deprecation_warning"]
    print(f"torchrun {args.nproc} process(es) on {args.device}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
