"""From a scale config and the paper's experiment cells to the list of `qbench train` runs.

The Snakefile calls these functions at parse time, so a bad config fails before any job starts:
every rendered run config is validated by the trainer's own config classes
(``qbench.train.config.Config``, ``qbench.detection.config.DetectRunConfig``), and an error is
reported under the pipeline key that set the value.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from qbench.io import write_text  # noqa: F401 (the config-rendering rules write through it)
from qbench.paper import Cell, fp_cell_of, load_cells  # noqa: F401 (load_cells re-exported)

from qbench.models import available_models
from qbench.quant import available_methods, get_method
from qbench.train.config import ConfigError


PHASE_KINDS = ("fp", "weights", "activations", "both")

# sbatch options the SLURM executor plugin sets itself and refuses in `slurm_extra`
# (snakemake_executor_plugin_slurm.validation.get_forbidden_slurm_options, 2.8), each with the
# site-file key or scale-config key that sets it here instead
SLURM_MANAGED_OPTIONS = {
    "job-name": None, "output": None, "error": None, "parsable": None, "export": None,
    "comment": None, "workdir": None, "chdir": None, "account": "cluster.account",
    "partition": "cluster.partition", "mem": "resources.*.mem_mb",
    "mem-per-cpu": "resources.*.mem_mb", "ntasks": None, "ntasks-per-gpu": None,
    "cpus-per-task": "resources.*.threads", "cpus-per-gpu": "resources.*.threads",
    "time": "resources.*.runtime", "constraint": "cluster.constraint", "qos": "cluster.qos",
    "nodes": None, "clusters": None, "gres": "cluster.gpu_request", "gpus": "resources.train.gpu",
}
# `cluster.extra`: long sbatch options only (`--name` or `--name=value`), values of plain
# characters; the plugin appends the text to an sbatch line that a shell runs
SBATCH_EXTRA_WORD = re.compile(r"--([a-z][a-z0-9-]*)(?:=[A-Za-z0-9_.,:@/+%=-]+)?")


class PipelineConfigError(ValueError):
    """A scale config that cannot run; the message names the offending key."""


def stop(exc: ValueError, what: str = "invalid pipeline config") -> NoReturn:
    """Stop the workflow on a bad scale config (or registry) before any job: one line naming
    the key on stderr and exit code 2, as ``qbench train`` does for a bad run config.

    Args:
        exc: the error.
        what: what was invalid, the start of the line.
    """
    sys.stderr.write(f"{what}: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def deep_merge(base: dict, over: dict | None) -> dict:
    """Return ``base`` updated recursively with ``over`` (neither is modified).

    Args:
        base: the defaults.
        over: the overrides; a mapping value merges into a mapping, anything else replaces.
    """
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_scale_file(path: Path, config_dir: Path, seen: tuple[str, ...] = ()) -> dict:
    """A shipped scale file; ``extends: <scale>`` deep-merges it over that scale's file (a scale
    that differs from another only in its sizing says only that)."""
    from qbench.io import FileFormatError, read_yaml

    try:
        data = read_yaml(path, allow_empty=True) or {}
    except FileFormatError as exc:
        raise PipelineConfigError(str(exc)) from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = config_dir / f"{parent}.yaml"
    if not isinstance(parent, str) or not parent_path.is_file():
        raise PipelineConfigError(f"{path}: config key 'extends': no shipped scale {parent!r}")
    if parent in seen:
        raise PipelineConfigError(f"{path}: config key 'extends': {' -> '.join(seen + (parent,))} is a cycle")
    return deep_merge(_read_scale_file(parent_path, config_dir, seen + (path.stem,)), data)


def merge_scale_file(config: dict, config_dir: str | os.PathLike) -> dict:
    """Merge ``config_dir/<scale>.yaml`` under ``config`` (what the command line gave wins).

    Args:
        config: the config snakemake assembled (``--configfile`` / ``--config``); may be empty,
            then the scale is ``mini``.
        config_dir: directory of the shipped scale files.
    """
    scale = config.get("scale", "mini")
    path = Path(config_dir) / f"{scale}.yaml"
    base = {}
    if path.exists():
        base = _read_scale_file(path, Path(config_dir))
    elif "train" not in config:  # a scale of one's own comes with a whole config (--configfile)
        known = sorted(p.stem for p in Path(config_dir).glob("*.yaml"))
        raise PipelineConfigError(f"config key 'scale': unknown scale {scale!r}; known: {', '.join(known)} "
                                  "(or give a whole scale config with --configfile)")
    merged = deep_merge(base, config)
    merged["scale"] = scale
    return merged


def phase_of(cell: Cell) -> str:
    """Which `phases` section applies: fp, weights (W only), activations (A only) or both.

    Args:
        cell: an experiment cell.
    """
    if cell.kind == "fp":
        return "fp"
    if cell.weights and cell.activations:
        return "both"
    return "weights" if cell.weights else "activations"


def enabled_cells(cfg: dict) -> list[Cell]:
    """The cells this scale runs, in registry order: `cells.only` (or all), minus `cells.skip`,
    minus detection cells unless `detection.enabled`; FP cells that others start from are added.

    Args:
        cfg: the validated scale config.
    """
    cells = load_cells()
    only = cfg.get("cells", {}).get("only")
    skip = set(cfg.get("cells", {}).get("skip", []))
    for key, ids in (("cells.only", only or []), ("cells.skip", skip)):
        for cid in ids:
            if cid not in cells:
                raise PipelineConfigError(f"config key '{key}': unknown cell {cid!r}")
    chosen = [c for c in cells.values() if (only is None or c.id in only) and c.id not in skip]
    chosen = [c for c in chosen if not c.is_baseline or baseline_selected(cfg, c, explicit=only is not None)]
    if not cfg.get("detection", {}).get("enabled", False):
        chosen = [c for c in chosen if c.task != "detect"]
    ids = {c.id for c in chosen}
    for c in list(chosen):
        if c.kind == "quant" and c.start == "pretrained":
            fp = fp_cell_of(c.model)
            if fp.id not in ids:
                ids.add(fp.id)
    return [c for c in cells.values() if c.id in ids]


def baseline_selected(cfg: dict, cell: Cell, explicit: bool = False) -> bool:
    """Whether the scale runs baseline cell ``cell``: `baselines.enabled`, and its model and
    setting in `baselines.models` / `baselines.settings` where those are given.

    Raises PipelineConfigError when `cells.only` names a baseline that `baselines` leaves out.

    Args:
        cfg: the scale config.
        cell: a cell of another method than the paper's.
        explicit: the cell was named in `cells.only`.
    """
    sel = cfg.get("baselines") or {}
    reasons = []
    if not sel.get("enabled", True):
        reasons.append("baselines.enabled is false")
    for key, value in (("models", cell.model), ("settings", cell.setting)):
        if sel.get(key) is not None and value not in sel[key]:
            reasons.append(f"{value!r} is not in baselines.{key}")
    if reasons and explicit:
        raise PipelineConfigError(f"config key 'cells.only': baseline cell {cell.id!r} is left out: "
                                  + "; ".join(reasons))
    return not reasons


def seeds_of(cfg: dict, cell: Cell) -> list[int]:
    """Seeds of a cell: `cell_seeds.<cell>` when set, else `fp_seeds` for FP cells and `seeds`
    for the others.

    Args:
        cfg: the scale config.
        cell: the cell.
    """
    extra = (cfg.get("cell_seeds") or {}).get(cell.id)
    if extra is not None:
        return list(extra)
    return list(cfg["fp_seeds"] if cell.kind == "fp" else cfg["seeds"])


def results_dir(cfg: dict) -> str:
    """``results/<scale>`` (relative to the working directory)."""
    return f"results/{cfg['scale']}"


def run_dir(cfg: dict, cell_id: str, seed: int) -> str:
    """Run directory of one cell and seed.

    Args:
        cfg: the scale config.
        cell_id: cell id.
        seed: seed.
    """
    return f"{results_dir(cfg)}/runs/{cell_id}/s{seed}"


def fp_checkpoint(cfg: dict, model: str) -> str:
    """The FP checkpoint pretrained cells of ``model`` start from: ``fp_weights.<model>`` when
    given, else the FP cell's checkpoint (first FP seed).

    Args:
        cfg: the scale config.
        model: architecture name.
    """
    imported = cfg.get("fp_weights", {}).get(model)
    if imported:  # fine-tune the imported weights directly, not the FP cell's evaluation run
        return imported
    fp = fp_cell_of(model)
    return f"{run_dir(cfg, fp.id, cfg['fp_seeds'][0])}/checkpoint.pt"


def run_config(cfg: dict, cell: Cell, seed: int) -> dict:
    """The full `qbench train` config of one cell and seed.

    Order of precedence (later wins): `train` (`detection.train` for detect cells),
    `models.<arch>`, `phases.<phase>` (`detection.phases.<phase>` for detect cells when given),
    `models.<arch>.phases.<phase>`, the cell's own fields, `cell_overrides.<id>`.

    Args:
        cfg: the validated scale config.
        cell: the cell.
        seed: the seed.
    """
    phases = cfg.get("phases", {})
    if cell.task == "detect":
        # detection has its own base config and phase epochs (docs/detection.md)
        det = cfg.get("detection", {})
        base = copy.deepcopy(det.get("train", {}))
        phases = det.get("phases") or phases
    else:
        base = copy.deepcopy(cfg["train"])
    per_model = copy.deepcopy(cfg.get("models", {}).get(cell.model, {}))
    model_phases = per_model.pop("phases", None) or {}
    base = deep_merge(base, per_model)
    base = deep_merge(base, phases.get(phase_of(cell), {}))
    base = deep_merge(base, model_phases.get(phase_of(cell), {}))
    own: dict[str, Any] = {
        "task": cell.task,
        "seed": int(seed),
        "model": {"arch": cell.model},
        "quant": {"method": cell.method, "weights": cell.weights, "activations": cell.activations,
                  "options": _method_options(base, cell)},
        "temperature": {"slope": cell.slope},
    }
    if not get_method(cell.method).phased_training and phase_of(cell) in ("activations", "both"):
        # a method without the paper's phases trains weights and inputs together (its papers):
        # the same epochs and lr schedule as the phased recipe, all of them joint
        epochs = {**base.get("epochs", {})}
        total = sum(int(epochs.get(p, 0)) for p in ("weights", "activations", "joint"))
        own["epochs"] = {"weights": 0, "activations": 0, "joint": total}
    if cell.kind == "fp":
        weights = cfg.get("fp_weights", {}).get(cell.model)
        if weights:
            # imported FP weights: evaluate only
            own["start"] = {"mode": "pretrained", "checkpoint": weights}
            own["epochs"] = {"fp": 0, "weights": 0, "activations": 0, "joint": 0}
        else:
            own["start"] = {"mode": "scratch", "checkpoint": None}
    elif cell.start == "pretrained":
        own["start"] = {"mode": "pretrained", "checkpoint": fp_checkpoint(cfg, cell.model)}
    else:
        own["start"] = {"mode": "scratch", "checkpoint": None}
    merged = deep_merge(base, own)
    return deep_merge(merged, cfg.get("cell_overrides", {}).get(cell.id, {}))


def _method_options(base: dict, cell: Cell) -> dict:
    """The options of the cell's method: a scale's ``quant.<method>`` (each method's own keys,
    taken out of the run config of every cell), under the ones the cell sets itself."""
    quant = base.get("quant") or {}
    per_method = {name: quant.pop(name) for name in available_methods() if name in quant}
    return deep_merge(per_method.get(cell.method) or {}, cell.method_options)


def dump_yaml(data: Any) -> str:
    """Stable YAML text (sorted keys) so an unchanged config renders to identical bytes."""
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)


# trainer keys a cell of experiments.yaml sets itself -> its field there
CELL_KEYS = {"model.arch": "model", "quant.method": "method", "quant.weights": "weights", "quant.activations": "activations",
             "quant.options.init": "init", "quant.options.sharing": "sharing",
             "quant.options.learn_biases": "learn_biases", "quant.options.variant": "variant",
             "temperature.slope": "slope"}


def _trainer_key_source(cfg: dict, cell: Cell, dotted: str) -> str:
    """The pipeline key that set trainer key ``dotted`` of a cell (the last layer holding it)."""
    det = cell.task == "detect"
    phases_key = "detection.phases" if det and cfg.get("detection", {}).get("phases") else "phases"
    model_phases = f"models.{cell.model}.phases.{phase_of(cell)}"
    layers = [f"cell_overrides.{cell.id}", f"cells.{cell.id}", model_phases, f"{phases_key}.{phase_of(cell)}",
              f"models.{cell.model}", "detection.train" if det else "train"]
    for layer in layers:
        if layer == f"cells.{cell.id}":
            if dotted in CELL_KEYS:
                return f"cells.{cell.id}.{CELL_KEYS[dotted]}"
            continue
        key = dotted
        if not layer.startswith("cell_overrides.") and dotted.startswith("quant.options."):
            # a scale writes a method's options as quant.<method>.<key> (_method_options)
            key = f"quant.{cell.method}.{dotted.removeprefix('quant.options.')}"
        node: Any = cfg
        for part in f"{layer}.{key}".split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return f"{layer}.{key}"
    return f"{layers[-1]}.{dotted}"


def check_run_config(cfg: dict, cell: Cell, rc: dict) -> None:
    """Validate a rendered run config with the trainer's own config class, at planning time.

    Raises PipelineConfigError naming the pipeline key that set the bad value.

    Args:
        cfg: the scale config.
        cell: the cell the config belongs to.
        rc: its run config (``run_config``).
    """
    if cell.task == "detect":
        from qbench.detection.config import DetectRunConfig as check
    else:
        from qbench.train.config import Config as check
    try:
        check.from_dict(rc)
    except ValueError as exc:
        # the trainer's errors name their key; anything else is the base config's
        key, msg = ((exc.key or "train"), exc.problem) if isinstance(exc, ConfigError) else ("train", str(exc))
        raise PipelineConfigError(f"config key '{_trainer_key_source(cfg, cell, key)}': {msg} "
                                  f"(run config of cell {cell.id})") from None


def check_config_files(paths) -> None:
    """Read each ``--configfile`` with the project's YAML loader, which refuses a key given
    twice (snakemake's keeps the last one silently) and names file and line.

    Args:
        paths: the config files snakemake was given.
    """
    from qbench.io import FileFormatError, read_yaml

    for path in paths:
        try:
            read_yaml(path, allow_empty=True)
        except FileFormatError as exc:
            raise PipelineConfigError(str(exc)) from None


def pythonpath_prefix(checkout: str) -> str:
    """The shell prefix of every job that puts ``checkout`` first on PYTHONPATH, as a snakemake
    shell template: the path is data (a space, an apostrophe, ``$(...)``, braces), so it is
    shell-quoted and its braces are kept from snakemake's format().

    Args:
        checkout: the directory holding the qbench package.
    """
    quoted = shlex.quote(checkout).replace("{", "{{").replace("}", "}}")
    return f"export PYTHONPATH={quoted}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "


def command_words(text: str, key: str) -> list[str]:
    """A command line from the config as its words, split as a shell splits them; nothing in it
    is expanded or run (each word reaches the shell quoted).

    Args:
        text: the command line.
        key: the config key, for the message.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise PipelineConfigError(f"config key '{key}': cannot be split into words ({exc})") from None
    if not words:
        raise PipelineConfigError(f"config key '{key}': empty command")
    return words


def check_sbatch_extra(extra: str | None) -> None:
    """Refuse `cluster.extra` text that is not a list of plain long sbatch options, or that sets
    an option the executor plugin manages (naming the key that sets it instead).

    Args:
        extra: the value of `cluster.extra`.
    """
    if not extra:
        return
    for word in extra.split():
        m = SBATCH_EXTRA_WORD.fullmatch(word)
        if m is None:
            raise PipelineConfigError(
                f"config key 'cluster.extra': {word!r} is not a long sbatch option "
                "('--name' or '--name=value' of letters, digits and _.,:@/+%=-)")
        name = m.group(1)
        if name in SLURM_MANAGED_OPTIONS:
            instead = SLURM_MANAGED_OPTIONS[name]
            raise PipelineConfigError(
                f"config key 'cluster.extra': --{name} is set by the SLURM executor plugin"
                + (f"; use '{instead}'" if instead else "; leave it to the plugin"))


def validate_semantics(cfg: dict, cells: list[Cell]) -> None:
    """Check what the JSON schema cannot: every rendered run config (by the trainer's own
    rules), the names the scale config uses, and the files it points to.

    Raises PipelineConfigError naming the key.

    Args:
        cfg: the schema-validated scale config.
        cells: the cells this scale runs.
    """
    check_sbatch_extra((cfg.get("cluster") or {}).get("extra"))
    if cfg.get("train_command"):
        command_words(cfg["train_command"], "train_command")
    known_archs = available_models()
    for arch in cfg.get("models", {}):
        if arch not in known_archs:
            raise PipelineConfigError(f"config key 'models.{arch}': unknown model {arch!r}; "
                                      f"known: {', '.join(known_archs)}")
    for arch, over in cfg.get("models", {}).items():
        for ph in (over.get("phases") or {}):
            if ph not in PHASE_KINDS:
                raise PipelineConfigError(f"config key 'models.{arch}.phases.{ph}': unknown phase; "
                                          f"known: {', '.join(PHASE_KINDS)}")
    for arch, path in cfg.get("fp_weights", {}).items():
        if arch not in known_archs:
            raise PipelineConfigError(f"config key 'fp_weights.{arch}': unknown model {arch!r}")
        if not Path(path).is_file():
            raise PipelineConfigError(f"config key 'fp_weights.{arch}': file {path!r} does not exist")
    for key in ("cell_overrides", "cell_seeds"):
        for cid in cfg.get(key) or {}:
            if cid not in load_cells():
                raise PipelineConfigError(f"config key '{key}.{cid}': unknown cell {cid!r}")
    for cid, seeds in (cfg.get("cell_seeds") or {}).items():
        if load_cells()[cid].kind == "fp":  # quantized cells start from the first FP seed
            raise PipelineConfigError(f"config key 'cell_seeds.{cid}': FP cells take fp_seeds")
        if not set(cfg["seeds"]) <= set(seeds):  # pairing on seeds needs the common ones
            raise PipelineConfigError(f"config key 'cell_seeds.{cid}': must include every seed of "
                                      f"'seeds' {cfg['seeds']}, got {seeds}")
    checked: set = set()
    for cell in cells:
        for seed in seeds_of(cfg, cell):
            check_run_config(cfg, cell, run_config(cfg, cell, seed))
        rc = run_config(cfg, cell, seeds_of(cfg, cell)[0])
        task = rc.get("task", "classify")
        data = rc.get("data", {}) or {}
        dataset = data.get("dataset")
        data_key = "detection.train.data" if task == "detect" else "train.data"
        root = data.get("root")
        if root is not None and not Path(root).exists():
            key = _trainer_key_source(cfg, cell, "data.root")
            raise PipelineConfigError(f"config key '{key}': dataset path {root!r} does not exist")
        backbone = (rc.get("detect") or {}).get("backbone_checkpoint")
        if backbone is not None and not Path(backbone).is_file():
            key = _trainer_key_source(cfg, cell, "detect.backbone_checkpoint")
            raise PipelineConfigError(f"config key '{key}': file {backbone!r} does not exist "
                                      "(an ImageNet VGG16 state_dict, torchvision's layout)")
        if dataset == "fashion_mnist" and (dataset, root) not in checked:
            from qbench.data import DatasetError, find_fashion_mnist

            try:
                find_fashion_mnist(root)
            except DatasetError as exc:
                key = _trainer_key_source(cfg, cell, "data.root") if root is not None else f"{data_key}.root"
                raise PipelineConfigError(f"config key '{key}': {exc}") from None
            checked.add((dataset, root))
        if cfg["launcher"] == "torchrun" and cfg["resources"]["train"]["gpu"] < 1:
            raise PipelineConfigError("config key 'resources.train.gpu': torchrun needs at least 1 GPU")


def datasets_of(cfg: dict, cells: list[Cell]) -> dict[str, dict]:
    """Distinct datasets the runs use: ``{name: data section}`` (name = ``<dataset>``, suffixed
    with the image size when several sizes of one dataset occur).

    Args:
        cfg: the scale config.
        cells: the cells this scale runs.
    """
    out: dict[str, dict] = {}
    for cell in cells:
        data = run_config(cfg, cell, seeds_of(cfg, cell)[0])["data"]
        out.setdefault(dataset_key(data), data)
    return out


def dataset_key(data: dict) -> str:
    """File-name key of a data section: dataset, image size and subset sizes.

    Args:
        data: the `data` section of a run config.
    """
    parts = [str(data.get("dataset")), f"{data.get('image_size')}px"]
    if data.get("train_size") is not None:
        parts.append(f"n{data['train_size']}")
    return "_".join(parts)
