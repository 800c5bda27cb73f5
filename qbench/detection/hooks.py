"""mmengine hooks of a detection run: the quantization method's per-epoch step (the paper's
temperature schedule), training phases, and the per-epoch bookkeeping (evaluation, history,
atomic checkpoints, resume)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from mmengine.hooks import Hook

from qbench.io import FileFormatError, RunDirError, load_torch, save_torch
from qbench.quant import QuantMethod
from qbench.train.phases import configure_phase

from qbench.train.config import EpochsConfig

CHECKPOINT_FORMAT = "qbench-detect-checkpoint-v1"


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class MethodEpochHook(Hook):
    """Runs the quantization method's ``on_epoch`` before each training epoch with the run's
    epoch plan (the paper's method sets T from it: T = k x the epochs each quantizer has
    trained, times ``temperature.epoch_scale``; SSD: T = 10 x epoch), then puts the
    quantizers in the method's training mode.

    Args:
        method: the model's quantization method.
        plan: ``epoch_plan(config)``, one entry per epoch.
    """

    priority = "NORMAL"

    def __init__(self, method: QuantMethod, plan: list) -> None:
        self.method = method
        self.plan = plan
        self.current: float | None = None  # the history's T (None for a method without one)

    def before_train_epoch(self, runner) -> None:
        step = self.plan[runner.epoch]
        model = _unwrap(runner.model)
        self.method.on_epoch(model, step)
        if self.method.train_mode is not None:
            self.method.set_mode(model, self.method.train_mode)
        self.current = step.t_weights if step.t_weights is not None else step.t_activations

    def after_train_epoch(self, runner) -> None:
        # mmengine counts the epoch up after this hook: runner.epoch is still the one that ran
        self.method.on_epoch_end(_unwrap(runner.model), self.plan[runner.epoch])


class LearningRateHook(Hook):
    """Sets the lr of every parameter group from the run's epoch plan (qbench.train.phases: the
    schedule restarts in each phase), times a linear warm-up over the first iterations
    (factor 1e-3 -> 1, as mmengine's LinearLR). Stateless, so a resumed run continues with
    exactly the lr an uninterrupted one has.

    Args:
        plan: ``epoch_plan(config)``.
        base_lr: ``optim.lr``; each group keeps its ratio to it (``detect.lr_other``).
        warmup_iters: warm-up length in iterations (0 = none).
    """

    priority = "ABOVE_NORMAL"  # before RunStateHook reads the lr and resumes
    START_FACTOR = 1e-3

    def __init__(self, plan: list, base_lr: float, warmup_iters: int) -> None:
        self.plan, self.base_lr, self.warmup_iters = plan, base_lr, warmup_iters
        self.ratios: list[float] = []

    def before_train(self, runner) -> None:
        self.ratios = [g["lr"] / self.base_lr for g in runner.optim_wrapper.param_groups]

    def _apply(self, runner) -> None:
        factor = 1.0
        if runner.iter < self.warmup_iters:
            factor = self.START_FACTOR + (1 - self.START_FACTOR) * runner.iter / self.warmup_iters
        lr = self.plan[runner.epoch].lr * factor
        for group, ratio in zip(runner.optim_wrapper.param_groups, self.ratios):
            group["lr"] = lr * ratio

    def before_train_epoch(self, runner) -> None:
        self._apply(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._apply(runner)


class PhaseHook(Hook):
    """Applies the paper's training phases at the start of each epoch, through the one phase
    switcher of both trainers (``qbench.train.phases.configure_phase``).

    Args:
        epochs: the run's epoch split.
        method: the model's quantization method (None: a full-precision run).
    """

    priority = "HIGH"

    def __init__(self, epochs: EpochsConfig, method: QuantMethod | None = None) -> None:
        self.epochs = epochs
        self.method = method
        self.phase: str | None = None

    def before_train_epoch(self, runner) -> None:
        model = _unwrap(runner.model)
        self.phase = self.epochs.phase_of(runner.epoch + 1)
        configure_phase(model, self.phase, self.method)


class RunStateHook(Hook):
    """Per-epoch bookkeeping: reseeding, loss averaging, evaluation, history and checkpoints.

    Before training it resumes from ``checkpoint_path`` when that file exists. After every
    epoch it evaluates (when ``evaluate_now(epoch)``), appends a history row, and atomically
    rewrites the checkpoint, so an interrupted run restarts at its last finished epoch.

    Args:
        checkpoint_path: where the resume checkpoint lives.
        config_json: the resolved config; a checkpoint made with another config is refused.
        seed: base seed; epoch e reseeds python/numpy/torch with (seed, e), so a resumed run
            draws the same augmentations as an uninterrupted one.
        evaluate: ``evaluate(model, final) -> {"hard_map", "soft_map", ...}``; ``final`` at
            the last epoch (where the runner also records the test-sampling pseudo-values).
        eval_interval: evaluate every this many epochs (and at the last epoch).
        max_epochs: the run's number of epochs.
        phase_hook, temperature_hook: read for the history rows (``temperature_hook``: the
            ``MethodEpochHook``, None in a full-precision run).
        log: ``log(message)`` for one line per epoch.
        lr_param: the history's ``lr`` is the lr of this parameter's group (a quantized
            parameter in quantized runs); None = the first group.
        main: this process evaluates and writes the checkpoint (rank 0 under torchrun).
        world: number of processes (training images are counted over all of them).
    """

    priority = "LOW"

    def __init__(self, checkpoint_path: Path, config_json: str, seed: int,
                 evaluate: Callable, eval_interval: int, max_epochs: int,
                 phase_hook: PhaseHook, temperature_hook: MethodEpochHook | None,
                 log: Callable[[str], None], lr_param: torch.nn.Parameter | None = None,
                 main: bool = True, world: int = 1) -> None:
        self.main, self.world = main, world
        self.checkpoint_path = Path(checkpoint_path)
        self.config_json = config_json
        self.seed = seed
        self.evaluate = evaluate
        self.eval_interval = eval_interval
        self.max_epochs = max_epochs
        self.phase_hook = phase_hook
        self.temperature_hook = temperature_hook
        self.log = log
        self.lr_param = lr_param
        self.history: list[dict] = []
        self.elapsed_s = 0.0
        self.train_images = 0
        self.train_time_s = 0.0
        self.resumed_from: int | None = None
        self._loss_sum = 0.0
        self._loss_n = 0
        self._epoch_start = 0.0
        self._lr = 0.0
        self._run_start = 0.0

    # -- resume ---------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        self._run_start = time.perf_counter()
        if not self.checkpoint_path.exists():
            return
        hint = "delete it to restart the run from epoch 0"
        ckpt = load_torch(self.checkpoint_path, "resume checkpoint", hint)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise FileFormatError(f"resume checkpoint: {self.checkpoint_path}: not a {CHECKPOINT_FORMAT} "
                                  f"checkpoint; {hint}")
        if ckpt["config"] != self.config_json:
            raise RunDirError(f"{self.checkpoint_path} belongs to a run with another config; "
                              "use a fresh --out directory")
        model = _unwrap(runner.model)
        model.load_state_dict(ckpt["model"])
        runner.optim_wrapper.load_state_dict(ckpt["optimizer"])
        epoch = int(ckpt["epoch"])
        iters = int(ckpt["iter"])
        loop = runner.train_loop
        loop._epoch = epoch
        loop._iter = iters
        for scheduler in runner.param_schedulers or []:
            # lr is restored with the optimizer; schedulers only need to know where they are
            scheduler.last_step = epoch if scheduler.by_epoch else iters
        self.history = list(ckpt["history"])
        self.elapsed_s = float(ckpt["elapsed_s"])
        self.train_images = int(ckpt["train_images"])
        self.train_time_s = float(ckpt["train_time_s"])
        self.resumed_from = epoch
        self.log(f"resumed from {self.checkpoint_path} after epoch {epoch}")

    # -- per epoch ------------------------------------------------------------------------
    def before_train_epoch(self, runner) -> None:
        e = runner.epoch + 1
        seed = (self.seed * 1_000_003 + e) % (2**31)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self._loss_sum, self._loss_n = 0.0, 0
        groups = runner.optim_wrapper.param_groups
        if self.lr_param is not None:
            groups = [g for g in groups if any(p is self.lr_param for p in g["params"])]
        self._lr = float(groups[0]["lr"])
        self._epoch_start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if outputs is not None and "loss" in outputs:
            loss = outputs["loss"]
            self._loss_sum += float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            self._loss_n += 1
        if data_batch is not None:
            self.train_images += len(data_batch["inputs"]) * self.world

    def after_train_epoch(self, runner) -> None:
        e = runner.epoch + 1
        train_time = time.perf_counter() - self._epoch_start
        self.train_time_s += train_time
        row = {"epoch": e, "phase": self.phase_hook.phase,
               "T": self.temperature_hook.current if self.temperature_hook else None,
               "lr": self._lr,
               "train_loss": self._loss_sum / max(self._loss_n, 1),
               "hard_map": None, "soft_map": None, "time_s": train_time}
        if self.main and (e % self.eval_interval == 0 or e == self.max_epochs):
            t0 = time.perf_counter()
            row.update(self.evaluate(_unwrap(runner.model), e == self.max_epochs))
            row["eval_time_s"] = time.perf_counter() - t0
        self.history.append(row)
        now = time.perf_counter()
        self.elapsed_s += now - self._run_start
        self._run_start = now
        self.save(runner, e)
        maps = "" if row["hard_map"] is None else \
            f" hard_mAP {row['hard_map']:.2f} soft_mAP {row['soft_map']:.2f}"
        T = "" if row["T"] is None else f" T {row['T']:g}"
        self.log(f"epoch {e}/{self.max_epochs} [{row['phase']}]{T} lr {row['lr']:.3g} "
                 f"loss {row['train_loss']:.4f}{maps} ({train_time:.1f}s)")

    def save(self, runner, epoch: int) -> None:
        """Atomically write the resume checkpoint (tensors and plain data only; rank 0)."""
        if not self.main:
            return
        ckpt = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "iter": int(runner.iter) + 0,
                "model": _unwrap(runner.model).state_dict(),
                "optimizer": runner.optim_wrapper.state_dict(),
                "history": self.history, "elapsed_s": self.elapsed_s,
                "train_images": self.train_images, "train_time_s": self.train_time_s,
                "config": self.config_json}
        save_torch(self.checkpoint_path, ckpt)


def quantizer_param_ids(model, method: QuantMethod) -> set[int]:
    """ids of all parameters of the model's quantization method (the paper's: alpha, beta,
    learnable biases)."""
    return {id(p) for p in method.parameters(model)}

