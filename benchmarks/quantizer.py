"""Quantizer benchmark: soft/hard quantizer vs ReLU and vs Eq. 7 written naively.

Run: ``python -m benchmarks.quantizer [--quick] [--device cpu|cuda] [--T 10]``.

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
"""

from __future__ import annotations

import argparse
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


def bench_quantizer(names, sizes, device, T, rounds, budget_s, gen) -> list[dict]:
    rows = []
    for name in names:
        for numel in sizes:
            c = _setup(name, numel, device, gen)
            fns = _contenders(c, T)
            # large tensors: one warm-up round and the time budget keep the naive loop (~100x
            # slower at n = 30) from dominating the run
            med = _interleaved(fns, device, rounds, budget_s, warmup=1 if numel >= (1 << 22) else 2)
            L, x = c["levels"], c["x"]
            in_bytes = x.numel() * x.element_size()
            soft_saved = _saved_bytes(lambda: soft_quantize(x, L, c["biases"], c["alpha"], c["beta"], T), x)
            naive_saved = _saved_bytes(lambda: naive_soft(x, L, c["biases"], c["alpha"], c["beta"], T), x)
            peak_soft = _peak_bytes(fns["soft_fwd_bwd"], device)
            peak_naive = _peak_bytes(fns["naive_fwd_bwd"], device)
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
            }
            rows.append(row)
            print(f"{name:>10} n={L.n:<2} {numel:>9}  soft fwd {row['soft_fwd_vs_relu']:5.2f}x  "
                  f"fwd+bwd {row['soft_fwd_bwd_vs_relu']:5.2f}x  naive {row['naive_fwd_bwd_vs_relu']:6.2f}x  "
                  f"hard {row['hard_fwd_vs_relu']:5.2f}x  saved {row['saved_bytes_vs_input']:.2f} "
                  f"(naive {row['naive_saved_bytes_vs_input']:.1f})", flush=True)
            del c, fns
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
    out = {"fp_ms": med["fp"] * 1e3, "w3pm4_a2_ms": med["w3pm4_a2"] * 1e3, "w1_a1_ms": med["w1_a1"] * 1e3,
           "w3pm4_a2_vs_fp": med["w3pm4_a2"] / med["fp"], "w1_a1_vs_fp": med["w1_a1"] / med["fp"],
           "batch": batch, "input": [1, 32, 32], "T": T}
    print(f"ResNet-18 step: FP {out['fp_ms']:.1f} ms, W3(+-4)/A2 {out['w3pm4_a2_vs_fp']:.2f}x, "
          f"W1/A1 {out['w1_a1_vs_fp']:.2f}x", flush=True)
    return out


def machine_info(device) -> dict:
    info = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0], "torch": torch.__version__,
        "device": str(device), "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "kernel": "native" if kernels.native_library() is not None and device.type == "cpu" else "torch",
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
    return info


def _load(v) -> str:
    return f"{v[0]:.1f}" if v else "?"


def markdown(data: dict) -> str:
    """The result as markdown tables (what docs/performance.md shows)."""
    m = data["machine"]
    lines = [f"`{data['command']}` on {m.get('cpu_model')} ({m['cpu_count']} cores, {data['threads']} "
             f"thread(s), {data['clock']} clock, kernel {m['kernel']}, T={data['quantizer'][0]['T']:g}), "
             f"torch {m['torch']}, {data['wall_time_s']:.0f} s wall ({data.get('cpu_time_s', float('nan')):.0f} s CPU), "
             f"1-min load average {_load(m.get('load_avg_start'))} at start, {_load(m.get('load_avg'))} at end.", "",
             "| levels | n | numel | soft fwd / ReLU | soft fwd+bwd / ReLU | naive fwd+bwd / ReLU | "
             "soft / naive (fwd+bwd) | hard fwd / ReLU | saved / input (soft, naive) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in data["quantizer"]:
        lines.append(f"| {r['levels']} | {r['n']} | {r['numel']:,} | {r['soft_fwd_vs_relu']:.2f} | "
                     f"{r['soft_fwd_bwd_vs_relu']:.2f} | {r['naive_fwd_bwd_vs_relu']:.1f} | "
                     f"{r['soft_fwd_bwd_vs_naive']:.3f} | {r['hard_fwd_vs_relu']:.2f} | "
                     f"{r['saved_bytes_vs_input']:.2f}, {r['naive_saved_bytes_vs_input']:.1f} |")
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
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or process CPU time (robust on a busy machine with --threads 1)")
    ap.add_argument("--markdown", type=Path, default=None, metavar="JSON",
                    help="only print the tables of an earlier result file")
    args = ap.parse_args(argv)
    if args.markdown is not None:
        data = json.loads(args.markdown.read_text())
        print(markdown(data))
        return data
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    sizes = QUICK_SIZES if args.quick else SIZES
    rounds, budget = (7, 0.6) if args.quick else (11, 1.0)
    t_build = time.perf_counter()
    kernels.native_library()
    build_s = time.perf_counter() - t_build
    print(f"kernel: {'native' if kernels.native_library() is not None else 'torch'} "
          f"(load/compile {build_s:.2f} s), device {device}, T={args.T:g}", flush=True)
    rows = bench_quantizer(args.levels, sizes, device, args.T, rounds, budget, gen)
    temps = bench_temperature(device, 1 << 22, (1.0, 5.0, 10.0, 50.0, 200.0), rounds, budget, gen)
    train = bench_train_step(device, args.T, 9 if args.quick else 15, 8.0 if args.quick else 20.0, gen)
    data = {
        "machine": {**machine_info(device), "load_avg_start": load_start},
        "command": " ".join(["python -m benchmarks.quantizer"] + (argv if argv is not None else sys.argv[1:])),
        "quick": args.quick,
        "clock": args.clock,
        "threads": torch.get_num_threads(),
        "kernel_load_s": build_s,
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
