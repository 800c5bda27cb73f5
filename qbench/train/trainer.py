"""The classification trainer: FP training and the paper's three-phase quantization fine-tuning."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from qbench import quant as Q

from ..data import build_data
from ..models import build_model, load_pretrained
from . import io
from .config import Config
from .distributed import DistInfo, all_sum, average_gradients, convert_batchnorm, init_from_env, shutdown
from .phases import SWITCHES as PHASE_SWITCHES
from .phases import epoch_plan, set_temperatures


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a run directory holding another run, ...)."""


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> CUDA if available else CPU; under torchrun each process takes its local GPU.

    Args:
        name: config ``device``.
        info: process-group facts.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device: {name} requested but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{info.local_rank}"
    return torch.device(name)


def lr_at(config: Config, epoch: int) -> float:
    """Learning rate of 1-based ``epoch`` (qbench.train.phases: the schedule restarts in each
    phase; a milestone m means "x gamma after m epochs", as PyTorch's MultiStepLR).
    """
    return epoch_plan(config)[epoch - 1].lr


class Logger:
    """Lines to train.log (every rank-0 line) and to stdout unless quiet."""

    def __init__(self, path: Path | None, quiet: bool) -> None:
        self.path, self.quiet = path, quiet

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        if not self.quiet:
            print(line, flush=True)


def _configure_phase(model: nn.Module, phase: str, quant_params: list[nn.Parameter]) -> list[nn.Parameter]:
    """Switch quantizers and trainable parameters for a phase; returns the trained parameters.

    weights: network + weight-quantizer parameters; activations: activation-quantizer
    parameters only (weights frozen, Alg. 1); joint and fp: everything.
    """
    w_on, a_on = PHASE_SWITCHES[phase]
    if phase != "fp":
        Q.set_enabled(model, weights=w_on, activations=a_on)
    act_ids = {id(p) for q in Q.activation_quantizers(model).values() for p in q.parameters()}
    qids = {id(p) for p in quant_params}
    trained = []
    for p in model.parameters():
        if phase == "weights":
            on = id(p) not in act_ids
        elif phase == "activations":
            on = id(p) in act_ids and id(p) in qids
        else:
            on = True
        p.requires_grad_(on)
        if on:
            trained.append(p)
    return trained


@torch.no_grad()
def evaluate(model: nn.Module, batches: Callable, device: torch.device, info: DistInfo,
             num_classes: int) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (percent) over the test set, all processes together.

    Args:
        model: the model, in the quantization mode to measure.
        batches: ``() -> iterator of (x, y)`` over this process's share of the test set.
        device: where the model lives.
        info: process-group facts.
        num_classes: for top-k with fewer than 5 classes.
    """
    model.eval()
    k = min(5, num_classes)
    c1 = c5 = n = 0
    for x, y in batches():
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        top = model(x).topk(k, dim=1).indices
        c1 += (top[:, 0] == y).sum().item()
        c5 += (top == y[:, None]).any(dim=1).sum().item()
        n += y.numel()
    c1, c5, n = all_sum([c1, c5, n], info, device)
    return 100.0 * c1 / max(n, 1), 100.0 * c5 / max(n, 1)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 7_368_787 + int(epoch) * 1_000_003) % (2**63 - 1)


def run(config: Config, out_dir: str | Path, quiet: bool = False) -> dict:
    """Train (or resume) one classification run and write its run directory.

    Re-running on a directory with a ``checkpoint.pt`` of the same config continues after the
    last finished epoch; a finished run (complete metrics.json) is returned as is.

    Args:
        config: validated run configuration.
        out_dir: run directory (created).
        quiet: no console output (train.log is still written).

    Returns:
        The metrics dict that was written to metrics.json.
    """
    out = Path(out_dir)
    resolved = config.to_dict()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    info = DistInfo()
    try:
        device_kind = "cuda" if config.device.startswith("cuda") or (
            config.device == "auto" and torch.cuda.is_available()) else "cpu"
        info = init_from_env(device_kind)
        return _run(config, resolved, out, quiet, info)
    finally:
        shutdown(info)
        torch.use_deterministic_algorithms(old_det)


def _check_run_dir(out: Path, resolved: dict) -> dict | None:
    """Refuse a directory of another run; return finished metrics if this run is done."""
    cfg_path, ckpt, met = out / "config.yaml", out / "checkpoint.pt", out / "metrics.json"
    if cfg_path.is_file() and (ckpt.is_file() or met.is_file()):
        previous = yaml.safe_load(cfg_path.read_text())
        if previous != resolved:
            raise TrainingError(f"{out}: holds a run with another config; use a new --out directory")
        if met.is_file():
            import json

            metrics = json.loads(met.read_text())
            if metrics.get("status") == "complete":
                return metrics
    return None


def _run(config: Config, resolved: dict, out: Path, quiet: bool, info: DistInfo) -> dict:
    device = resolve_device(config.device, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    main = info.main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        done = _check_run_dir(out, resolved)
    else:
        done = None
    if info.world > 1:
        flag = all_sum([1.0 if done is not None else 0.0], info, device)[0]
        if flag and done is None:
            done = {"status": "complete"}
    if done is not None:
        return done
    log = Logger(out / "train.log" if main else None, quiet or not main)
    if main:
        io.write_yaml(out / "config.yaml", resolved)
        io.write_json(out / "env.json", io.environment(device, config.seed, info.world))
    start_wall = time.perf_counter()

    # Model: same initialisation on every process (seeded), then the FP weights if any.
    torch.manual_seed(config.seed)
    model = build_model(config.model.arch, config.model.num_classes, config.model.in_channels)
    if config.start.mode == "pretrained":
        loaded = load_pretrained(model, config.start.checkpoint)
        log(f"loaded {config.start.checkpoint} (adapted {loaded['adapted']}, kept init {loaded['skipped']})")
    if info.world > 1:
        model = convert_batchnorm(model, device.type)
    report = Q.QuantReport()
    q = config.quant
    if q.enabled:
        report = Q.quantize_model(model, q.policy())
    model.to(device)
    quant_params = Q.quant_parameters(model)
    qids = {id(p) for p in quant_params}
    net_params = [p for p in model.parameters() if id(p) not in qids]
    # Quantizer alpha/beta/biases are scales and thresholds, not weights: no decay on them.
    optimizer = torch.optim.SGD(
        [{"params": net_params, "weight_decay": config.optim.weight_decay},
         {"params": quant_params, "weight_decay": 0.0}],
        lr=config.optim.lr, momentum=config.optim.momentum)
    plan = epoch_plan(config)

    d = config.data
    data = build_data(d.dataset, d.root, d.image_size, config.model.in_channels, config.model.num_classes,
                      d.train_size, d.test_size, d.subset_seed, d.workers)
    if d.batch_size % info.world:
        raise TrainingError(f"data.batch_size {d.batch_size} is not divisible by the {info.world} processes")
    if data.num_train < d.batch_size:
        raise TrainingError(f"data.batch_size {d.batch_size} exceeds the {data.num_train} training images")
    log(f"{config.model.arch} on {data.name}: {data.num_train} train / {data.num_test} test images, "
        f"{info.world} process(es), device {device}, {torch.get_num_threads()} thread(s)")

    phases = config.phases()
    history: list[dict] = []
    start_epoch, wall_done, train_images, train_time = 1, 0.0, 0, 0.0
    ckpt_path = out / "checkpoint.pt"
    # Every process decides about resuming before rank 0 can write a new checkpoint.
    resume = ckpt_path.is_file()
    all_sum([0.0], info, device)
    if resume:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"]) + 1
        wall_done, train_images, train_time = ckpt["wall_time_s"], ckpt["train_images"], ckpt["train_time_s"]
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        log(f"resumed from {ckpt_path} after epoch {ckpt['epoch']}")
    else:
        if q.activations is not None:
            maxima = Q.calibrate_activations(
                model, (x.to(device) for x in data.calib_batches(d.batch_size, config.seed)), q.calib_samples)
            log(f"calibrated {len(maxima)} activation quantizers on {q.calib_samples} samples")

    def save_checkpoint(epoch: int, wall: float) -> None:
        if main:
            io.save_torch(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "history": history, "rng": _rng_state(device), "wall_time_s": wall,
                "train_images": train_images, "train_time_s": train_time,
                "phase": phases[epoch - 1] if epoch else "init"})

    if not resume:
        save_checkpoint(0, wall_done + time.perf_counter() - start_wall)

    use_bar = not quiet and main and sys.stderr.isatty()
    for epoch in range(start_epoch, len(phases) + 1):
        phase = phases[epoch - 1]
        trained = _configure_phase(model, phase, quant_params)
        step_plan = plan[epoch - 1]
        # history's T: the weight quantizers' when there are any (docs/recipes.md has both)
        T = step_plan.t_weights if step_plan.t_weights is not None else step_plan.t_activations
        if q.enabled:
            set_temperatures(model, step_plan)
            Q.set_mode(model, "soft")
        lr = step_plan.lr
        for g in optimizer.param_groups:
            g["lr"] = lr
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        model.train()
        t0 = time.perf_counter()
        loss_sum = correct = seen = 0.0
        batches = data.train_batches(epoch, d.batch_size, config.seed, info.rank, info.world)
        steps = data.num_train // d.batch_size
        bar = None
        if use_bar:
            from tqdm import tqdm
            bar = tqdm(total=steps, desc=f"epoch {epoch}/{len(phases)} {phase}", leave=False, file=sys.stderr)
        for step, (x, y) in enumerate(batches, start=1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss).all():
                raise TrainingError(f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}, "
                                    f"phase {phase}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(trained, info)
            if config.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trained, config.optim.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.numel()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if bar is not None:
            bar.close()
        loss_sum, correct, seen = all_sum([loss_sum, correct, seen], info, device)
        epoch_train_time = time.perf_counter() - t0
        train_time += epoch_train_time
        train_images += int(seen)

        if q.enabled:
            Q.set_mode(model, "hard")
            hard = evaluate(model, lambda: data.test_batches(d.batch_size, info.rank, info.world), device,
                            info, config.model.num_classes)
            Q.set_mode(model, "soft")
            soft = evaluate(model, lambda: data.test_batches(d.batch_size, info.rank, info.world), device,
                            info, config.model.num_classes)
        else:
            hard = soft = evaluate(model, lambda: data.test_batches(d.batch_size, info.rank, info.world),
                                   device, info, config.model.num_classes)
        row = {"epoch": epoch, "phase": phase, "T": T, "lr": lr,
               "train_loss": loss_sum / max(seen, 1), "train_top1": 100.0 * correct / max(seen, 1),
               "hard_top1": hard[0], "hard_top5": hard[1], "soft_top1": soft[0], "soft_top5": soft[1],
               "time_s": time.perf_counter() - t0}
        history.append(row)
        log(f"epoch {epoch}/{len(phases)} [{phase}] T={T} lr={lr:.3g} loss={row['train_loss']:.4f} "
            f"train={row['train_top1']:.2f} hard={hard[0]:.2f}/{hard[1]:.2f} soft={soft[0]:.2f}/{soft[1]:.2f} "
            f"({row['time_s']:.1f}s, {seen / max(epoch_train_time, 1e-9):.0f} img/s)")
        save_checkpoint(epoch, wall_done + time.perf_counter() - start_wall)

    wall = wall_done + time.perf_counter() - start_wall
    if q.enabled:
        Q.set_mode(model, "hard")
    if history:
        final = {k: history[-1][k] for k in ("hard_top1", "hard_top5", "soft_top1", "soft_top5")}
    else:  # evaluation-only run of a full-precision checkpoint
        top1, top5 = evaluate(model, lambda: data.test_batches(d.batch_size, info.rank, info.world),
                              device, info, config.model.num_classes)
        final = {"hard_top1": top1, "hard_top5": top5, "soft_top1": top1, "soft_top5": top5}
        log(f"evaluated {config.start.checkpoint} without training")
    bits = Q.model_size_bits(model)
    metrics = {
        "task": "classify", "status": "complete", "final": final, "history": history,
        "wall_time_s": wall, "images_per_s": train_images / max(train_time, 1e-9),
        "peak_memory_mb": _peak_memory_mb(device),
        "quant_report": {"weight_layers": list(report.weight_layers),
                         "activation_layers": list(report.activation_layers)},
        "model_bits": {"fp_bits": bits["fp_bits"], "quantized_bits": bits["quantized_bits"],
                       "ratio": bits["ratio"]},
    }
    if main:
        if q.enabled:
            io.save_torch(out / "model_hard.pt", Q.export_hard_model(model))
        io.write_json(out / "metrics.json", metrics)
        log(f"done: hard top-1 {final['hard_top1']:.2f} top-5 {final['hard_top5']:.2f} in {wall:.1f}s")
    return metrics
