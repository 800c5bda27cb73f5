"""``qbench train`` for ``task: detect``: quantized SSD300-VGG16 with mmdet + mmengine."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import torch
from torch import nn

from qbench import run_files
from qbench.models import get_model
from qbench.quant import QuantMethod, quantize_
from qbench.run import hard_and_soft, join_process_group, leave_process_group, metrics_record, resolve_device
from qbench.run.process import torchrun_env

from qbench.io import (
    RunDirLock,
    RunLog,
    adopt_run_dir,
    load_state_dict,
    remove_stale_tmp,
    run_environment,
    save_arrays,
    save_torch,
    write_json,
    write_yaml,
)

from .config import ConfigError, DetectRunConfig
from .datasets import dataloader_cfg, dataset_cfgs, test_pipeline
from .evaluate import JACKKNIFE_GROUPS, voc_map
from .mmdet_compat import require_mmdet
from .model import load_vgg16_backbone, param_groups_cfg, ssd_quant_layers


@contextmanager
def _runner_device(device: str):
    # mmengine's Runner moves the model to get_device() (CUDA when present); pin our choice
    with mock.patch("mmengine.runner.runner.get_device", return_value=device):
        yield


@contextmanager
def _unsharded_sampler():
    # every process builds the full test loader (rank 0 evaluates on it); building it on all
    # ranks keeps DefaultSampler's seed broadcast collective
    with mock.patch("mmengine.dataset.sampler.get_dist_info", return_value=(0, 1)):
        yield


def load_fp_state(path: Path) -> dict:
    """Full-precision weights from a state_dict file or an FP detection run's checkpoint.

    Args:
        path: ``torch.save``d state_dict, or a ``checkpoint.pt`` of an FP detection run.
    """
    return load_state_dict(path, "start.checkpoint", full_precision=True)


DETECTION_PACKAGES = ("torchvision", "numpy", "mmcv", "mmengine", "mmdet")


def _calibration_batches(model, dataset_cfg: dict, batch_size: int):
    from mmengine.runner import Runner

    with _unsharded_sampler():  # the same calibration images in every process
        loader = Runner.build_dataloader(dataloader_cfg(dataset_cfg, batch_size, 0, shuffle=True), seed=0)
    for batch in loader:
        yield model.data_preprocessor(batch, False)["inputs"]


def _reference_param(model, q_layers: list[str]):
    # the lr reported in the history: that of quantized parameters when there are any
    if q_layers:
        layer = model.get_submodule(q_layers[0])
        return layer.parametrizations.weight.original if hasattr(layer, "parametrizations") \
            else layer.weight
    return next(model.parameters())


def run_from_config(config: dict, out_dir: Path, quiet: bool = False) -> dict:
    """Train and evaluate one detection cell (FP or quantized SSD) and write its run directory.

    Writes ``config.yaml``, ``env.json``, ``train.log``, ``checkpoint.pt`` (every epoch,
    atomically; a rerun with the same ``out_dir`` resumes from it), ``model_hard.pt`` for
    quantized runs, and finally ``metrics.json`` (docs/CONTRACTS.md, ``task: detect``).

    Args:
        config: raw YAML dict after ``--set`` overrides; validated here before any work.
        out_dir: run directory.
        quiet: only warnings on the console.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    cfg = DetectRunConfig.from_dict(config)
    env = torchrun_env()
    world = env.world
    device = resolve_device(cfg.device, mmcv_ops=True, local_rank=env.local_rank if world > 1 else None)
    if cfg.data.batch_size % world:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} (the global batch) is "
                         f"not divisible by the {world} processes")
    out_dir = Path(out_dir)
    resolved = cfg.to_dict()
    config_json = json.dumps(resolved, sort_keys=True)
    if cfg.start.mode == "pretrained" and not Path(cfg.start.checkpoint).exists():
        raise ConfigError(f"start.checkpoint: {cfg.start.checkpoint} does not exist")
    backbone = cfg.detect.backbone_checkpoint
    if backbone is not None and not Path(backbone).is_file():
        raise ConfigError(f"detect.backbone_checkpoint: {backbone} does not exist")
    if not env.main:  # under torchrun only rank 0 checks, locks and writes the run directory
        return _locked_run(cfg, device, out_dir, resolved, config_json, quiet, env.rank, world)
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunDirLock(out_dir):  # a second job on this directory fails, naming the holder
        return _locked_run(cfg, device, out_dir, resolved, config_json, quiet, env.rank, world)


def _locked_run(cfg: DetectRunConfig, device: str, out_dir: Path, resolved: dict, config_json: str,
                quiet: bool, rank: int = 0, world: int = 1) -> dict:
    main = rank == 0
    done = adopt_run_dir(out_dir, resolved)  # every rank reads: all return together
    if done is not None:
        return done
    if main:
        remove_stale_tmp(out_dir)  # left by killed writers; the lock says none is alive
        write_yaml(out_dir / run_files.CONFIG, resolved)
    log = RunLog(out_dir / run_files.LOG if main else None, quiet or not main)

    # joined before mmengine's Runner, which then skips its own init_dist (that one calls
    # torch.cuda.set_device even for gloo on a CPU-only build)
    info = join_process_group(device)
    try:
        return _run(cfg, device, out_dir, config_json, quiet, log, main, world)
    finally:
        leave_process_group(info)


def _detector(cfg: DetectRunConfig, log) -> nn.Module:
    """The registered detector with its starting weights (an FP run's, or ImageNet VGG16's)."""
    model = get_model(cfg.model.arch).build(cfg)
    if cfg.start.mode == "pretrained":
        model.load_state_dict(load_fp_state(Path(cfg.start.checkpoint)))
        log(f"loaded full-precision weights from {cfg.start.checkpoint}")
    elif cfg.detect.backbone_checkpoint is not None:
        loaded = load_vgg16_backbone(model, Path(cfg.detect.backbone_checkpoint))
        log(f"backbone from ImageNet VGG16 {cfg.detect.backbone_checkpoint}: {len(loaded)} convs")
    return model


def _quantize(cfg: DetectRunConfig, model: nn.Module, train_ds: dict, resuming: bool,
              log) -> tuple[QuantMethod | None, Any, list[str]]:
    """(method, its report, the quantized layers) of a quantized run, the activation quantizers
    calibrated unless the run resumes; (None, None, []) for a full-precision run."""
    if not cfg.quant.enabled:
        return None, None, []
    from qbench.train.phases import phase_problem

    q_layers = ssd_quant_layers(model)
    method = quantize_(model, cfg.quant.method_config(), include=q_layers)
    report = method.report
    problem = phase_problem(model, cfg.epochs.phases(), method)
    if problem:
        raise ConfigError(problem)
    log(f"quantized {len(report.weight_layers)} weight / {len(report.activation_layers)} "
        f"activation layers: {q_layers}")
    if cfg.quant.activations is not None and not resuming:
        calib_ds = dict(train_ds if train_ds.get("type") == "VOCDataset" else train_ds["datasets"][0])
        calib_ds = dict(calib_ds, pipeline=test_pipeline(cfg.data.image_size))
        maxima = method.calibrate(
            model, _calibration_batches(model, calib_ds, cfg.data.batch_size), cfg.quant.calib_samples)
        log("activation maxima: " + ", ".join(f"{k}={v:.3g}" for k, v in maxima.items()))
    return method, report, q_layers


def _optim_wrapper(cfg: DetectRunConfig, model: nn.Module, method: QuantMethod | None, q_layers: list[str]) -> dict:
    """mmengine's optimizer wrapper: SGD, gradient clipping, the paper's parameter-wise lrs."""
    optim = cfg.optim
    optimizer = dict(type="SGD", lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    optim_wrapper = dict(type="OptimWrapper", optimizer=optimizer)
    if optim.grad_clip is not None:
        optim_wrapper["clip_grad"] = dict(max_norm=optim.grad_clip, norm_type=2)
    if method is not None:
        optim_wrapper["paramwise_cfg"] = param_groups_cfg(model, q_layers, optim.lr, cfg.detect.lr_other,
                                                          method.parameters(model), method.param_groups(model))
    return optim_wrapper


def _evaluator(cfg: DetectRunConfig, method: QuantMethod | None, test_loader, classes) -> Callable:
    """``evaluate(model, final=False) -> {"hard_map", "soft_map", "ap"(, "map_pseudo")}``."""

    def evaluate(m, final: bool = False) -> dict:
        def in_mode(mode: str | None) -> dict:
            # the final hard evaluation also gives the mAP's jackknife pseudo-values (map_pseudo.npz)
            hard_pass = mode is None or mode == method.eval_mode
            by_mode = {} if mode is None else {"quant_mode": mode, "method": method}
            return voc_map(m, test_loader, classes, cfg.detect.eval_mode,
                           jackknife_groups=JACKKNIFE_GROUPS if final and hard_pass else None, **by_mode)

        hard, soft = hard_and_soft(method, in_mode)
        row = {"hard_map": hard["map"], "soft_map": soft["map"], "ap": hard["ap"]}
        if final:
            row["map_pseudo"] = hard["pseudo"]
        return row

    return evaluate


def _distributed_cfg(cfg: DetectRunConfig, device: str, world: int) -> dict:
    """The Runner's launcher arguments: none, or mmengine's DDP wrapper under torchrun."""
    if world <= 1:
        return dict(launcher="none")
    # mmengine's DDP wrapper; device_ids must be None for a CPU module. Phases that switch
    # quantizers off or freeze parameters leave some parameters without gradients.
    e = cfg.epochs
    unused = e.activations > 0 or sum(1 for n in ("weights", "activations", "joint") if getattr(e, n)) > 1
    # mmengine reads the wrapper from the runner's cfg, not from a keyword of its own
    return dict(launcher="pytorch", cfg=dict(model_wrapper_cfg=dict(
        type="MMDistributedDataParallel", broadcast_buffers=False, find_unused_parameters=unused,
        device_ids=[int(device.split(":")[1])] if device.startswith("cuda") else None)))


def _finalise(out_dir: Path, device: str, model: nn.Module, method: QuantMethod | None, report, state_hook,
              t_start: float, world: int, log) -> dict:
    """Rank 0: the export, map_pseudo.npz and metrics.json of the finished run."""
    history = state_hook.history
    last = history[-1]
    if method is not None and method.exports_codes:
        save_torch(out_dir / run_files.EXPORT, method.export(model))
    metrics = metrics_record(
        "detect", {"hard_map": last["hard_map"], "soft_map": last["soft_map"]},
        [{k: v for k, v in row.items() if k not in ("ap", "map_pseudo")} for row in history],
        state_hook.elapsed_s,
        state_hook.train_images / state_hook.train_time_s if state_hook.train_time_s else 0.0,
        device, model, method, report, ap_per_class=last.get("ap", {}),
        resumed_from_epoch=state_hook.resumed_from, process_time_s=time.perf_counter() - t_start)
    if "map_pseudo" in last:
        # per-group test-sampling terms of the hard mAP, paired across runs by group (claims)
        save_arrays(out_dir / run_files.MAP_PSEUDO, {"hard": np.asarray(last["map_pseudo"], dtype=np.float64)})
    write_json(out_dir / run_files.METRICS, metrics)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    log(f"done: hard mAP {metrics['final']['hard_map']:.2f}, soft mAP {metrics['final']['soft_map']:.2f} "
        f"({metrics['wall_time_s']:.0f}s)")
    return metrics


def _run(cfg: DetectRunConfig, device: str, out_dir: Path, config_json: str, quiet: bool, log,
         main: bool = True, world: int = 1) -> dict:
    require_mmdet()
    from mmengine.runner import Runner

    # mmengine-based pieces load only here, so validation works without the detection stack
    from qbench.train.phases import epoch_plan

    from .hooks import LearningRateHook, MethodEpochHook, PhaseHook, RunStateHook

    t_start = time.perf_counter()
    if main:
        write_json(out_dir / run_files.ENV, run_environment(
            out_dir / run_files.ENV, device, cfg.seed, world, resumed=(out_dir / run_files.CHECKPOINT).exists(),
            packages=DETECTION_PACKAGES))
    torch.manual_seed(cfg.seed)
    # absolute: mmdet joins a relative ann_file to the dataset's data_root
    train_ds, test_ds, classes = dataset_cfgs(cfg, (out_dir / "data").resolve())
    model = _detector(cfg, log)
    method, report, q_layers = _quantize(cfg, model, train_ds, (out_dir / run_files.CHECKPOINT).exists(), log)
    optim_wrapper = _optim_wrapper(cfg, model, method, q_layers)
    total = cfg.epochs.total
    plan = epoch_plan(cfg)  # lr and T of every epoch, as qbench.train.phases (docs/recipes.md)
    with _unsharded_sampler():
        test_loader = Runner.build_dataloader(
            dataloader_cfg(test_ds, cfg.data.batch_size, cfg.data.workers, shuffle=False), seed=cfg.seed)

    phase_hook = PhaseHook(cfg.epochs, method)
    temp_hook = MethodEpochHook(method, plan) if method is not None else None
    state_hook = RunStateHook(out_dir / run_files.CHECKPOINT, config_json, cfg.seed,
                              _evaluator(cfg, method, test_loader, classes),
                              cfg.detect.eval_interval, total, phase_hook, temp_hook, log,
                              lr_param=_reference_param(model, q_layers), main=main, world=world)
    lr_hook = LearningRateHook(plan, cfg.optim.lr, cfg.detect.warmup_iters)
    hooks = [phase_hook, lr_hook] + ([temp_hook] if temp_hook else []) + [state_hook]
    with _runner_device(device):
        runner = Runner(
            model=model, work_dir=str(out_dir / "mmengine"),
            train_dataloader=dataloader_cfg(train_ds, cfg.data.batch_size // world, cfg.data.workers,
                                            shuffle=True),
            train_cfg=dict(by_epoch=True, max_epochs=total, val_interval=total + 1),
            optim_wrapper=optim_wrapper, param_scheduler=None,
            default_hooks=dict(timer=dict(type="IterTimerHook"),
                               logger=dict(type="LoggerHook", interval=cfg.detect.log_interval),
                               param_scheduler=dict(type="ParamSchedulerHook"),
                               sampler_seed=dict(type="DistSamplerSeedHook"), checkpoint=None),
            custom_hooks=hooks, randomness=dict(seed=cfg.seed), default_scope="mmdet",
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"),
                         mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0)),
            log_level="WARNING" if quiet or not main else "INFO", **_distributed_cfg(cfg, device, world))
        if torch.cuda.is_available() and device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        runner.train()

    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    if not main:
        import torch.distributed as dist

        dist.barrier()  # rank 0 writes the results
        return {"task": "detect", "status": "complete", "rank": torchrun_env().rank}
    return _finalise(out_dir, device, model, method, report, state_hook, t_start, world, log)
