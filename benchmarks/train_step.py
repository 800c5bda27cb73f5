"""Training-step benchmark: full precision vs the paper's quantized networks, eager vs compiled.

Run: ``python -m benchmarks.train_step [--device cpu|cuda] [--compile|--no-compile]``.

For every model (ResNet-18, ResNet-50) and size it times one SGD step (zero_grad, forward,
cross-entropy, backward, step) of three variants built by ``qbench.models.build_model``:
``fp``, ``w3pm4_a2`` (weights 3bit_pm4, activations act_2bit) and ``w1_a1`` (binary /
act_binary), each quantized by ``quantize_model`` + ``calibrate_activations`` at T = 10. With
``--compile`` each variant also runs as ``torch.compile(model)`` (``<variant>_compiled``;
mode ``reduce-overhead``, i.e. CUDA graphs, on CUDA, inductor's default on the CPU).

Sizes:
- ``mini``: the mini scale's input (1x32x32, 10 classes), batch 64.
- ``paper``: ImageNet's (3x224x224, 1000 classes), batch 256 on CUDA and ``--paper-batch``
  (default 4) on the CPU; on CUDA in bfloat16 autocast with channels_last tensors (the way the
  paper scale trains on GPUs), fp32 on the CPU (``--paper-precision`` overrides).

Everything is measured in one process, interleaved (one step of every contender per round) and
reported as medians, so the ratios hold on a shared machine. Writes
``results/benchmarks/train_step.json`` (atomically) with, under
``train_step.<model>.<size>``: ``ms`` per contender, ``<variant>_vs_fp`` (the variant's step
over the FP step of the same mode: eager over eager FP, ``<variant>_compiled_vs_fp`` compiled
over compiled FP), ``fp_compiled_vs_fp`` (compiled FP over eager FP) and ``compile_s`` (first
call minus a warm call). Compiled keys are null when compilation is off or failed
(``compile_error``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch
import torch._dynamo
from torch import nn

from qbench.models import build_model
from qbench.quant import QuantPolicy, calibrate_activations, quantize_model, set_temperature

from . import quantizer
from .quantizer import _compile_limits, _load, _interleaved, _sync, machine_info, steady_allocator, write_json

OUT = Path("results/benchmarks/train_step.json")
MODELS = ("resnet18", "resnet50")
SIZES = ("mini", "paper")
VARIANTS = {"fp": None, "w3pm4_a2": ("3bit_pm4", "act_2bit"), "w1_a1": ("binary", "act_binary")}
T = 10.0


def size_spec(size: str, device: torch.device, paper_batch: int | None, paper_precision: str | None,
              mini_batch: int) -> dict:
    """Input shape, classes, batch, precision and memory format of a size on a device."""
    cuda = device.type == "cuda"
    if size == "mini":
        return {"input": [1, 32, 32], "classes": 10, "batch": mini_batch, "precision": "fp32",
                "channels_last": False}
    precision = paper_precision or ("bf16" if cuda else "fp32")
    return {"input": [3, 224, 224], "classes": 1000, "batch": paper_batch or (256 if cuda else 4),
            "precision": precision, "channels_last": cuda}


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def build_variant(arch: str, variant: str, spec: dict, x: torch.Tensor, device: torch.device) -> nn.Module:
    """The model of one variant on ``device``: same seed for all, quantized and calibrated."""
    torch.manual_seed(0)
    model = build_model(arch, spec["classes"], spec["input"][0])
    levels = VARIANTS[variant]
    if levels is not None:
        quantize_model(model, QuantPolicy(weight_levels=levels[0], act_levels=levels[1]))
    model.to(device)
    if spec["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if levels is not None:
        calibrate_activations(model, [x], num_samples=x.shape[0])
        set_temperature(model, T)
    return model.train()


def make_step(model, x, target, device, precision):
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
    return step


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _timed_first_calls(step, device, calls: int = 3) -> float:
    """Seconds of the first call minus a warm one (compilation; CUDA graphs record in call 2-3)."""
    times = []
    for _ in range(calls):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return max(times[0] - times[-1], 0.0)


def bench_cell(arch: str, size: str, device: torch.device, args) -> dict:
    # every cell compiles afresh: the variants of all cells share ResNet.forward's code object,
    # and its cache would otherwise fill up (and fall back to eager) after a few cells
    torch._dynamo.reset()
    with _compile_limits():
        return _bench_cell(arch, size, device, args)


def _bench_cell(arch: str, size: str, device: torch.device, args) -> dict:
    spec = size_spec(size, device, args.paper_batch, args.paper_precision, args.mini_batch)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(spec["batch"], *spec["input"], generator=gen).to(device)
    if spec["channels_last"]:
        x = x.to(memory_format=torch.channels_last)
    target = torch.randint(spec["classes"], (spec["batch"],), generator=gen).to(device)
    steps, compile_s, compile_error = {}, {}, None
    for variant in VARIANTS:
        model = build_variant(arch, variant, spec, x, device)
        steps[variant] = make_step(model, x, target, device, spec["precision"])
        if args.compile:
            try:
                twin = build_variant(arch, variant, spec, x, device)
                if args.compile_backend == "inductor":
                    mode = args.compile_mode or ("reduce-overhead" if device.type == "cuda" else "default")
                    compiled = torch.compile(twin, mode=mode)
                else:
                    compiled = torch.compile(twin, backend=args.compile_backend)
                steps[f"{variant}_compiled"] = make_step(compiled, x, target, device, spec["precision"])
                compile_s[variant] = _timed_first_calls(steps[f"{variant}_compiled"], device)
            except Exception as exc:  # keep the eager rows of a cell whose compilation fails
                compile_error = _err(exc)
                steps = {k: v for k, v in steps.items() if not k.endswith("_compiled")}
                args.compile = False  # the next cells would fail the same way
    timed = None
    warmup = 2 if size == "mini" else 1  # compiled contenders were warmed up by _timed_first_calls
    if any(k.endswith("_compiled") for k in steps):
        try:
            # a recompile (or a silent fall back to eager) in the timed rounds raises instead
            with torch._dynamo.config.patch(error_on_recompile=True):
                timed = _interleaved(steps, device, args.rounds, args.budget_s, warmup=warmup)
        except Exception as exc:
            compile_error = _err(exc)
            steps = {k: v for k, v in steps.items() if not k.endswith("_compiled")}
    if timed is None:
        timed = _interleaved(steps, device, args.rounds, args.budget_s, warmup=warmup)
    out = {**spec, "T": T, "ms": {k: v * 1e3 for k, v in timed.items()},
           "compiled": any(k.endswith("_compiled") for k in timed), "compile_error": compile_error,
           "compile_s": compile_s or None}
    for variant in VARIANTS:
        if variant != "fp":
            out[f"{variant}_vs_fp"] = timed[variant] / timed["fp"]
        c = timed.get(f"{variant}_compiled")
        ref = timed.get("fp_compiled") if variant != "fp" else timed["fp"]
        out[f"{variant}_compiled_vs_fp"] = None if c is None or ref is None else c / ref
    ms = out["ms"]
    line = (f"{arch:>8} {size:>5} batch {spec['batch']:>3} {spec['precision']}: FP {ms['fp']:8.1f} ms, "
            f"W3(+-4)/A2 {out['w3pm4_a2_vs_fp']:.2f}x, W1/A1 {out['w1_a1_vs_fp']:.2f}x")
    if out["compiled"]:
        line += (f" | compiled FP {out['fp_compiled_vs_fp']:.2f}x eager FP, W3(+-4)/A2 "
                 f"{out['w3pm4_a2_compiled_vs_fp']:.2f}x, W1/A1 {out['w1_a1_compiled_vs_fp']:.2f}x")
    elif compile_error:
        line += f" | compile error: {compile_error.splitlines()[0][:120]}"
    print(line, flush=True)
    return out


def markdown(data: dict) -> str:
    """The result as a markdown table (what docs/performance.md shows)."""
    m = data["machine"]
    lines = [f"`{data['command']}` on {m.get('gpu') or m.get('cpu_model')} ({m['cpu_count']} CPU cores, "
             f"{data['threads']} thread(s), {data['clock']} clock), torch {m['torch']}, kernel {m['kernel']}, "
             f"{data['wall_time_s']:.0f} s wall, 1-min load average {_load(m.get('load_avg_start'))} at the start, "
             f"{_load(m.get('load_avg'))} at the end.", "",
             "| model | size | batch | precision | FP ms | W3(±4)/A2 / FP | W1/A1 / FP | "
             "compiled FP / FP | compiled W3(±4)/A2 / compiled FP | compiled W1/A1 / compiled FP | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, spec=".2f"):
        return "—" if v is None else format(v, spec)

    for arch, sizes in data["train_step"].items():
        for size, r in sizes.items():
            cs = r.get("compile_s")
            lines.append(f"| {arch} | {size} | {r['batch']} | {r['precision']} | {r['ms']['fp']:.1f} | "
                         f"{f(r['w3pm4_a2_vs_fp'])} | {f(r['w1_a1_vs_fp'])} | {f(r.get('fp_compiled_vs_fp'))} | "
                         f"{f(r.get('w3pm4_a2_compiled_vs_fp'))} | {f(r.get('w1_a1_compiled_vs_fp'))} | "
                         f"{'—' if not cs else ', '.join(f'{v:.0f}' for v in cs.values())} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    ap.add_argument("--mini-batch", type=int, default=64)
    ap.add_argument("--paper-batch", type=int, default=None, help="default: 256 on CUDA, 4 on the CPU")
    ap.add_argument("--paper-precision", choices=("fp32", "bf16", "fp16"), default=None,
                    help="autocast of the paper size (default: bf16 on CUDA, fp32 on the CPU)")
    ap.add_argument("--compile", dest="compile", action=argparse.BooleanOptionalAction, default=None,
                    help="also time torch.compile of every variant (default: on for CUDA; off on the "
                         "CPU, where compiling a ResNet's forward and backward takes minutes)")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default: reduce-overhead on CUDA, default on the CPU)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (inductor; 'eager' only checks the plumbing quickly)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 11 mini, 3 paper)")
    ap.add_argument("--budget-s", type=float, default=20.0, help="stop a cell's rounds after this (>= 3 rounds)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=sorted(quantizer.CLOCKS), default="wall",
                    help="wall time, or process CPU time (robust on a busy machine with --threads 1)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--progress-json", type=Path, default=None, metavar="PATH",
                    help="rewrite PATH with the cells done so far after every cell")
    args = ap.parse_args(argv)
    for key in ("mini_batch", "paper_batch", "rounds", "threads"):
        v = getattr(args, key)
        if v is not None and v < (2 if key.endswith("batch") else 1):
            ap.error(f"--{key.replace('_', '-')} must be >= {2 if key.endswith('batch') else 1}, got {v}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and args.clock == "cpu":
        ap.error("--clock cpu does not count GPU time; use the wall clock on CUDA")
    quantizer._clock = quantizer.CLOCKS[args.clock]  # what _interleaved times with
    allocator = steady_allocator()
    args.compile = device.type == "cuda" if args.compile is None else args.compile
    compile_requested = args.compile
    rounds_given = args.rounds
    t0 = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results: dict = {}
    base = {"machine": None, "command": " ".join(["python -m benchmarks.train_step"]
                                                 + (argv if argv is not None else sys.argv[1:]))}
    for arch in args.models:
        for size in args.sizes:
            args.rounds = rounds_given or (11 if size == "mini" else 3)
            results.setdefault(arch, {})[size] = bench_cell(arch, size, device, args)
            if args.progress_json is not None:
                write_json(args.progress_json, {**base, "partial": True, "train_step": results,
                                                "wall_time_s": time.perf_counter() - t0})
    data = {
        **base,
        "machine": {**machine_info(device), "load_avg_start": load_start},
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "allocator": allocator,
        "compile": compile_requested,
        "compile_backend": args.compile_backend if compile_requested else None,
        "compile_mode": (args.compile_mode or ("reduce-overhead" if device.type == "cuda" else "default"))
        if compile_requested and args.compile_backend == "inductor" else None,
        "train_step": results,
        "wall_time_s": time.perf_counter() - t0,
        "cpu_time_s": time.process_time(),
    }
    write_json(args.out, data)
    print(markdown(data))
    print(f"wrote {args.out} in {data['wall_time_s']:.0f} s")
    return data


if __name__ == "__main__":
    main()
