"""Quantizer benchmark: soft/hard quantizer vs ReLU and vs Eq. 7 written naively.

Run: ``python -m benchmarks.quantizer [--quick] [--device cpu|cuda] [--T 10] [--compile|--no-compile]``.

Everything is measured in one process and interleaved (one repeat of every contender per
round), and reported as medians, so the ratios hold on a shared, noisy machine. Writes
``results/benchmarks/quantizer.json`` (atomically) and prints a table.

Definitions:
- ``*_fwd_bwd``: forward, then backward with a given dL/dy w.r.t. x, alpha and beta (the
  quantizer's learnable parameters, as in training; ReLU: w.r.t. x).
- ``saved_bytes_vs_input``: bytes autograd keeps for backward (unique storages seen by
  ``saved_tensors_hooks``, the input itself included) divided by the input's bytes.
- ``peak_bytes_vs_input``: peak allocator memory above the inputs during fwd+bwd divided by the
  input bytes (CUDA only; the CPU allocator keeps no statistics, so null there).
- ``compiled_*``: ``torch.compile(naive_soft, backend="inductor", dynamic=False)``, compiled
  afresh for every level set and size (``torch._dynamo.reset()`` first) during warm-up, outside
  the timed rounds. ``compile_s`` = (first call - warm call) of fwd plus of fwd+bwd (two
  graphs: no-grad and grad mode); inductor's on-disk caches can shorten it on a second run.
  On by default on CUDA, off on CPU (``--compile`` forces it); when off the fields are null;
  a failure is kept as ``compiled_error`` and the row goes on without the compiled contender.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from qbench.quant import (LevelSet, QuantPolicy, calibrate_activations, hard_quantize, quantize_model,
                          set_temperature, soft_quantize)
from qbench.quant import kernels
from qbench.quant.memory import saved_storages
from qbench.quant.init import initial_beta, kmeans_biases
from qbench.quant.levels import PAPER_ACTIVATION_SETS, PAPER_WEIGHT_SETS

LEVEL_SETS = PAPER_WEIGHT_SETS + PAPER_ACTIVATION_SETS
SIZES = (1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24)
QUICK_SIZES = (1 << 16, 1 << 20, 1 << 22)
OUT = Path("results/benchmarks/quantizer.json")


def naive_soft(x, levels: LevelSet, biases, alpha, beta, T):
    """Eq. 7 the obvious way: n sigmoids under plain autograd (n tensors kept alive)."""
    y = 0
    for i, s in enumerate(levels.steps):
        y = y + s * torch.sigmoid(T * (beta * x - biases[i]))
    return alpha * (y - levels.offset)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(name: str, numel: int, device, gen) -> dict:
    """Inputs distributed like the quantizer sees them, and Sec. 4.1 initial parameters."""
    levels = LevelSet.from_name(name)
    x = torch.randn(numel, generator=gen)
    if not levels.zero_centered:
        x = x.relu()  # activations: post-ReLU
    sample = x[torch.randint(numel, (20000,), generator=gen)]
    q = float(x.abs().max())
    beta = initial_beta(levels, q)
    biases = kmeans_biases(sample * beta, levels).float()
    return {
        "levels": levels,
        "x": x.to(device).requires_grad_(),
        "w": torch.randn(numel, generator=gen).to(device),
        "biases": biases.to(device),
        "alpha": torch.tensor(1.0 / beta, device=device, requires_grad=True),
        "beta": torch.tensor(beta, device=device, requires_grad=True),
    }


def _contenders(c: dict, T: float) -> dict:
    x, w, L, b, a, be = c["x"], c["w"], c["levels"], c["biases"], c["alpha"], c["beta"]
    xd = x.detach()

    def fwd_bwd(f, params):
        def run():
            y = f()
            torch.autograd.grad(y, params, grad_outputs=w)
        return run

    def fwd(f):
        def run():
            with torch.no_grad():
                f()
        return run

    relu = lambda: torch.relu(x)  # noqa: E731
    naive = lambda: naive_soft(x, L, b, a, be, T)  # noqa: E731
    soft = lambda: soft_quantize(x, L, b, a, be, T)  # noqa: E731
    return {
        "relu_fwd": fwd(relu),
        "relu_fwd_bwd": fwd_bwd(relu, (x,)),
        "soft_fwd": fwd(soft),
        "soft_fwd_bwd": fwd_bwd(soft, (x, a, be)),
        "naive_fwd": fwd(naive),
        "naive_fwd_bwd": fwd_bwd(naive, (x, a, be)),
        "hard_fwd": fwd(lambda: hard_quantize(xd, L, b, a, be)),
    }


def _compile_limits():
    """Raise dynamo's recompile limit for the benchmark (the names changed across torch versions)."""
    import torch._dynamo

    cfg = torch._dynamo.config
    patch = {k: max(getattr(cfg, k), 64) for k in ("recompile_limit", "cache_size_limit") if hasattr(cfg, k)}
    return cfg.patch(**patch) if patch else contextlib.nullcontext()


def _no_recompile():
    """Timed rounds must run the code compiled in warm-up: a recompile (or a silent fall back to
    eager once the limit is hit) raises instead."""
    import torch._dynamo

    cfg = torch._dynamo.config
    return cfg.patch(error_on_recompile=True) if hasattr(cfg, "error_on_recompile") else contextlib.nullcontext()


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _compiled_contenders(c: dict, T: float, device) -> tuple[dict, dict]:
    """Compile ``naive_soft`` for this level set and size and warm it up (untimed).

    Returns ``({"compiled_fwd": fn, "compiled_fwd_bwd": fn}, info)``; ``info`` holds the compile
    seconds (first call - warm call, synchronised) and the number of graphs / graph breaks.
    Raises whatever compilation raises.
    """
    import torch._dynamo

    torch._dynamo.reset()  # a fresh cache per level set and size: no recompiles pile up
    counters = getattr(getattr(torch._dynamo, "utils", None), "counters", None)
    if counters is not None:
        counters.clear()
    x, w, L, b, a, be = c["x"], c["w"], c["levels"], c["biases"], c["alpha"], c["beta"]
    compiled = torch.compile(naive_soft, backend="inductor", dynamic=False)

    def fwd():
        with torch.no_grad():
            compiled(x, L, b, a, be, T)

    def fwd_bwd():
        y = compiled(x, L, b, a, be, T)
        torch.autograd.grad(y, (x, a, be), grad_outputs=w)

    info = {}
    for key, f in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        _sync(device)
        t0 = time.perf_counter()
        f()  # traces and compiles (fwd_bwd: forward and backward graphs)
        _sync(device)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        f()
        _sync(device)
        warm = time.perf_counter() - t0
        info[f"compile_{key}_s"] = max(first - warm, 0.0)
    info["compile_s"] = info["compile_fwd_s"] + info["compile_fwd_bwd_s"]
    if counters is not None:
        info["compiled_graphs"] = int(counters["stats"].get("unique_graphs", 0))
        info["compiled_graph_breaks"] = int(sum(counters["graph_break"].values()))
        # inductor's on-disk FX graph cache (a hit skips code generation and the C++/Triton build)
        info["compiled_cache_hits"] = int(counters["inductor"].get("fxgraph_cache_hit", 0))
    return {"compiled_fwd": fwd, "compiled_fwd_bwd": fwd_bwd}, info


def compile_startup(device) -> dict:
    """Compile and run a one-op function once, so the one-time start-up of dynamo and inductor
    (imports, compiler probing, worker pools) is not charged to the first row's ``compile_s``."""
    def f(t):
        return torch.sigmoid(t) * 2.0

    try:
        from torch import _dynamo
        t = torch.ones(1024, device=device)
        _sync(device)
        t0 = time.perf_counter()
        torch.compile(f, backend="inductor", dynamic=False)(t)
        _sync(device)
        out = {"compile_startup_s": time.perf_counter() - t0, "compile_startup_error": None}
        _dynamo.reset()
    except Exception as exc:
        out = {"compile_startup_s": None, "compile_startup_error": _err(exc)}
    return out


# wall time, or CPU time of the process: on a shared machine the latter does not count the
# time the benchmark is descheduled (single-thread runs; OpenMP spin-waits would count).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _interleaved(fns: dict, device, rounds: int, budget_s: float, warmup: int = 2) -> dict:
    """Median seconds per call of every fn, one call of each per round, rounds interleaved."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync(device)
    times = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(rounds):
        for k, f in fns.items():
            _sync(device)
            t0 = _clock()
            f()
            _sync(device)
            times[k].append(_clock() - t0)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {k: statistics.median(v) for k, v in times.items()}


def _saved_bytes(f, x: torch.Tensor) -> int:
    """Bytes of the unique storages autograd saves while running f (input included)."""
    _, seen = saved_storages(f)
    return sum(seen.values())


def _peak_bytes(run, device) -> int | None:
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


COMPILED_KEYS = ("compiled_fwd_vs_relu", "compiled_fwd_bwd_vs_relu", "soft_vs_compiled_fwd_bwd",
                 "compiled_peak_bytes_vs_input", "compile_s", "compile_fwd_s", "compile_fwd_bwd_s")


def bench_quantizer(names, sizes, device, T, rounds, budget_s, gen, compile_naive: bool = False,
                    progress=None) -> list[dict]:
    rows = []
    for name in names:
        for numel in sizes:
            c = _setup(name, numel, device, gen)
            fns = _contenders(c, T)
            compiled, cinfo, cerror = {}, {}, None
            if compile_naive:
                try:
                    with _compile_limits():
                        compiled, cinfo = _compiled_contenders(c, T, device)
                except Exception as exc:  # never let the optional contender end the benchmark
                    cerror = _err(exc)
                    compiled, cinfo = {}, {}
            # large tensors: one warm-up round and the time budget keep the naive loop (~100x
            # slower at n = 30) from dominating the run
            warmup = 1 if numel >= (1 << 22) else 2
            med = None
            if compiled:
                try:
                    with _compile_limits(), _no_recompile():
                        med = _interleaved({**fns, **compiled}, device, rounds, budget_s, warmup=warmup)
                except Exception as exc:
                    cerror, compiled = _err(exc), {}
            if med is None:
                med = _interleaved(fns, device, rounds, budget_s, warmup=warmup)
            L, x, b, a, be = c["levels"], c["x"], c["biases"], c["alpha"], c["beta"]
            in_bytes = x.numel() * x.element_size()
            soft_saved = _saved_bytes(lambda: soft_quantize(x, L, b, a, be, T), x)
            naive_saved = _saved_bytes(lambda: naive_soft(x, L, b, a, be, T), x)
            peak_soft = _peak_bytes(fns["soft_fwd_bwd"], device)
            peak_naive = _peak_bytes(fns["naive_fwd_bwd"], device)
            peak_compiled = None
            if compiled:
                try:
                    with _compile_limits(), _no_recompile():
                        peak_compiled = _peak_bytes(compiled["compiled_fwd_bwd"], device)
                except Exception as exc:
                    cerror = _err(exc)
            row = {
                "levels": name, "n": L.n, "numel": numel, "T": T,
                "soft_fwd_vs_relu": med["soft_fwd"] / med["relu_fwd"],
                "soft_fwd_bwd_vs_relu": med["soft_fwd_bwd"] / med["relu_fwd_bwd"],
                "naive_fwd_vs_relu": med["naive_fwd"] / med["relu_fwd"],
                "naive_fwd_bwd_vs_relu": med["naive_fwd_bwd"] / med["relu_fwd_bwd"],
                "soft_fwd_bwd_vs_naive": med["soft_fwd_bwd"] / med["naive_fwd_bwd"],
                "hard_fwd_vs_relu": med["hard_fwd"] / med["relu_fwd"],
                "saved_bytes_vs_input": soft_saved / in_bytes,
                "naive_saved_bytes_vs_input": naive_saved / in_bytes,
                "peak_bytes_vs_input": None if peak_soft is None else peak_soft / in_bytes,
                "naive_peak_bytes_vs_input": None if peak_naive is None else peak_naive / in_bytes,
                "ms": {k: v * 1e3 for k, v in med.items()},
                "compiled": bool(compile_naive),
                **dict.fromkeys(COMPILED_KEYS),
                "compiled_error": cerror,
            }
            if "compiled_fwd_bwd" in med:
                row.update({
                    "compiled_fwd_vs_relu": med["compiled_fwd"] / med["relu_fwd"],
                    "compiled_fwd_bwd_vs_relu": med["compiled_fwd_bwd"] / med["relu_fwd_bwd"],
                    "soft_vs_compiled_fwd_bwd": med["soft_fwd_bwd"] / med["compiled_fwd_bwd"],
                    "compiled_peak_bytes_vs_input": None if peak_compiled is None else peak_compiled / in_bytes,
                })
            if cinfo:
                row.update(cinfo)
            rows.append(row)
            if "compiled_fwd_bwd" in med:
                comp = (f"  compiled fwd+bwd {row['compiled_fwd_bwd_vs_relu']:5.2f}x "
                        f"(soft/compiled {row['soft_vs_compiled_fwd_bwd']:.2f}, compile {row['compile_s']:.1f} s"
                        f"{', cache hit' if row.get('compiled_cache_hits') else ''})")
            elif cerror is not None:
                comp = f"  compiled: error {cerror.splitlines()[0][:120]}"
            else:
                comp = ""
            print(f"{name:>10} n={L.n:<2} {numel:>9}  soft fwd {row['soft_fwd_vs_relu']:5.2f}x  "
                  f"fwd+bwd {row['soft_fwd_bwd_vs_relu']:5.2f}x  naive {row['naive_fwd_bwd_vs_relu']:6.2f}x  "
                  f"hard {row['hard_fwd_vs_relu']:5.2f}x  saved {row['saved_bytes_vs_input']:.2f} "
                  f"(naive {row['naive_saved_bytes_vs_input']:.1f}){comp}", flush=True)
            if progress is not None:
                progress(rows)
            del c, fns, compiled
    return rows


def bench_temperature(device, numel, temps, rounds, budget_s, gen) -> list[dict]:
    """Soft fwd+bwd vs ReLU across T: the window of live sigmoids shrinks as T grows."""
    rows = []
    for name in ("3bit_pm4", "5bit"):
        c = _setup(name, numel, device, gen)
        for T in temps:
            fns = _contenders(c, T)
            fns = {k: fns[k] for k in ("relu_fwd_bwd", "soft_fwd_bwd")}
            med = _interleaved(fns, device, rounds, budget_s)
            rows.append({"levels": name, "n": c["levels"].n, "numel": numel, "T": T,
                         "soft_fwd_bwd_vs_relu": med["soft_fwd_bwd"] / med["relu_fwd_bwd"]})
            print(f"{name:>10} T={T:<7g} soft fwd+bwd {rows[-1]['soft_fwd_bwd_vs_relu']:5.2f}x ReLU",
                  flush=True)
    return rows


def _resnet18(num_classes=10, in_channels=1) -> nn.Module:
    import torchvision
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def bench_train_step(device, T, rounds, budget_s, gen, batch=64) -> dict:
    """One SGD step of ResNet-18 (1x32x32, 10 classes): FP vs W3(+-4)/A2 vs W1/A1."""
    x = torch.randn(batch, 1, 32, 32, generator=gen).to(device)
    target = torch.randint(10, (batch,), generator=gen).to(device)
    configs = {"fp": None, "w3pm4_a2": ("3bit_pm4", "act_2bit"), "w1_a1": ("binary", "act_binary")}
    steps = {}
    for key, cfg in configs.items():
        torch.manual_seed(0)
        model = _resnet18().to(device)
        if cfg is not None:
            quantize_model(model, QuantPolicy(weight_levels=cfg[0], act_levels=cfg[1]))
            calibrate_activations(model, [x], num_samples=batch)
            set_temperature(model, T)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
        steps[key] = step
    med = _interleaved(steps, device, rounds, budget_s)
    # peak allocator memory of one step above what is allocated before it (CUDA only, else null)
    peak = {k: _peak_bytes(f, device) for k, f in steps.items()}
    out = {"fp_ms": med["fp"] * 1e3, "w3pm4_a2_ms": med["w3pm4_a2"] * 1e3, "w1_a1_ms": med["w1_a1"] * 1e3,
           "w3pm4_a2_vs_fp": med["w3pm4_a2"] / med["fp"], "w1_a1_vs_fp": med["w1_a1"] / med["fp"],
           "batch": batch, "input": [1, 32, 32], "T": T,
           **{f"{k}_peak_mb": None if v is None else v / 2**20 for k, v in peak.items()}}
    print(f"ResNet-18 step: FP {out['fp_ms']:.1f} ms, W3(+-4)/A2 {out['w3pm4_a2_vs_fp']:.2f}x, "
          f"W1/A1 {out['w1_a1_vs_fp']:.2f}x", flush=True)
    return out


def steady_allocator() -> str | None:
    """Make glibc keep freed memory for reuse, as a long training process ends up doing.

    By default glibc maps large blocks fresh and returns freed memory to the system; which
    contender then pays the page faults of the next fresh 16 MB (about 9 ms on a virtual
    machine, more than a whole quantizer call) depends on the order of frees, not on the
    contender. With glibc's largest mmap threshold (32 MiB) and no trimming, tensors of up to
    8M float32 elements come from reused heap memory for every contender alike; larger ones
    are still mapped fresh, so page faults weigh on the 16M-element rows. (Turning mmap off
    altogether fragments the heap: the process grew past 14 GB.) Returns a description of
    what was set, or None where this is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return None
    if mallopt is None:
        return None
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 << 20) == 1 and mallopt(m_trim_threshold, 1 << 30) == 1
    return "glibc mallopt: M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB" if ok else None


def machine_info(device) -> dict:
    info = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0], "torch": torch.__version__,
        "device": str(device), "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "kernel": kernels.backend_name(device),
        "kernel_error": kernels.native_error(),
    }
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception:  # not installed (CPU-only builds), or broken
        pass
    return info


def _load(v) -> str:
    return f"{v[0]:.1f}" if v else "?"


def _compiled_cells(r: dict) -> list[str]:
    """Table cells of the compiled contender: numbers, "not run" or "error"."""
    if r.get("compiled_fwd_bwd_vs_relu") is not None:
        return [f"{r['compiled_fwd_vs_relu']:.2f}", f"{r['compiled_fwd_bwd_vs_relu']:.2f}",
                f"{r['soft_vs_compiled_fwd_bwd']:.3f}",
                f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "?"]
    cell = "error" if r.get("compiled_error") else "not run"
    return [cell] * 4


def markdown(data: dict) -> str:
    """The result as markdown tables (what docs/performance.md shows)."""
    m = data["machine"]
    lines = [f"`{data['command']}` on {m.get('cpu_model')} ({m['cpu_count']} cores, {data['threads']} "
             f"thread(s), {data['clock']} clock, kernel {m['kernel']}, T={data['quantizer'][0]['T']:g}), "
             f"torch {m['torch']}, {data['wall_time_s']:.0f} s wall ({data.get('cpu_time_s', float('nan')):.0f} s CPU), "
             f"1-min load average {_load(m.get('load_avg_start'))} at start, {_load(m.get('load_avg'))} at end; "
             f"allocator: {data.get('allocator') or 'default'}.", "",
             "| levels | n | numel | soft fwd / ReLU | soft fwd+bwd / ReLU | naive fwd+bwd / ReLU | "
             "soft / naive (fwd+bwd) | hard fwd / ReLU | saved / input (soft, naive) | "
             "compiled fwd / ReLU | compiled fwd+bwd / ReLU | soft / compiled (fwd+bwd) | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["quantizer"]:
        lines.append(f"| {r['levels']} | {r['n']} | {r['numel']:,} | {r['soft_fwd_vs_relu']:.2f} | "
                     f"{r['soft_fwd_bwd_vs_relu']:.2f} | {r['naive_fwd_bwd_vs_relu']:.1f} | "
                     f"{r['soft_fwd_bwd_vs_naive']:.3f} | {r['hard_fwd_vs_relu']:.2f} | "
                     f"{r['saved_bytes_vs_input']:.2f}, {r['naive_saved_bytes_vs_input']:.1f} | "
                     + " | ".join(_compiled_cells(r)) + " |")
    if any(r.get("compiled_fwd_bwd_vs_relu") is not None for r in data["quantizer"]):
        hits = sum(1 for r in data["quantizer"] if r.get("compiled_cache_hits"))
        startup = data.get("compile_startup_s")
        lines += ["", "compiled: `torch.compile(naive_soft)`, inductor, `dynamic=False`, compiled per level set "
                  "and size; compile s = (first call - warm call) of the fwd and the fwd+bwd graphs"
                  + (f", after a one-time start-up of {startup:.1f} s" if startup is not None else "")
                  + (f"; {hits} row(s) hit inductor's on-disk cache (shorter compile)" if hits else "") + "."]
    errors = sorted({r["compiled_error"] for r in data["quantizer"] if r.get("compiled_error")})
    for e in errors[:3]:
        lines.append(f"\ncompile error: `{e.splitlines()[0][:300]}`")
    lines += ["", "| levels | n | numel | T | soft fwd+bwd / ReLU |", "|---|---|---|---|---|"]
    for r in data["temperature_sweep"]:
        lines.append(f"| {r['levels']} | {r['n']} | {r['numel']:,} | {r['T']:g} | {r['soft_fwd_bwd_vs_relu']:.2f} |")
    s = data["train_step"]
    lines += ["", "| ResNet-18 step (1x32x32, batch 64) | ms | vs FP |", "|---|---|---|",
              f"| FP | {s['fp_ms']:.1f} | 1.00 |",
              f"| W3(+-4)/A2 | {s['w3pm4_a2_ms']:.1f} | {s['w3pm4_a2_vs_fp']:.2f} |",
              f"| W1/A1 | {s['w1_a1_ms']:.1f} | {s['w1_a1_vs_fp']:.2f} |"]
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats (smoke run)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--T", type=float, default=10.0, help="temperature of the soft quantizer")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--levels", nargs="*", default=list(LEVEL_SETS))
    ap.add_argument("--sizes", nargs="*", type=int, default=None, metavar="NUMEL",
                    help="tensor sizes in elements (default: 64K..16M, with --quick 64K, 1M, 4M)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or process CPU time (robust on a busy machine with --threads 1)")
    ap.add_argument("--markdown", type=Path, default=None, metavar="JSON",
                    help="only print the tables of an earlier result file")
    ap.add_argument("--compile", dest="compile", action=argparse.BooleanOptionalAction, default=None,
                    help="add torch.compile(naive_soft) (inductor) as a contender (default: on for "
                         "CUDA, off for CPU, where compiling every level set and size is slow)")
    ap.add_argument("--steady-allocator", action=argparse.BooleanOptionalAction, default=True,
                    help="keep freed memory in the process (glibc mallopt) so page faults of fresh "
                         "allocations do not land at random on one contender (default: on)")
    ap.add_argument("--progress-json", type=Path, default=None, metavar="PATH",
                    help="also rewrite PATH with the quantizer rows done so far after every row "
                         "(keeps partial results of a run that is cut off)")
    args = ap.parse_args(argv)
    if args.markdown is not None:
        data = json.loads(args.markdown.read_text())
        print(markdown(data))
        return data
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = steady_allocator() if args.steady_allocator else None
    device = torch.device(args.device)
    compile_naive = device.type == "cuda" if args.compile is None else args.compile
    if device.type == "cuda" and args.clock == "cpu":
        print("warning: --clock cpu does not count GPU time; use the wall clock on CUDA", flush=True)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    rounds, budget = (7, 0.6) if args.quick else (11, 1.0)
    t_build = time.perf_counter()
    kernels.native_library()
    build_s = time.perf_counter() - t_build
    print(f"kernel: {kernels.backend_name(device)} (native load/compile {build_s:.2f} s), device {device}, "
          f"T={args.T:g}, torch.compile contender: {'on' if compile_naive else 'off'}", flush=True)
    progress = None
    if args.progress_json is not None:
        def progress(rows_so_far):
            write_json(args.progress_json, {"partial": True, "machine": machine_info(device),
                                            "compile": compile_naive, "quantizer": rows_so_far,
                                            "wall_time_s": time.perf_counter() - t0})
    startup = compile_startup(device) if compile_naive else {"compile_startup_s": None,
                                                              "compile_startup_error": None}
    if compile_naive:
        print(f"torch.compile start-up: {startup['compile_startup_s'] or float('nan'):.1f} s"
              + (f" (error: {startup['compile_startup_error']})" if startup["compile_startup_error"] else ""),
              flush=True)
    rows = bench_quantizer(args.levels, sizes, device, args.T, rounds, budget, gen,
                           compile_naive=compile_naive, progress=progress)
    if compile_naive:
        from torch import _dynamo
        _dynamo.reset()  # free the compiled graphs before the other measurements
    temps = bench_temperature(device, 1 << 22, (1.0, 5.0, 10.0, 50.0, 200.0), rounds, budget, gen)
    train = bench_train_step(device, args.T, 9 if args.quick else 15, 8.0 if args.quick else 20.0, gen)
    data = {
        "machine": {**machine_info(device), "load_avg_start": load_start},
        "command": " ".join(["python -m benchmarks.quantizer"] + (argv if argv is not None else sys.argv[1:])),
        "quick": args.quick,
        "clock": args.clock,
        "threads": torch.get_num_threads(),
        "kernel_load_s": build_s,
        "allocator": allocator,
        "compile": compile_naive,
        "compile_backend": "inductor" if compile_naive else None,
        **startup,
        "compile_s_total": sum(r["compile_s"] for r in rows if r.get("compile_s") is not None) if compile_naive else None,
        "quantizer": rows,
        "temperature_sweep": temps,
        "train_step": train,
        "wall_time_s": time.perf_counter() - t0,
        "cpu_time_s": time.process_time(),
    }
    write_json(args.out, data)
    print(markdown(data))
    print(f"wrote {args.out} in {data['wall_time_s']:.0f} s")
    return data


if __name__ == "__main__":
    main()
