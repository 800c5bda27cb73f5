"""Train the classification cells of a pipeline scale (default: smoke) without snakemake.

Used by ``scripts/device_check.sh`` on a machine that has a GPU but no snakemake. Mirrors the
pipeline step by step with the library functions it calls:

- the scale config: ``plan.merge_scale_file`` of ``{"scale": ..., "train": {"device": ...}}``
  over ``workflows/config/<scale>.yaml`` (what ``snakemake --config`` does), then validated
  and completed by ``qbench.workflow.scale_config.resolve`` (what the Snakefile does); without
  pydantic, the defaults of ``workflows/schemas/config.schema.yaml``, which is generated from it;
- the cells: ``plan.enabled_cells`` + ``plan.validate_semantics``; classification cells only;
- each run's config: ``plan.run_config`` written with ``plan.dump_yaml`` to
  ``results/<scale>/configs/<cell>_s<seed>.yaml`` (rule ``render_config``), relative to a
  scratch working directory, so fine-tuned cells find their FP checkpoint at the path
  ``plan.fp_checkpoint`` gives (``results/<scale>/runs/<fp cell>/s<seed>/checkpoint.pt``);
- training: ``qbench.cli.main(["train", CONFIG, "--out", RUN_DIR, "--quiet", "--threads", N])``,
  the entry point of ``python -m qbench.cli train`` (rules ``train_fp`` / ``train_quant``);
  ``--subprocess`` runs exactly that command instead.

Prints a table (cell, hard top-1, wall seconds) and writes a JSON summary.

    python3 scripts/device_smoke.py --device cuda --out-json OUT/smoke_cuda.json
    python3 scripts/device_smoke.py --device cpu --cells alexnet_fp alexnet_w2a32   # check here
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the qbench of this checkout, installed or not


def schema_defaults(schema: dict, instance: dict) -> dict:
    """Fill the ``default`` of every missing property, recursively (the model's defaults)."""
    out = copy.deepcopy(instance)
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if isinstance(out.get(key), dict) and sub.get("properties"):
            out[key] = schema_defaults(sub, out[key])
    return out


def load_scale(scale: str, device: str) -> tuple[dict, list[str]]:
    """The scale config as the Snakefile builds it, with ``train.device`` set; plus notes."""
    import yaml

    from qbench.workflow import plan

    notes = []
    cfg = plan.merge_scale_file({"scale": scale, "train": {"device": device}}, ROOT / "workflows" / "config")
    try:
        from qbench.workflow import scale_config  # needs pydantic, which a bare GPU machine may lack
    except ImportError:
        scale_config = None
    if scale_config is not None:
        cfg = scale_config.resolve(cfg)
        notes.append("schema: validated by qbench.workflow.scale_config")
    else:
        schema_path = ROOT / "workflows" / "schemas" / "config.schema.yaml"
        cfg = schema_defaults(yaml.safe_load(schema_path.read_text()), cfg)
        try:
            import jsonschema  # optional: absent on the GPU machine
            jsonschema.validate(cfg, yaml.safe_load(schema_path.read_text()))
            notes.append("schema: validated with jsonschema")
        except ImportError:
            notes.append("schema: neither pydantic nor jsonschema installed, defaults filled, not validated")
    data = cfg["train"].get("data", {})
    if data.get("dataset") == "fashion_mnist":
        from qbench.data import DatasetError, find_fashion_mnist
        try:
            find_fashion_mnist(data.get("root"))
        except DatasetError as exc:
            cfg["train"]["data"] = {**data, "dataset": "fake", "root": None}
            notes.append(f"data: Fashion-MNIST not found ({exc}); overridden to dataset 'fake'")
    else:
        notes.append(f"data: dataset {data.get('dataset')!r} needs no files" if data.get("dataset") == "fake"
                     else f"data: dataset {data.get('dataset')!r}")
    return cfg, notes


def pick_cells(cfg: dict, wanted: list[str] | None):
    """Classification cells of the scale (FP cells first), restricted to ``wanted`` plus the FP
    cells the wanted fine-tuned cells start from."""
    from qbench.paper import fp_cell_of
    from qbench.workflow import plan

    cells = [c for c in plan.enabled_cells(cfg) if c.task == "classify"]
    plan.validate_semantics(cfg, cells)
    if wanted:
        known = {c.id for c in cells}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise SystemExit(f"cells not in scale {cfg['scale']!r}: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        ids = set(wanted)
        for c in cells:
            if c.id in wanted and c.kind == "quant" and c.start == "pretrained":
                ids.add(fp_cell_of(c.model).id)
        cells = [c for c in cells if c.id in ids]
    return sorted(cells, key=lambda c: c.kind != "fp")  # stable: registry order within each kind


def train_cell(cfg: dict, cell, seed: int, threads: int, use_subprocess: bool) -> dict:
    from qbench.workflow import plan

    rc = plan.run_config(cfg, cell, seed)
    res = plan.results_dir(cfg)
    config_path = Path(f"{res}/configs/{cell.id}_s{seed}.yaml")
    plan.write_text(config_path, plan.dump_yaml(rc))
    out = Path(plan.run_dir(cfg, cell.id, seed))
    row = {"cell": cell.id, "kind": cell.kind, "model": cell.model, "weights": cell.weights,
           "activations": cell.activations, "seed": seed, "device": rc.get("device"),
           "phases": {k: v for k, v in (rc.get("epochs") or {}).items() if v}, "rc": None,
           "hard_top1": None, "soft_top1": None, "wall_s": None, "error": None}
    ckpt = (rc.get("start") or {}).get("checkpoint")
    if ckpt and not Path(ckpt).is_file():
        row["error"] = f"start checkpoint {ckpt} missing (its FP cell failed or was skipped)"
        return row
    argv = ["train", str(config_path), "--out", str(out), "--quiet", "--threads", str(threads)]
    t0 = time.perf_counter()
    try:
        if use_subprocess:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            proc = subprocess.run([sys.executable, "-m", "qbench.cli", *argv], env=env,
                                  capture_output=True, text=True)
            row["rc"] = proc.returncode
            if proc.returncode:
                row["error"] = (proc.stderr or proc.stdout).strip()[-1500:]
        else:
            from qbench import cli
            row["rc"] = cli.main(argv)
    except BaseException as exc:  # noqa: BLE001 - one failing cell must not stop the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        row["rc"] = getattr(exc, "code", None) if isinstance(exc, SystemExit) else 1
        row["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1500:]
        traceback.print_exc()
    row["wall_s"] = time.perf_counter() - t0
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        row.update(hard_top1=m["final"]["hard_top1"], soft_top1=m["final"]["soft_top1"],
                   train_wall_s=m.get("wall_time_s"), images_per_s=m.get("images_per_s"),
                   peak_memory_mb=m.get("peak_memory_mb"), epochs=len(m.get("history", [])))
    elif row["error"] is None:
        row["error"] = f"no metrics.json (rc {row['rc']}); see {out / 'train.log'}"
    log = out / "train.log"
    if row["error"] and log.is_file():
        row["train_log_tail"] = log.read_text()[-1500:]
    return row


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="train.device of every run: cuda | cpu | auto")
    ap.add_argument("--scale", default="smoke", help="workflows/config/<scale>.yaml")
    ap.add_argument("--cells", nargs="*", default=None,
                    help="cell ids (default: every classification cell of the scale); the FP cells "
                         "that fine-tuned cells start from are added")
    ap.add_argument("--budget-s", type=float, default=110.0,
                    help="start no new cell after this many seconds (the rest are marked skipped)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per run (default: the scale's resources.train.threads)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--subprocess", action="store_true",
                    help="run `python -m qbench.cli train` per cell (as the pipeline) instead of in-process")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    import torch

    cfg, notes = load_scale(args.scale, args.device)
    cells = pick_cells(cfg, args.cells)
    threads = args.threads or int(cfg["resources"]["train"]["threads"])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"qbench_{args.scale}_"))
    workdir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    print(f"scale {args.scale}, device {args.device} (CUDA available: {cuda}"
          f"{', ' + torch.cuda.get_device_name(0) if cuda else ''}), torch {torch.__version__}, "
          f"{threads} thread(s) per run, workdir {workdir}", flush=True)
    for n in notes:
        print("  " + n, flush=True)
    print(f"cells: {', '.join(c.id for c in cells)}", flush=True)
    if args.device.startswith("cuda") and not cuda:
        print("error: --device cuda but CUDA is not available", file=sys.stderr)

    here = os.getcwd()
    os.chdir(workdir)  # relative run/config paths of the pipeline land in the scratch dir
    rows = []
    try:
        for cell in cells:
            seed = plan_seed(cfg, cell)
            if time.perf_counter() - t_start > args.budget_s:
                rows.append({"cell": cell.id, "kind": cell.kind, "rc": None, "hard_top1": None,
                             "wall_s": None, "error": f"skipped: budget {args.budget_s:g} s used up"})
                print(f"{cell.id}: skipped (budget)", flush=True)
                continue
            row = train_cell(cfg, cell, seed, threads, args.subprocess)
            rows.append(row)
            print(f"{cell.id}: rc {row['rc']}, hard top-1 {_fmt(row['hard_top1'], '.2f')}, "
                  f"{_fmt(row['wall_s'], '.1f')} s" + (f"  ERROR {row['error'].splitlines()[-1]}" if row["error"] else ""),
                  flush=True)
    finally:
        os.chdir(here)

    width = max([len(r["cell"]) for r in rows] + [4])
    print(f"\n{'cell':<{width}}  hard top-1  soft top-1  wall s  status")
    for r in rows:
        status = "ok" if not r["error"] else r["error"].splitlines()[-1][:60]
        print(f"{r['cell']:<{width}}  {_fmt(r['hard_top1'], '10.2f')}  {_fmt(r.get('soft_top1'), '10.2f')}  "
              f"{_fmt(r['wall_s'], '6.1f')}  {status}")
    ok = sum(1 for r in rows if not r["error"])
    total = time.perf_counter() - t_start
    print(f"{ok}/{len(rows)} cells ok in {total:.1f} s", flush=True)
    result = {
        "scale": args.scale, "device": args.device, "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
        "python": sys.version.split()[0], "threads_per_run": threads, "in_process": not args.subprocess,
        "notes": notes, "train_section": cfg["train"], "cells": rows, "ok": ok, "total_s": total,
        "workdir": str(workdir),
    }
    if args.out_json is not None:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out_json}")
    return 0 if ok == len(rows) and rows else 1


def plan_seed(cfg: dict, cell) -> int:
    from qbench.workflow import plan
    return plan.seeds_of(cfg, cell)[0]  # smoke: one seed; FP cells their first fp_seed


if __name__ == "__main__":
    sys.exit(main())
