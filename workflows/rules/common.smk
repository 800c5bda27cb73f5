# Shared names: the runs of this scale, output lists, input functions and the trainer command.

import json
import os

from qbench.paper import figure_names, table_names
from qbench.paper.recipe import deviations as paper_deviations

CELL_BY_ID = {c.id: c for c in CELLS}
FP_IDS = [c.id for c in CELLS if c.kind == "fp"]
QUANT_IDS = [c.id for c in CELLS if c.kind == "quant"]
RUNS = [(c.id, s) for c in CELLS for s in plan.seeds_of(config, c)]
TABLES = list(table_names())  # qbench/paper/tables.yaml: the paper's tables and summary_tables
TABLE_FILES = [f"{RES}/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
FIGURES = list(figure_names())
FIGURE_FILES = [f"{RES}/figures/{f}.{ext}" for f in FIGURES for ext in ("pdf", "png")]
DATASETS = plan.datasets_of(config, CELLS)
LIGHT = config["resources"]["light"]
TRAIN = config["resources"]["train"]
SITE = config["cluster"]


def site_resources(gpu: int) -> dict:
    """The site's SLURM settings (`cluster` of the site file) as snakemake resources."""
    res = {}
    if SITE["account"]:
        res["slurm_account"] = SITE["account"]
    partition = (SITE["gpu_partition"] if gpu else None) or SITE["partition"]
    if partition:
        res["slurm_partition"] = partition
    if SITE["qos"]:
        res["qos"] = SITE["qos"]
    if SITE["constraint"]:
        res["constraint"] = SITE["constraint"]  # the plugin's own option (sbatch -C, quoted)
    if SITE["extra"]:
        res["slurm_extra"] = SITE["extra"]
    return res


def gpu_resources(gpu: int) -> dict:
    """GPUs of a job in the form the site accepts: `gpu` (sbatch --gpus) or `gres`."""
    if not gpu:
        return {"gpu": 0}
    model = SITE["gpu_model"]
    if SITE["gpu_request"] == "gres":
        return {"gres": f"gpu:{model}:{gpu}" if model else f"gpu:{gpu}"}
    return {"gpu": gpu, "gpu_model": model} if model else {"gpu": gpu}


# One place for the resources of every job: the scale config. A training job runs max(gpu, 1)
# processes (torchrun: one per GPU) of `threads` threads each.
TRAIN_CPUS = TRAIN["threads"] * max(TRAIN["gpu"], 1)
TRAIN_RESOURCES = {
    "mem_mb": TRAIN["mem_mb"],
    "runtime": TRAIN["runtime"],
    "cpus_per_task": TRAIN_CPUS,
    **gpu_resources(TRAIN["gpu"]),
    **site_resources(TRAIN["gpu"]),
}
LIGHT_RESOURCES = {
    "mem_mb": LIGHT["mem_mb"],
    "runtime": LIGHT["runtime"],
    "cpus_per_task": LIGHT["threads"],
    **site_resources(0),
}


def _alternation(ids):
    # a regex that matches none of the ids when the list is empty
    return "|".join(ids) if ids else "(?!x)x"


wildcard_constraints:
    seed=r"\d+",
    dataset=_alternation(list(DATASETS)),


# The trainer's command as a list of words, each passed to the shell quoted (`{params.train:q}`):
# `train_command` is split like a shell would split it, but nothing in it is expanded or run.
if config["train_command"]:
    TRAIN_ARGV = plan.command_words(config["train_command"], "train_command")
elif config["launcher"] == "torchrun":
    # one process per GPU of the job
    TRAIN_ARGV = [PY, "-m", "torch.distributed.run", "--standalone",
                  f"--nproc_per_node={max(TRAIN['gpu'], 1)}", "-m", "qbench.cli", "train"]
else:
    TRAIN_ARGV = [PY, "-m", "qbench.cli", "train"]

# glibc returns every freed buffer above its mmap threshold to the kernel and faults it in again
# on the next step; an AlexNet-BN weight is 150 MB, so a mini step spent 40 % of its time in the
# kernel (0.85 s -> 0.55 s per step with these, measured on one core)
MALLOC_ENV = "MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824"
TRAIN_ENV = f"OMP_NUM_THREADS={TRAIN['threads']} MKL_NUM_THREADS={TRAIN['threads']} {MALLOC_ENV}"

PLAN_TEXT = json.dumps(
    {
        "scale": SCALE,
        "description": config["description"],
        "seeds": config["seeds"],
        "fp_seeds": config["fp_seeds"],
        "detection_enabled": config["detection"]["enabled"],
        "cells": [c.id for c in CELLS],
        # generated from the resolved cells vs the paper's recipe (docs/deviations.md)
        "deviations": [d.as_dict() for d in paper_deviations(config, strict=False)],
        "config": config,
    },
    indent=1,
    sort_keys=True,
)


# arguments, not shell text: each word reaches the shell quoted (`{params.cache:q}` in train_fp)
FP_CACHE_ARGS = ["--cache", os.path.expanduser(config["fp_cache"])] if config.get("fp_cache") else []


def output_dir(wildcards, output):
    """Directory of the job's first output (the run directory of a training job)."""
    return os.path.dirname(output[0])


def cell_fields_json(wildcards):
    """The fields of the job's cell that its evaluation record carries (qbench.report.collect)."""
    from qbench.report.collect import cell_fields

    return json.dumps(cell_fields(CELL_BY_ID[wildcards.cell]))


def input_dir(wildcards, input):
    """Directory of the job's first input (the run directory an evaluation reads)."""
    return os.path.dirname(input[0])


def tables_dir(wildcards, input):
    """Directory holding the table files among the inputs."""
    return os.path.dirname(input.tables[0])


def figures_dir(wildcards, input):
    """Directory holding the figure files among the inputs."""
    return os.path.dirname(input.figures[0])


def benchmarks_dir(wildcards, input):
    """Benchmark directory of this scale (next to the aggregate directory)."""
    return os.path.join(os.path.dirname(os.path.dirname(input.runs)), "benchmarks")


def cell_config_text(wildcards):
    """The YAML text of the job's `qbench train` config (a params value: a change re-runs it)."""
    rc = plan.run_config(config, CELL_BY_ID[wildcards.cell], int(wildcards.seed))
    return plan.dump_yaml(rc)


def data_stamp(wildcards):
    """The prepared-data stamp of the job's dataset."""
    rc = plan.run_config(config, CELL_BY_ID[wildcards.cell], int(wildcards.seed))
    return f"{RES}/data/{plan.dataset_key(rc['data'])}.json"


def quant_inputs(wildcards):
    """Config, data and, for pretrained cells, what provides the FP checkpoint they fine-tune:
    the imported weights file, or the FP run's metrics.json (its checkpoint.pt is not an output,
    so that an interrupted run keeps it to resume from; the rendered config names it)."""
    cell = CELL_BY_ID[wildcards.cell]
    inputs = {
        "config": f"{RES}/configs/{wildcards.cell}_s{wildcards.seed}.yaml",
        "data": data_stamp(wildcards),
    }
    if cell.start == "pretrained":
        fp = plan.fp_checkpoint(config, cell.model)
        if not config["fp_weights"].get(cell.model):
            fp = os.path.join(os.path.dirname(fp), "metrics.json")
        inputs["fp"] = fp
    return inputs


def fp_inputs(wildcards):
    """Config, data and, when the scale imports FP weights, the weights file."""
    cell = CELL_BY_ID[wildcards.cell]
    inputs = {
        "config": f"{RES}/configs/{wildcards.cell}_s{wildcards.seed}.yaml",
        "data": data_stamp(wildcards),
    }
    weights = config["fp_weights"].get(cell.model)
    if weights:
        inputs["weights"] = weights
    return inputs


def data_spec(wildcards):
    """JSON of the data section of a dataset key (a params value)."""
    return json.dumps(DATASETS[wildcards.dataset], sort_keys=True)


def all_evals(wildcards):
    """Every per-run evaluation record of this scale."""
    return [f"{RES}/eval/{cid}_s{seed}.json" for cid, seed in RUNS]
