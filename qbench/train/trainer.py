"""The classification trainer: FP training and the paper's three-phase quantization fine-tuning."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from qbench import run_files
from qbench import quant as Q
from qbench.quant.functional import NonFiniteError

from ..data import build_data
from .. import io
from ..io import RESTART_HINT, FileFormatError, RunDirError, RunDirLock, RunLog, adopt_run_dir, remove_stale_tmp
from ..models import build_model, load_pretrained
from .config import FLOAT32_MAX, Config
from ..run import DistInfo, hard_and_soft, join_process_group, leave_process_group, metrics_record, resolve_device
from ..run.process import torchrun_env
from .distributed import all_sum, average_gradients, convert_batchnorm
from .phases import configure_phase, epoch_plan, phase_problem


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a run directory holding another run, ...)."""


def lr_at(config: Config, epoch: int) -> float:
    """Learning rate of 1-based ``epoch`` (qbench.train.phases: the schedule restarts in each
    phase; a milestone m means "x gamma after m epochs", as PyTorch's MultiStepLR).
    """
    return epoch_plan(config)[epoch - 1].lr


@dataclass(frozen=True)
class Evaluation:
    """One pass over the test set: accuracies and, per image in test-set order, the top-1 class.

    Args:
        top1: top-1 accuracy (percent).
        top5: top-5 accuracy (percent; top-k with k = number of classes when fewer than 5).
        predictions: top-1 class of every evaluated image (int16).
        labels: its label (int16).
    """

    top1: float
    top5: float
    predictions: torch.Tensor
    labels: torch.Tensor


def _gather_in_order(local: torch.Tensor, positions: torch.Tensor, total: int, every: int,
                     info: DistInfo, device: torch.device) -> torch.Tensor:
    """Per-image values of every process, in test-set order, at positions 0, every, 2 every, ..."""
    if info.world <= 1:
        return local
    full = torch.zeros(total, dtype=torch.int64, device=device)
    full[positions.to(device)] = local.to(device, torch.int64) + 1  # 0 marks "another process's"
    torch.distributed.all_reduce(full)
    return (full[::every] - 1).cpu()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Callable, device: torch.device, info: DistInfo,
             num_classes: int, every: int = 1) -> Evaluation:
    """Accuracy over the test set, all processes together, with per-image predictions.

    Args:
        model: the model, in the quantization mode to measure.
        batches: ``() -> iterator of (x, y)`` over this process's share of the test set.
        device: where the model lives.
        info: process-group facts.
        num_classes: for top-k with fewer than 5 classes.
        every: evaluate every n-th test image only (positions 0, n, 2n, ... of the test set).
    """
    model.eval()
    k = min(5, num_classes)
    preds, labels, hits5, kept = [], [], [], []
    seen = 0
    # the weights do not change during an evaluation: quantize them once, not once per batch
    # (AlexNet-BN at mini: 158 soft/hard quantizations of 57 M weights per epoch otherwise)
    with parametrize.cached():
        for x, y in batches():
            # test-set position of each image of this process's share: rank + j * world
            pos = info.rank + info.world * torch.arange(seen, seen + y.numel())
            seen += y.numel()
            if every > 1:
                keep = pos % every == 0
                x, y, pos = x[keep], y[keep], pos[keep]
            if y.numel() == 0:
                continue
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            top = model(x).topk(k, dim=1).indices
            preds.append(top[:, 0].cpu())
            labels.append(y.cpu())
            hits5.append((top == y[:, None]).any(dim=1).cpu())
            kept.append(pos)
    empty = torch.zeros(0, dtype=torch.int64)
    pred, label, pos = (torch.cat(t) if t else empty for t in (preds, labels, kept))
    hit5 = torch.cat(hits5) if hits5 else empty.bool()
    c1, c5, n, total = all_sum([float((pred == label).sum()), float(hit5.sum()), float(label.numel()),
                                float(seen)], info, device)
    pred = _gather_in_order(pred, pos, int(total), every, info, device)
    label = _gather_in_order(label, pos, int(total), every, info, device)
    return Evaluation(100.0 * c1 / max(n, 1), 100.0 * c5 / max(n, 1), pred.to(torch.int16),
                      label.to(torch.int16))


def write_predictions(path: Path, final: dict, labels: torch.Tensor, curves: dict, history: list[dict],
                      stride: int) -> None:
    """Per-image top-1 predictions of a run, for paired statistics (qbench.stats).

    Arrays: ``label``, ``hard``, ``soft`` (final evaluation, every test image in test-set
    order); ``curve_epoch``, ``curve_hard``, ``curve_soft`` (epochs x images) and
    ``curve_label`` for the per-epoch evaluations on every ``curve_stride``-th image.
    """
    import numpy as np

    def arr(t: torch.Tensor | None) -> np.ndarray:
        return np.zeros(0, np.int16) if t is None else t.numpy().astype(np.int16)

    def stack(ts: list) -> np.ndarray:
        return np.stack([arr(t) for t in ts]) if ts else np.zeros((0, 0), np.int16)

    io.save_arrays(path, {
        "label": arr(labels), "hard": arr(final["hard"]), "soft": arr(final["soft"]),
        "curve_epoch": np.array([h["epoch"] for h in history], np.int16),
        "curve_hard": stack(curves["hard"]), "curve_soft": stack(curves["soft"]),
        "curve_label": arr(curves["labels"]), "curve_stride": np.array(stride, np.int32)})


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


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
    # before joining any group: a job that asked for GPUs and sees none fails here, naming why
    device = resolve_device(config.device, local_rank=torchrun_env().local_rank)
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    info = DistInfo()
    try:
        info = join_process_group(device)
        # rank 0 writes the directory; a second job on it fails here, naming the holder
        with RunDirLock(out) if info.main else contextlib.nullcontext():
            return _run(config, resolved, out, quiet, info, torch.device(device))
    finally:
        leave_process_group(info)
        torch.use_deterministic_algorithms(old_det)


# hard top-1 this many points below soft top-1 flags a run's evaluation (metrics final)
EVALUATION_MISMATCH_POINTS = 5.0


def _load_resume_checkpoint(path: Path, device: torch.device, resolved: dict) -> dict:
    """The resume checkpoint, checked: loadable as data, of this config, with every field."""
    ckpt = io.load_torch(path, "resume checkpoint", RESTART_HINT, map_location=device)
    fields = ("model", "optimizer", "history", "epoch", "wall_time_s", "train_images", "train_time_s", "rng")
    missing = [k for k in fields if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise FileFormatError(f"resume checkpoint: {path}: not a qbench training checkpoint (no "
                              f"{', '.join(missing)}); {RESTART_HINT}")
    if "config" in ckpt and ckpt["config"] != resolved:
        raise RunDirError(f"{path}: was written by a run with another config; use a new --out directory")
    return ckpt


def _check_temperature(T: float | None, epoch: int, phase: str) -> None:
    if T is not None and not (math.isfinite(T) and 0 < T <= FLOAT32_MAX):
        raise TrainingError(f"temperature T={T:.3g} at epoch {epoch}, phase {phase} is beyond float32 "
                            "range; lower temperature.slope / epoch_scale or set temperature.cap")


class _ClassificationRun:
    """One classification run, step by step: adopt the directory, build, resume or calibrate,
    train the epochs, finalise. ``_run`` calls the steps in order; the attributes are what the
    steps share."""

    def __init__(self, config: Config, resolved: dict, out: Path, info: DistInfo, device: torch.device,
                 log: RunLog) -> None:
        self.config, self.resolved, self.out, self.info, self.device, self.log = config, resolved, out, info, device, log
        self.main = info.main
        self.start_wall = time.perf_counter()
        self.history: list[dict] = []
        # per-image top-1 predictions of every per-epoch evaluation (Fig. 4 statistics)
        self.curves: dict = {"hard": [], "soft": [], "labels": None}
        self.start_epoch, self.wall_done, self.train_images, self.train_time = 1, 0.0, 0, 0.0
        self.ckpt_path = out / run_files.CHECKPOINT
        self.last_save = -math.inf
        self.eval_stats: dict = {}  # "hard": the BatchNorm statistics of the last hard evaluation

    def build(self) -> None:
        """Model (seeded, the same on every process, then the FP weights if any), the method
        that quantizes it, the optimizer with the method's groups, the epoch plan and the data."""
        config, log = self.config, self.log
        torch.manual_seed(config.seed)
        model = build_model(config.model.arch, config.model.num_classes, config.model.in_channels,
                            config.model.width, config.model.stem)
        if config.start.mode == "pretrained":
            loaded = load_pretrained(model, config.start.checkpoint)
            log(f"loaded {config.start.checkpoint} (adapted {loaded['adapted']}, kept init {loaded['skipped']})")
        if self.info.world > 1:
            model = convert_batchnorm(model, self.device.type)
        self.report = Q.QuantReport()
        self.method: Q.QuantMethod | None = None  # None: a full-precision run
        if config.quant.enabled:
            self.method = Q.quantize_(model, config.quant.method_config())
            self.report = self.method.report
            problem = phase_problem(model, config.phases(), self.method)
            if problem:
                raise TrainingError(problem)
        model.to(self.device)
        self.model = model
        self.optimizer = self._optimizer()
        self.plan = epoch_plan(config)
        self.data = self._data()
        # the compiled module shares the model's parameters; evaluation and checkpoints use the model
        self.train_model = torch.compile(model) if config.compile else model
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16}[config.precision]
        self.phases = config.phases()

    def _optimizer(self) -> torch.optim.Optimizer:
        optim, method, model = self.config.optim, self.method, self.model
        # the method's own groups (QuantMethod.param_groups: lr and weight-decay multipliers)
        quant_groups = (method.param_groups(model) if method is not None
                        else [{"params": [], "lr_mult": 1.0, "decay_mult": 0.0}])
        qids = {id(p) for g in quant_groups for p in g["params"]}
        net_params = [p for p in model.parameters() if id(p) not in qids]
        return torch.optim.SGD(
            [{"params": net_params, "weight_decay": optim.weight_decay, "lr_mult": 1.0}]
            + [{"params": g["params"], "weight_decay": optim.weight_decay * g["decay_mult"],
                "lr_mult": g["lr_mult"]} for g in quant_groups],
            lr=optim.lr, momentum=optim.momentum)

    def _data(self):
        config, info, d, out = self.config, self.info, self.config.data, self.out
        data = build_data(d.dataset, d.root, d.image_size, config.model.in_channels, config.model.num_classes,
                          d.train_size, d.test_size, d.subset_seed, d.workers)
        if d.batch_size % info.world:
            raise TrainingError(f"data.batch_size {d.batch_size} is not divisible by the {info.world} processes")
        if data.num_train < d.batch_size:
            raise TrainingError(f"data.batch_size {d.batch_size} exceeds the {data.num_train} training images")
        self.log(f"{config.model.arch} on {data.name}: {data.num_train} train / {data.num_test} test images, "
                 f"{info.world} process(es), device {self.device}, {torch.get_num_threads()} thread(s), "
                 f"precision {config.precision}{', compiled' if config.compile else ''}")
        if self.main:
            resumed = (out / run_files.CHECKPOINT).is_file()
            io.check_data_files(out, data.files, resumed=resumed)
            io.write_json(out / run_files.ENV, io.run_environment(out / run_files.ENV, self.device, config.seed,
                                                               info.world, resumed=resumed, data_files=data.files))
        return data

    def resume_or_calibrate(self) -> None:
        """Continue from the checkpoint, or calibrate the activation quantizers of a new run."""
        ckpt_path, q = self.ckpt_path, self.config.quant
        # Every process decides about resuming before rank 0 can write a new checkpoint.
        resume = ckpt_path.is_file()
        all_sum([0.0], self.info, self.device)
        if resume:
            ckpt = _load_resume_checkpoint(ckpt_path, self.device, self.resolved)
            try:
                self.model.load_state_dict(ckpt["model"])
                self.optimizer.load_state_dict(ckpt["optimizer"])
            except (RuntimeError, ValueError, KeyError) as e:
                raise FileFormatError(f"resume checkpoint: {ckpt_path}: does not fit this model "
                                      f"({str(e).splitlines()[0]}); {RESTART_HINT}") from None
            self.history = list(ckpt["history"])
            self.curves = ckpt.get("curves", self.curves)
            self.start_epoch = int(ckpt["epoch"]) + 1
            self.wall_done, self.train_images, self.train_time = (ckpt["wall_time_s"], ckpt["train_images"],
                                                                  ckpt["train_time_s"])
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
            self.log(f"resumed from {ckpt_path} after epoch {ckpt['epoch']}")
        elif q.activations is not None:
            batches = (x.to(self.device) for x in self.data.calib_batches(self.config.data.batch_size,
                                                                          self.config.seed))
            maxima = self.method.calibrate(self.model, batches, q.calib_samples)
            self.log(f"calibrated {len(maxima)} activation quantizers on {q.calib_samples} samples")
        if not resume and self.config.checkpoint_every_s == 0:  # otherwise a restart re-initialises
            self.save_checkpoint(0)
        self.last_save = time.perf_counter()

    def wall(self) -> float:
        return self.wall_done + time.perf_counter() - self.start_wall

    def save_checkpoint(self, epoch: int) -> None:
        now = time.perf_counter()
        due = now - self.last_save >= self.config.checkpoint_every_s or epoch == len(self.phases)
        if self.main and due:
            self.last_save = now
            io.save_torch(self.ckpt_path, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                "history": self.history, "curves": self.curves, "rng": _rng_state(self.device),
                "wall_time_s": self.wall(), "train_images": self.train_images, "train_time_s": self.train_time,
                "phase": self.phases[epoch - 1] if epoch else "init", "config": self.resolved,
                # what the last hard evaluation normalised with (the deployed network's)
                "eval_batchnorm": self.eval_stats.get("hard")})

    def _evaluate(self, every: int) -> Evaluation:
        d = self.config.data
        return evaluate(self.model, lambda: self.data.test_batches(d.batch_size, self.info.rank, self.info.world),
                        self.device, self.info, self.config.model.num_classes, every)

    def evaluate_modes(self, every: int) -> tuple[Evaluation, Evaluation]:
        """The hard and the soft evaluation (``qbench.run.hard_and_soft``)."""
        return hard_and_soft(self.method, lambda mode: self._evaluate_in(mode, every))

    def _evaluate_in(self, mode: str | None, every: int) -> Evaluation:
        method, model, q = self.method, self.model, self.config.quant
        if mode is None:
            return self._evaluate(every)
        method.set_mode(model, mode)
        if mode != method.eval_mode or method.train_mode in (None, method.eval_mode) or not q.bn_reestimate_samples:
            return self._evaluate(every)
        # BatchNorm statistics of the evaluated mode, not of the trained one (deviation
        # bn_hard_stats); the training statistics come back for the soft evaluation and training
        trained_stats = Q.batchnorm_statistics(model)
        if not trained_stats:
            return self._evaluate(every)
        self._reestimate_batchnorm(q.bn_reestimate_samples)
        self.eval_stats["hard"] = Q.batchnorm_statistics(model)
        result = self._evaluate(every)
        model.load_state_dict(trained_stats, strict=False)
        return result

    def _reestimate_batchnorm(self, samples: int) -> None:
        info = self.info

        def share(m: nn.Module, x: torch.Tensor) -> int:
            # each process its share of the global batch, so synchronised BatchNorm averages
            # over the same images as one process does; every process counts the global batch
            m(x[info.rank::info.world].to(self.device))
            return x.shape[0]

        calib = self.data.calib_batches(self.config.data.batch_size, self.config.seed)
        Q.reestimate_batchnorm(self.model, (x for x in calib if x.shape[0] >= info.world), samples, forward=share)

    def start_epoch_plan(self, epoch: int):
        """Phase, temperatures, method hook and lr of ``epoch``; returns (phase, trained
        parameters, its EpochPlan)."""
        phase, method, model = self.phases[epoch - 1], self.method, self.model
        trained = configure_phase(model, phase, method)
        step_plan = self.plan[epoch - 1]
        for t in (step_plan.t_weights, step_plan.t_activations):
            _check_temperature(t, epoch, phase)
        if method is not None:
            method.on_epoch(model, step_plan)
            if method.train_mode is not None:
                method.set_mode(model, method.train_mode)
        for g in self.optimizer.param_groups:
            g["lr"] = step_plan.lr * g.get("lr_mult", 1.0)  # checkpoints before lr_mult: 1
        return phase, trained, step_plan

    def train_steps(self, epoch: int, phase: str, trained: list, use_bar: bool) -> tuple[float, float, float]:
        """One epoch's optimizer steps; (loss sum, correct, images) of this process."""
        config, d, info, device = self.config, self.config.data, self.info, self.device
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        self.model.train()
        loss_sum = correct = seen = 0.0
        batches = self.data.train_batches(epoch, d.batch_size, config.seed, info.rank, info.world)
        bar = None
        if use_bar:
            from tqdm import tqdm
            bar = tqdm(total=self.data.num_train // d.batch_size, desc=f"epoch {epoch}/{len(self.phases)} {phase}",
                       leave=False, file=sys.stderr)
        for step, (x, y) in enumerate(batches, start=1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.train_model(x)
                loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss).all():
                raise TrainingError(f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}, "
                                    f"phase {phase}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(trained, info)
            if config.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trained, config.optim.grad_clip)
            self.optimizer.step()
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.numel()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if bar is not None:
            bar.close()
        return loss_sum, correct, seen

    def train_epoch(self, epoch: int, use_bar: bool) -> None:
        """Train ``epoch``, evaluate both modes, record its history row and checkpoint."""
        phase, trained, step_plan = self.start_epoch_plan(epoch)
        # history's T: the weight quantizers' when there are any (docs/recipes.md has both)
        T = step_plan.t_weights if step_plan.t_weights is not None else step_plan.t_activations
        steps = self.data.num_train // self.config.data.batch_size
        t0 = time.perf_counter()
        loss_sum, correct, seen = self.train_steps(epoch, phase, trained, use_bar)
        if self.method is not None:
            self.method.on_epoch_end(self.model, step_plan)
        broken = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if broken:  # no loss has seen the last step's weights; evaluation would hide them
            raise TrainingError(f"non-finite weights ({', '.join(broken[:3])}) after epoch {epoch}, "
                                f"step {steps}, phase {phase}")
        loss_sum, correct, seen = all_sum([loss_sum, correct, seen], self.info, self.device)
        epoch_train_time = time.perf_counter() - t0
        self.train_time += epoch_train_time
        self.train_images += int(seen)
        try:
            hard, soft = self.evaluate_modes(self.config.data.epoch_test_stride)
        except NonFiniteError as e:
            raise TrainingError(f"{e} in the hard evaluation after epoch {epoch}, step {steps}, "
                                f"phase {phase}") from None
        self.curves["hard"].append(hard.predictions)
        self.curves["soft"].append(soft.predictions)
        self.curves["labels"] = hard.labels
        row = {"epoch": epoch, "phase": phase, "T": T, "lr": step_plan.lr,
               "train_loss": loss_sum / max(seen, 1), "train_top1": 100.0 * correct / max(seen, 1),
               "hard_top1": hard.top1, "hard_top5": hard.top5, "soft_top1": soft.top1, "soft_top5": soft.top5,
               "test_images": int(hard.labels.numel()), "time_s": time.perf_counter() - t0}
        self.history.append(row)
        self.log(f"epoch {epoch}/{len(self.phases)} [{phase}] T={T} lr={step_plan.lr:.3g} "
                 f"loss={row['train_loss']:.4f} train={row['train_top1']:.2f} hard={hard.top1:.2f}/{hard.top5:.2f} "
                 f"soft={soft.top1:.2f}/{soft.top5:.2f} ({row['time_s']:.1f}s, "
                 f"{seen / max(epoch_train_time, 1e-9):.0f} img/s)")
        self.save_checkpoint(epoch)

    def finalise(self) -> dict:
        """The final evaluation, metrics.json, predictions.npz and the export."""
        history, curves, method, model, d = self.history, self.curves, self.method, self.model, self.config.data
        if history and d.epoch_test_stride == 1:  # the last epoch's evaluation saw every test image
            hard = soft = None
            final = {k: history[-1][k] for k in ("hard_top1", "hard_top5", "soft_top1", "soft_top5")}
            final_pred = {"hard": curves["hard"][-1], "soft": curves["soft"][-1]}
        else:  # per-epoch evaluations saw a subset, or an evaluation-only run of an FP checkpoint
            hard, soft = self.evaluate_modes(1)
            final = {"hard_top1": hard.top1, "hard_top5": hard.top5, "soft_top1": soft.top1, "soft_top5": soft.top5}
            final_pred = {"hard": hard.predictions, "soft": soft.predictions}
            if not history:
                self.log(f"evaluated {self.config.start.checkpoint} without training")
        labels = curves["labels"] if hard is None else hard.labels
        final["test_images"] = int(labels.numel())
        # a deployed (hard) network far below the trained (soft) one is an evaluation problem, not
        # a result: the report flags it
        final["evaluation_mismatch"] = final["soft_top1"] - final["hard_top1"] > EVALUATION_MISMATCH_POINTS
        wall = self.wall()
        if method is not None and method.eval_mode is not None:
            method.set_mode(model, method.eval_mode)
        metrics = metrics_record("classify", final, history, wall, self.train_images / max(self.train_time, 1e-9),
                                 self.device, model, method, self.report, data_files=self.data.files)
        if self.main:
            if method is not None and method.exports_codes:
                io.save_torch(self.out / run_files.EXPORT, method.export(model))
            write_predictions(self.out / run_files.PREDICTIONS, final_pred, labels, curves, history,
                              d.epoch_test_stride)
            io.write_json(self.out / run_files.METRICS, metrics)
            self.log(f"done: hard top-1 {final['hard_top1']:.2f} top-5 {final['hard_top5']:.2f} in {wall:.1f}s")
        return metrics


def _adopt_run_dir(resolved: dict, out: Path, info: DistInfo, device: torch.device) -> dict | None:
    """Create or adopt the run directory (rank 0); the finished metrics if the run is done."""
    done = None
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        done = adopt_run_dir(out, resolved)
    if info.world > 1:
        flag = all_sum([1.0 if done is not None else 0.0], info, device)[0]
        if flag and done is None:
            done = {"status": "complete"}
    return done


def _run(config: Config, resolved: dict, out: Path, quiet: bool, info: DistInfo, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.set_device(device)
    done = _adopt_run_dir(resolved, out, info, device)
    if done is not None:
        return done
    log = RunLog(out / run_files.LOG if info.main else None, quiet or not info.main)
    if info.main:
        stale = remove_stale_tmp(out)  # left by killed writers; the lock says none is alive
        if stale:
            log(f"removed {len(stale)} temporary file(s) of an interrupted write: "
                f"{', '.join(p.name for p in stale)}")
        io.write_yaml(out / run_files.CONFIG, resolved)
    training = _ClassificationRun(config, resolved, out, info, device, log)
    training.build()
    training.resume_or_calibrate()
    use_bar = not quiet and info.main and sys.stderr.isatty()
    for epoch in range(training.start_epoch, len(training.phases) + 1):
        training.train_epoch(epoch, use_bar)
    return training.finalise()
