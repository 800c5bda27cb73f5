"""The paper's recipe (recipe.yaml) against the resolved run configs of a scale.

``differences(cfg)`` resolves every cell a scale runs (qbench.workflow.plan.run_config) and
compares it with what the paper prescribes for that cell; ``deviations(cfg)`` groups the
differences under the reasons of deviations.yaml. The report, docs/deviations.md and the scale
configs all show this one generated list, so they cannot disagree.

``python -m qbench.paper.recipe [--check] DOCS_DIR`` writes (or checks) docs/deviations.md and
docs/recipes.md from the shipped scale configs.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from qbench.detection.config import DetectRunConfig
from qbench.paper import RegistryError, load_cells, select_cells
from qbench.quant import get_method
from qbench.train.config import Config
from qbench.train.phases import epoch_plan
from qbench.workflow.plan import enabled_cells, merge_scale_file, phase_of, run_config, seeds_of

SITE_FILE = "<site file>"
SCALES = ("smoke", "mini", "gpu", "paper")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "workflows" / "config"


class RecipeError(ValueError):
    """A difference from the paper without a reason, or a malformed recipe/reason file."""


def _read(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


SOURCES = ("paper", "cited", "ours")


@dataclass(frozen=True)
class Provenance:
    """Where one recipe value comes from (recipe.yaml).

    Args:
        task: classify, detect or scale.
        part: the recipe section it belongs to (``common``, ``models.resnet18``, ``fp``,
            ``quant``, ``phases.both``, ...).
        key: dotted run-config key.
        value: the value.
        source: "paper" (the paper gives it), "cited" (the paper defers to a reference) or
            "ours" (the paper is silent).
        detail: paper: the section; cited: the reference and where its value comes from;
            ours: the reason.
        quote: the paper's words (source "paper" only).
    """

    task: str
    part: str
    key: str
    value: Any
    source: str
    detail: str
    quote: str = ""

    def line(self) -> str:
        """One line for docs and the report: ``key = value (part): source ...``."""
        where = f"{self.key} = {_fmt(self.value)} ({self.task if self.task == 'scale' else f'{self.task} {self.part}'})"
        if self.source == "paper":
            return f"{where}: paper, {self.detail}: \"{self.quote}\""
        return f"{where}: {self.source}: {self.detail}"


def _leaf(task: str, part: str, key: str, entry: Any) -> Provenance:
    where = f"recipe.yaml: {task}.{part}.{key}"
    if not isinstance(entry, dict) or "value" not in entry:
        raise RecipeError(f"{where}: needs {{value: ..., paper|cited|ours: ...}}, got {entry!r}")
    given = [s for s in SOURCES if s in entry]
    unknown = set(entry) - {"value", "quote", *SOURCES}
    if len(given) != 1 or unknown:
        raise RecipeError(f"{where}: needs exactly one of {SOURCES} (got {given}), unknown {sorted(unknown)}")
    source = given[0]
    detail = entry[source]
    quote = entry.get("quote", "")
    if not isinstance(detail, str) or not detail.strip():
        raise RecipeError(f"{where}: {source} must say where the value comes from, got {detail!r}")
    if (source == "paper") != bool(isinstance(quote, str) and quote.strip()):
        raise RecipeError(f"{where}: a 'paper' value needs the paper's words (quote); only it has one")
    return Provenance(task, part, key, entry["value"], source, detail.strip(), quote.strip() if quote else "")


@lru_cache(maxsize=None)
def provenance() -> tuple[Provenance, ...]:
    """Every value of recipe.yaml with its source, in file order (validated)."""
    out = []
    for task, sections in _read("recipe.yaml").items():
        if task == "scale":
            out += [_leaf(task, "scale", k, v) for k, v in sections.items()]
            continue
        for part, tree in sections.items():
            groups = tree.items() if part in ("models", "phases") else [(None, tree)]
            for sub, leaves in groups:
                name = part if sub is None else f"{part}.{sub}"
                out += [_leaf(task, name, k, v) for k, v in leaves.items()]
    return tuple(out)


@lru_cache(maxsize=None)
def _recipe() -> dict:
    """recipe.yaml with every value unwrapped from its provenance."""
    tree: dict = {}
    for p in provenance():
        if p.task == "scale":
            tree.setdefault("scale", {})[p.key] = p.value
            continue
        node = tree.setdefault(p.task, {})
        for name in p.part.split("."):
            node = node.setdefault(name, {})
        node[p.key] = p.value
    return tree


@lru_cache(maxsize=None)
def _reasons() -> dict:
    data = _read("deviations.yaml")
    for rid, entry in data.items():
        unknown = set(entry) - {"keys", "scales", "task", "cells", "text", "always"}
        if unknown or "text" not in entry:
            raise RecipeError(f"deviations.yaml: entry {rid!r}: needs 'text', unknown {sorted(unknown)}")
        _entry_cells(rid)
    return data


@lru_cache(maxsize=None)
def _entry_cells(rid: str) -> frozenset[str] | None:
    """The ids of the cells a deviation applies to: its ``cells`` rule (``{key: value}`` over
    ``qbench.paper.CELL_RULE_KEYS``) or list of ids; None when it names no cells."""
    cells = _read("deviations.yaml")[rid].get("cells")
    where = f"deviations.yaml: entry {rid!r}: cells"
    if cells is None:
        return None
    if isinstance(cells, list):
        unknown = [c for c in cells if c not in load_cells()]
        if unknown:
            raise RecipeError(f"{where}: {unknown[0]!r} is no cell of experiments.yaml")
        return frozenset(cells)
    try:
        return frozenset(c.id for c in select_cells(cells, where))
    except RegistryError as e:
        raise RecipeError(str(e)) from None


def expected(cell) -> dict[str, Any]:
    """The paper's values for one cell, as ``{dotted key: value}`` of its run config.

    Args:
        cell: a qbench.paper.Cell.
    """
    r = _recipe()[cell.task]
    out = dict(r["common"])
    out.update(r.get("models", {}).get(cell.model, {}))
    phase = phase_of(cell)
    if phase == "fp":
        out.update(r["fp"])
        # the paper gives no FP schedule for classification (its FP models are given) and FP
        # runs have no temperature
        skip = ("temperature.",) + (("optim.",) if cell.task == "classify" else ())
        return {k: v for k, v in out.items() if not k.startswith(skip)}
    out.update(r["quant"])
    out.update(r["phases"][phase])
    out["start.mode"] = cell.start
    out["temperature.slope"] = cell.slope
    out["quant.options.learn_biases"] = cell.learn_biases  # the Sec. 4.3 ablation cell learns them
    # the init of a kind of quantizer the cell does not have is no part of its recipe
    skip = (() if cell.weights else ("quant.options.weight_alpha_init",)) + \
        (() if cell.activations else ("quant.options.act_alpha_init", "quant.options.act_init"))
    if cell.is_baseline:
        # another method's cell: the paper's method's options are no recipe of it
        skip += tuple(k for k in out if k.startswith("quant.options."))
    if not get_method(cell.method).phased_training and cell.activations:
        # it trains jointly for the phases' epochs (deviations.yaml: baselines_joint)
        total = sum(int(out.get(f"epochs.{p}", 0)) for p in ("weights", "activations", "joint"))
        out.update({"epochs.weights": 0, "epochs.activations": 0, "epochs.joint": total})
    return {k: v for k, v in out.items() if k not in skip}


def source_of(cell, key: str) -> str:
    """Where the recipe value of ``key`` for ``cell`` comes from: paper, cited or ours.

    The section that sets it last in ``expected`` decides; keys set from the cell itself (its
    start, slope, bias learning: the paper's tables and Sec. 4.1-4.3) are the paper's.

    Args:
        cell: a qbench.paper.Cell.
        key: a dotted run-config key of ``expected(cell)``.
    """
    phase = phase_of(cell)
    parts = ["common", f"models.{cell.model}"] + (["fp"] if phase == "fp" else ["quant", f"phases.{phase}"])
    found = {p.part: p.source for p in provenance() if p.task == cell.task and p.key == key}
    for part in reversed(parts):
        if part in found:
            return found[part]
    return "paper"


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _same(paper: Any, here: Any) -> bool:
    if paper == SITE_FILE:
        return here is not None
    if isinstance(paper, (int, float)) and isinstance(here, (int, float)) and not isinstance(here, bool):
        return abs(float(paper) - float(here)) <= 1e-12 * max(1.0, abs(float(paper)))
    return paper == here


@dataclass(frozen=True)
class Difference:
    """One key of one cell (or of the scale) that differs from the paper.

    Args:
        key: dotted run-config key (``seeds``/``cells`` for scale-level differences).
        paper: the recipe's value (recipe.yaml).
        here: the scale's value.
        task: classify, detect or ``scale``.
        cell: the cell id ('' for scale-level differences).
        source: where the recipe's value comes from (paper, cited, ours; recipe.yaml).
    """

    key: str
    paper: Any
    here: Any
    task: str
    cell: str = ""
    source: str = "paper"


def resolved_run_config(cfg: dict, cell) -> dict:
    """The run config a cell's first seed gets, with defaults filled in (what the trainer uses).

    Args:
        cfg: a merged scale config.
        cell: the cell.
    """
    raw = run_config(cfg, cell, seeds_of(cfg, cell)[0])
    if cell.task == "detect":
        return DetectRunConfig.from_dict(copy.deepcopy(raw)).to_dict()
    return Config.from_dict(copy.deepcopy(raw)).to_dict()


def differences(cfg: dict) -> list[Difference]:
    """Every difference between a scale's resolved cells and the paper's recipe.

    Args:
        cfg: a merged scale config (qbench.workflow.plan.merge_scale_file).
    """
    scale = _recipe()["scale"]
    scale_source = {p.key: p.source for p in provenance() if p.task == "scale"}
    out = [Difference(k, scale[k], len(cfg[k]), "scale", source=scale_source[k]) for k in ("seeds", "fp_seeds")
           if len(cfg[k]) != scale[k]]
    cells = enabled_cells(cfg)
    everything = load_cells()
    missing = [c for c in everything if c not in {x.id for x in cells}]
    if missing:
        here = f"{len(cells)} of {len(everything)} cells" + (
            f" (without {', '.join(missing)})" if len(missing) <= 8 else "")
        out.append(Difference("cells", f"all {len(everything)}", here, "scale"))
    for cell in cells:
        flat = flatten(resolved_run_config(cfg, cell))
        for key, paper in expected(cell).items():
            if key not in flat:
                raise RecipeError(f"recipe.yaml: {key!r} is not a key of a {cell.task} run config")
            if not _same(paper, flat[key]):
                out.append(Difference(key, paper, flat[key], cell.task, cell.id, source_of(cell, key)))
    return out


@dataclass
class Deviation:
    """A reason of deviations.yaml with the differences it explains at one scale.

    Args:
        id: key in deviations.yaml.
        text: the reason.
        differences: what differs (empty for notes that are not a config value).
    """

    id: str
    text: str
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """One line per (key, paper value, value here), naming the cells it applies to; then
        the notes (``key = value (where): source ...`` of the recipe's provenance)."""
        groups: dict[tuple, list[str]] = defaultdict(list)
        for d in self.differences:
            groups[(d.key, d.source, _fmt(d.paper), _fmt(d.here), d.task)].append(d.cell)
        lines = []
        for (key, source, paper, here, task), cells in groups.items():
            where = "" if task == "scale" else f" ({_cells_text(task, cells)})"
            lines.append(f"{key}: {source} {paper}, here {here}{where}")
        return lines + list(self.notes)

    def as_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "differences": self.summary()}


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _cells_text(task: str, cells: list[str]) -> str:
    n_task = sum(1 for c in load_cells().values() if c.task == task)
    if len(cells) >= n_task:
        return f"all {task} cells"
    if len(cells) > 8:
        return f"{len(cells)} {task} cells: " + ", ".join(cells[:6]) + ", ..."
    return ", ".join(cells)


def _matches(rid: str, entry: dict, scale: str, d: Difference) -> bool:
    if entry.get("always") or d.key not in entry.get("keys", []):
        return False
    if "scales" in entry and scale not in entry["scales"]:
        return False
    if "task" in entry and entry["task"] != d.task:
        return False
    cells = _entry_cells(rid)
    return cells is None or d.cell in cells


UNEXPLAINED = "unexplained"


def deviations(cfg: dict, strict: bool = True) -> list[Deviation]:
    """The deviations of a scale: each reason of deviations.yaml that explains at least one
    difference (or is an always-on note of this scale), in file order.

    Args:
        cfg: a merged scale config.
        strict: raise RecipeError when a difference has no reason, or more than one (the shipped
            scales); otherwise such differences (a site's own settings) are listed last under
            ``unexplained``.
    """
    scale = cfg["scale"]
    reasons = _reasons()
    found: dict[str, Deviation] = {}
    for d in differences(cfg):
        hits = [rid for rid, entry in reasons.items() if _matches(rid, entry, scale, d)]
        if len(hits) != 1 and not strict:
            found.setdefault(UNEXPLAINED, Deviation(
                UNEXPLAINED, "Set by this run's configuration; no reason is recorded in "
                "qbench/paper/deviations.yaml.")).differences.append(d)
            continue
        if len(hits) != 1:
            what = "no reason" if not hits else f"several reasons {hits}"
            raise RecipeError(f"scale {scale}: {d.key} of {d.cell or 'the scale'} is "
                              f"{_fmt(d.here)}, " + (f"the paper's is {_fmt(d.paper)}" if d.source == "paper" else
                                                      f"the recipe's ({d.source}) is {_fmt(d.paper)}") + f": {what} in "
                              "qbench/paper/deviations.yaml")
        found.setdefault(hits[0], Deviation(hits[0], reasons[hits[0]]["text"].strip())).differences.append(d)
    for rid, entry in reasons.items():
        if entry.get("always") and scale in entry.get("scales", SCALES) and _note_applies(rid, entry, cfg):
            found[rid] = Deviation(rid, entry["text"].strip())
    found.update(provenance_notes(cfg))
    return [found[rid] for rid in [*reasons, *PROVENANCE_NOTES, UNEXPLAINED] if rid in found]


# the recipe values the paper does not give itself, printed with the deviations of every scale
PROVENANCE_NOTES = {
    "recipe_cited": ("cited", "Values the paper takes from a reference (Sec. 4.2: \"We follow the same "
                     "settings in [24]\"): the reference, and where its released config gives the value "
                     "(qbench/paper/recipe.yaml)."),
    "recipe_ours": ("ours", "Values the paper does not give: our choice and why (qbench/paper/recipe.yaml). "
                    "The paper's own values, each with its quote, are listed in docs/recipes.md."),
}


def provenance_notes(cfg: dict) -> dict[str, Deviation]:
    """The cited and our own recipe values of the tasks a scale runs, as two notes.

    Args:
        cfg: a merged scale config.
    """
    tasks = {c.task for c in enabled_cells(cfg)} | {"scale"}
    out = {}
    for rid, (source, text) in PROVENANCE_NOTES.items():
        lines = [p.line() for p in provenance() if p.source == source and p.task in tasks]
        if lines:
            out[rid] = Deviation(rid, text, notes=lines)
    return out


def _note_applies(rid: str, entry: dict, cfg: dict) -> bool:
    # a note tied to cells applies when the scale runs one of them
    cells = _entry_cells(rid)
    if cells is None:
        return True
    return any(c.id in cells for c in enabled_cells(cfg))


def load_scale(scale: str, config_dir: Path = CONFIG_DIR) -> dict:
    """A shipped scale config, merged as the Snakefile merges it (without site files).

    Args:
        scale: smoke, mini or paper.
        config_dir: directory of the scale files.
    """
    return merge_scale_file({"scale": scale}, config_dir)


def deviations_markdown(configs: dict[str, dict]) -> str:
    """docs/deviations.md: the generated deviations of every scale.

    Args:
        configs: ``{scale: merged config}``.
    """
    lines = ["# Deviations from the paper, per scale", "",
             "Generated by `python -m qbench.paper.recipe docs` from the scale configs",
             "(`workflows/config/<scale>.yaml`) compared with the paper's recipe",
             "(`qbench/paper/recipe.yaml`); the reasons are `qbench/paper/deviations.yaml`. The",
             "report prints the same list. Do not edit by hand.", "",
             "Each changed value names where the recipe's value comes from: `paper` (the paper",
             "gives it), `cited` (a reference the paper defers to) or `ours` (the paper is silent);",
             "`recipe_cited` and `recipe_ours` list those values with their sources, and",
             "docs/recipes.md lists every value with its quote or reason.", ""]
    for scale, cfg in configs.items():
        lines += [f"## {scale}", ""]
        devs = deviations(cfg)
        if not devs:
            lines += ["None.", ""]
        for dev in devs:
            lines.append(f"- **{dev.id}**: {dev.text}")
            lines += [f"  - `{s.split(':', 1)[0]}`:{s.split(':', 1)[1]}" for s in dev.summary()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def recipes_markdown(cfg: dict) -> str:
    """docs/recipes.md: per paper-scale cell and epoch range, the phase, the trained parameter
    groups, lr, T and the data pipeline, computed by qbench.train.phases from the resolved
    run configs.

    Args:
        cfg: the merged paper scale config.
    """
    lines = ["# Training recipes of the paper scale", "",
             "Generated by `python -m qbench.paper.recipe docs` from `workflows/config/paper.yaml`",
             "and `qbench/train/phases.py` (the schedule the trainers run). Do not edit by hand.", "",
             "Per-phase schedules (the paper is silent; our reading, qbench/train/phases.py):",
             "the lr schedule restarts in each phase, compressed to the phase's length (a phase of",
             "L of the run's E epochs decays after round(m L / E) epochs for each milestone m).",
             "The paper gives one lr schedule per run and says only of phase 3 that it trains",
             "\"until the model converges\"; restarting gives every phase the paper's schedule",
             "from its initial lr, and is our choice. T counts the epochs each quantizer has",
             "trained, so activation quantizers start at T = k in phase 2 and weight quantizers",
             "keep their phase-1 T while fixed. One split for every cell, also ours (the paper",
             "gives three phases and \"at most 55 epochs in total\"): 55 epochs of weights",
             "(W only), 15 activations + 40 joint (A only), 20 + 15 + 20 (W and A).", ""]
    lines += provenance_markdown() + [""]
    for cell in enabled_cells(cfg):
        rc = resolved_run_config(cfg, cell)
        lines += [f"## {cell.id}", "", _pipeline_text(cell, rc), ""]
        if cell.kind == "fp" and rc["epochs"]["fp"] == 0:
            lines += ["Evaluated, not trained: " + str(rc["start"]["checkpoint"]) + ".", ""]
            continue
        lines += ["| epochs | phase | trained | lr | T weights | T activations |",
                  "|---|---|---|---|---|---|"]
        conf = _typed(cell, rc)
        for first, last, step in _ranges(epoch_plan(conf)):
            lines.append(f"| {first}-{last} | {step.phase} | {', '.join(step.trained)} | "
                         f"{step.lr:g} | {_t_range(first, last, step, 't_weights', conf)} | "
                         f"{_t_range(first, last, step, 't_activations', conf)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def provenance_markdown() -> list[str]:
    """The recipe's values with their source, as a markdown section of docs/recipes.md."""
    lines = ["## Where each value comes from", "",
             "From `qbench/paper/recipe.yaml`. **paper**: the paper gives the value (its words are",
             "quoted; tests/paper/test_recipe.py finds each quote in the paper's text). **cited**: the",
             "paper defers to a reference; the reference and where its released config gives the",
             "value. **ours**: the paper is silent; our choice and why. What a scale changes is in",
             "docs/deviations.md.", "",
             "| task | part | key | value | source | from |", "|---|---|---|---|---|---|"]
    for p in provenance():
        origin = f"{p.detail}: \"{p.quote}\"" if p.source == "paper" else p.detail
        lines.append(f"| {p.task} | {p.part} | `{p.key}` | {_fmt(p.value)} | {p.source} | "
                     f"{origin.replace('|', '/')} |")
    return lines


def _typed(cell, rc: dict):
    if cell.task == "detect":
        return DetectRunConfig.from_dict(copy.deepcopy(rc))
    return Config.from_dict(copy.deepcopy(rc))


def _pipeline_text(cell, rc: dict) -> str:
    d, o = rc["data"], rc["optim"]
    start = rc["start"]["mode"] + (f" from {rc['start']['checkpoint']}" if rc["start"]["checkpoint"] else "")
    if cell.task == "detect":
        det = rc["detect"]
        aug = "SSD augmentation (expand, min-IoU crop, photometric, flip)" if det["augment"] == "ssd" \
            else "resize + flip"
        backbone = det.get("backbone_checkpoint")
        norm = "[0, 1] pixels normalised by ImageNet's mean/std (torchvision's)" \
            if det["pixel_norm"] == "torchvision" else "0-255 pixels minus the mean (Caffe's)"
        extra = f", inputs {norm}" + (f", VGG16 backbone from {backbone}" if backbone else "") + \
            (f", {det['warmup_iters']}-iteration linear warm-up" if det["warmup_iters"] else "")
        return (f"{d['dataset']} {d['image_size']}x{d['image_size']}, {aug}, batch {d['batch_size']}; "
                f"SGD momentum {o['momentum']}, weight decay {o['weight_decay']}, clip {o['grad_clip']}, "
                f"lr of unquantized parameters x{det['lr_other'] / o['lr']:g} in quantized runs; "
                f"start: {start}{extra}.")
    resize = round(d["image_size"] * 256 / 224)
    return (f"{d['dataset']}: train resize {resize} (shorter side), random {d['image_size']} crop, "
            f"horizontal flip, mean/std normalisation; test resize {resize}, centre crop; batch "
            f"{d['batch_size']}; SGD momentum {o['momentum']}, weight decay {o['weight_decay']}, "
            f"clip {o['grad_clip']}; start: {start}.")


def _ranges(plan):
    """Consecutive epochs with the same phase, lr and T slope, as (first, last, first step)."""
    out = []
    for step in plan:
        if out and out[-1][2].phase == step.phase and out[-1][2].lr == step.lr:
            out[-1][1] = step.epoch
        else:
            out.append([step.epoch, step.epoch, step])
    return [tuple(r) for r in out]


def _t_range(first: int, last: int, step, attr: str, conf) -> str:
    plan = epoch_plan(conf)
    a, b = getattr(plan[first - 1], attr), getattr(plan[last - 1], attr)
    quantized = conf.quant.weights if attr == "t_weights" else conf.quant.activations
    if a is None:
        return "off" if quantized is not None else "-"
    return f"{a:g}" if a == b else f"{a:g} to {b:g}"


def main(argv: list[str] | None = None) -> int:
    """Write docs/deviations.md and docs/recipes.md (``--check``: exit 1 if they are stale)."""
    parser = argparse.ArgumentParser(prog="python -m qbench.paper.recipe", description=__doc__)
    parser.add_argument("docs", type=Path, help="the docs directory")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    configs = {s: load_scale(s) for s in SCALES}
    texts = {"deviations.md": deviations_markdown(configs), "recipes.md": recipes_markdown(configs["paper"])}
    stale = []
    for name, text in texts.items():
        path = args.docs / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)} (run python -m qbench.paper.recipe docs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
