"""The paper recipe against every scale, the generated docs, and the per-phase schedules."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from qbench.paper import load_cells
from qbench.paper import recipe as R
from qbench.workflow import plan
from qbench.train.config import Config
from qbench.train.phases import epoch_plan, phase_milestones

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scales():
    return {s: R.load_scale(s) for s in R.SCALES}


# Run-config keys that are no part of any recipe: where a scale's run differs from the paper
# scale's run of the same cell only in these, nothing needs explaining.
OPERATIONAL = {"data.workers", "data.root", "device", "start.checkpoint", "checkpoint_every_s",
               "data.epoch_test_stride", "detect.log_interval", "detect.eval_interval"}
# the schedule of a classification FP run is the scale's own (the paper gives FP models); the
# deviation that says so must be listed at that scale
FP_SCHEDULE_REASON = {"mini": "mini_fp_from_scratch", "smoke": "smoke_schedule"}


def test_every_difference_of_every_scale_has_exactly_one_reason(scales):
    for scale, cfg in scales.items():
        devs = R.deviations(cfg)  # strict: raises on a difference without (or with two) reasons
        explained = [d for dev in devs for d in dev.differences]
        assert sorted(map(repr, explained)) == sorted(map(repr, R.differences(cfg))), scale
        assert R.UNEXPLAINED not in {d.id for d in devs}


@pytest.mark.parametrize("scale", ["mini", "smoke"])
def test_every_resolved_config_of_a_scale_differs_from_the_paper_scale_only_where_explained(scales, scale):
    """Render every resolved config of the scale and the paper scale's config of the same cell:
    a key that differs must be a recipe key (then a deviation explains it, test above) or an
    operational one; anything else is a difference no deviation could ever list."""
    cfg, paper = scales[scale], scales["paper"]
    ids = {d.id for d in R.deviations(cfg)}
    unexplained = {}
    for cell in plan.enabled_cells(cfg):
        here = R.flatten(R.resolved_run_config(cfg, cell))
        there = R.flatten(R.resolved_run_config(paper, cell))
        recipe_keys = set(R.expected(cell))
        for key in sorted(set(here) | set(there)):
            if here.get(key) == there.get(key) or key in recipe_keys or key in OPERATIONAL:
                continue
            if cell.kind == "fp" and key.startswith(("quant.", "temperature.")):
                continue  # an FP run has no quantizers
            if cell.kind == "fp" and cell.task == "classify" and key.startswith("optim.") \
                    and FP_SCHEDULE_REASON[scale] in ids:
                continue
            unexplained.setdefault(key, []).append(f"{cell.id}: {here.get(key)!r} vs paper {there.get(key)!r}")
    assert not unexplained, f"{scale}: differences no deviation explains: {unexplained}"


def _normalise(text: str) -> str:
    """Whitespace collapsed, words broken at line ends joined, the minus sign as '-'."""
    text = text.replace("\u2212", "-")
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", text).strip()


def test_every_paper_value_is_quoted_from_the_paper(paper_text):
    text = _normalise(paper_text)
    prov = R.provenance()
    assert {p.source for p in prov} == set(R.SOURCES)
    for p in prov:
        if p.source == "paper":
            assert p.quote and _normalise(p.quote) in text, f"{p.task}.{p.part}.{p.key}: quote not in the paper: {p.quote!r}"
        else:
            assert not p.quote and len(p.detail) > 20, f"{p.task}.{p.part}.{p.key}"
    # the values the paper does not give are never called "paper" (issue: invented precision)
    src = {(p.task, p.part, p.key): p.source for p in prov}
    assert src[("classify", "phases.both", "epochs.weights")] == "ours"
    assert src[("classify", "phases.activations", "epochs.joint")] == "ours"
    assert src[("detect", "phases.both", "epochs.joint")] == "ours"
    assert src[("detect", "quant", "quant.calib_samples")] == "ours"
    assert all(src[("detect", "fp", k)] == "cited" for k in ("optim.lr", "optim.milestones", "epochs.fp",
                                                             "detect.warmup_iters", "data.batch_size"))


def test_a_recipe_value_without_its_source_is_refused(paper_text):
    with pytest.raises(R.RecipeError, match="needs the paper's words"):
        R._leaf("classify", "common", "optim.momentum", {"value": 0.9, "paper": "Sec. 4.1"})
    with pytest.raises(R.RecipeError, match="exactly one of"):
        R._leaf("classify", "common", "optim.momentum", {"value": 0.9, "paper": "Sec. 4.1", "ours": "x", "quote": "q"})
    with pytest.raises(R.RecipeError, match="needs the paper's words"):
        R._leaf("classify", "common", "optim.momentum", {"value": 0.9, "ours": "why", "quote": "q"})
    with pytest.raises(R.RecipeError, match=r"needs \{value"):
        R._leaf("classify", "common", "optim.momentum", 0.9)
    # a quote that is not the paper's fails the test above
    assert _normalise("Gradients are clipped with a maximum L2 norm of 50.") not in \
        _normalise(paper_text)


def test_docs_and_report_print_the_provenance(scales):
    recipes = (ROOT / "docs" / "recipes.md").read_text()
    for p in R.provenance():
        assert f"| {p.task} | {p.part} | `{p.key}` | " in recipes and f" | {p.source} | " in recipes
    for scale in ("mini", "paper"):
        devs = {d.id: d for d in R.deviations(scales[scale])}
        for rid, (source, _) in R.PROVENANCE_NOTES.items():
            lines = devs[rid].summary()
            assert lines and all(f": {source}: " in line for line in lines)
    lines = devs["recipe_cited"].summary()
    assert any(line.startswith("optim.lr = 0.001 (detect fp): cited: mmdet 3.3.0") for line in lines)


def test_paper_scale_differs_only_where_a_reason_says_why(scales):
    ids = {d.id for d in R.deviations(scales["paper"])}
    assert ids == {"bn_hard_stats", "t_per_quantizer_kind", "ssd_a8_linear", "table8_fpga", "alexnet_fp_trained",
                   "resnet_fp_torchvision", "baselines_joint", "baselines_bits", "ttq_sgd", "inq_first_last",
                   "hwgq_input_norm", "abcnet_input_norm", "baselines_own_groups", "dorefa_sgd",
                   "bwn_released_gradient",
                   "table7_scratch_recipe", "fig5_w2a32", "bn_phase2", "quantizer_no_weight_decay",
                   "recipe_cited", "recipe_ours"}
    keys = {(d.cell, d.key) for d in R.differences(scales["paper"])}
    # every quantized classification and detection cell runs the paper's optimiser, data and T
    assert not {k for k in keys if k[1].startswith(("optim.", "data.", "temperature.", "epochs."))
                and k[0] != "alexnet_fp"}


def test_an_unexplained_site_setting_fails_strict_and_is_listed_otherwise(scales):
    cfg = copy.deepcopy(scales["paper"])
    cfg["train"]["data"]["batch_size"] = 128
    with pytest.raises(R.RecipeError, match="data.batch_size of alexnet_fp is 128, the paper's is 256"):
        R.deviations(cfg)
    last = R.deviations(cfg, strict=False)[-1]
    assert last.id == R.UNEXPLAINED
    assert any("data.batch_size: paper 256, here 128" in line for line in last.summary())


def test_activation_only_cells_train_the_network_in_the_joint_phase(scales):
    cells = [c for c in load_cells().values() if c.activations and not c.weights]
    assert cells
    for scale, cfg in scales.items():
        for cell in cells:
            steps = epoch_plan(Config.from_dict(plan.run_config(cfg, cell, 0)))
            assert "network" in steps[-1].trained, (scale, cell.id)
            first = "joint" if cell.is_baseline else "activations"
            assert steps[0].phase == first and steps[-1].phase == "joint", (scale, cell.id)


def test_baselines_with_activations_train_jointly_for_the_epochs_of_the_phased_recipe(scales):
    """Same epochs and lr schedule as the paper's cell of that setting, all joint."""
    cells = load_cells()
    for scale, cfg in scales.items():
        for cell in cells.values():
            if not (cell.is_baseline and cell.activations):
                continue
            ours = next(c for c in cells.values() if not c.is_baseline and c.kind == "quant"
                        and plan.phase_of(c) == plan.phase_of(cell) and c.model == cell.model)
            mine, theirs = (plan.run_config(cfg, c, 0) for c in (cell, ours))
            total = sum(theirs["epochs"].get(p, 0) for p in ("weights", "activations", "joint"))
            assert mine["epochs"] == {"weights": 0, "activations": 0, "joint": total}, (scale, cell.id)
            assert mine["optim"] == theirs["optim"] and mine["start"] == theirs["start"], (scale, cell.id)


def test_one_phase_split_at_paper_scale(scales):
    cfg = scales["paper"]
    splits = {}
    for cell in plan.enabled_cells(cfg):
        if cell.kind == "quant" and cell.task == "classify" and not cell.is_baseline:
            e = plan.run_config(cfg, cell, 0)["epochs"]
            splits.setdefault(plan.phase_of(cell), set()).add(
                (e.get("weights", 0), e.get("activations", 0), e.get("joint", 0)))
    assert splits == {"weights": {(55, 0, 0)}, "activations": {(0, 15, 40)}, "both": {(20, 15, 20)}}


def test_generated_docs_are_current():
    assert R.main([str(ROOT / "docs"), "--check"]) == 0, "run: python -m qbench.paper.recipe docs"


def test_report_plan_lists_the_generated_deviations(scales):
    plan_devs = [d.as_dict() for d in R.deviations(scales["mini"], strict=False)]
    text = (ROOT / "docs" / "deviations.md").read_text()
    for d in plan_devs:
        assert f"**{d['id']}**: {d['text']}" in text
        for line in d["differences"]:
            key, rest = line.split(":", 1)
            assert f"`{key}`:{rest}" in text


def _example_configs():
    return sorted((ROOT / "qbench" / "train" / "configs").glob("paper_*.yaml")) + \
        sorted((ROOT / "qbench" / "detection" / "configs").glob("paper_*.yaml"))


@pytest.mark.parametrize("path", _example_configs(), ids=lambda p: p.name)
def test_paper_example_configs_match_the_pipeline(path, scales):
    """The stand-alone example configs are the pipeline's runs (apart from paths)."""
    raw = yaml.safe_load(path.read_text())
    task = raw.get("task", "classify")
    q = raw.get("quant", {}) or {}
    matches = [c for c in plan.enabled_cells(scales["paper"])
               if c.task == task and c.method == q.get("method", "qn") and c.model == raw["model"]["arch"] and c.weights == q.get("weights")
               and c.activations == q.get("activations") and c.init == q.get("init", "kmeans")
               and c.learn_biases == q.get("learn_biases", False)
               and c.start == (raw["start"]["mode"] if c.kind == "quant" else c.start)
               and (c.kind == "fp") == (not q.get("weights") and not q.get("activations"))]
    assert len(matches) == 1, path.name
    cell = matches[0]
    pipeline = R.flatten(R.resolved_run_config(scales["paper"], cell))
    if task == "detect":
        from qbench.detection.config import DetectRunConfig
        example = R.flatten(DetectRunConfig.from_dict(raw).to_dict())
    else:
        example = R.flatten(Config.from_dict(raw).to_dict())
    site = ("start.checkpoint", "data.root", "detect.backbone_checkpoint", "device", "data.workers")
    # FP runs have no quantizers: of their quant section only the absence of levels counts
    unused = ("temperature.", "quant.") if cell.kind == "fp" else ()
    kept = ("quant.weights", "quant.activations")
    differ = {k: (example[k], pipeline.get(k)) for k in example
              if k not in site and (k in kept or not k.startswith(unused or ("-",)))
              and example[k] != pipeline.get(k)}
    assert not differ, f"{path.name} vs cell {cell.id}: {differ}"


def test_phase_milestones_compress_the_run_schedule():
    assert phase_milestones([25, 40], 55, 55) == [25, 40]
    assert phase_milestones([25, 40], 20, 55) == [9, 15]
    assert phase_milestones([25, 40], 15, 55) == [7, 11]
    assert phase_milestones([100], 1, 3) == []


def test_epoch_plan_restarts_lr_per_phase_and_counts_t_per_quantizer():
    cfg = Config.from_dict({
        "quant": {"weights": "binary", "activations": "act_2bit"},
        "start": {"mode": "pretrained", "checkpoint": "x.pt"},
        "temperature": {"slope": 10},
        "optim": {"lr": 1e-3, "milestones": [25, 40]},
        "epochs": {"weights": 20, "activations": 15, "joint": 20}})
    steps = epoch_plan(cfg)
    assert [s.phase for s in steps] == ["weights"] * 20 + ["activations"] * 15 + ["joint"] * 20
    # lr: 1e-3 at the start of every phase, decayed inside it
    for first in (0, 20, 35):
        assert steps[first].lr == pytest.approx(1e-3)
    assert steps[9].lr == pytest.approx(1e-4) and steps[15].lr == pytest.approx(1e-5)
    # T: weights 10..200 in phase 1, held at 200 while fixed, then 210..400; activations 10..150,
    # then 160..350
    assert [steps[i].t_weights for i in (0, 19, 20, 34, 35, 54)] == [10, 200, 200, 200, 210, 400]
    assert [steps[i].t_activations for i in (19, 20, 34, 35, 54)] == [None, 10, 150, 160, 350]
    assert steps[25].trained == ("activation quantizers",)
    assert steps[40].trained == ("network", "weight quantizers", "activation quantizers")


@pytest.mark.parametrize("scale", ["mini", "paper"])
def test_report_deviation_section_is_the_generated_list(scales, scale):
    from qbench.report.latex import _deviation_items
    from qbench.report.tables import latex_escape

    devs = [d.as_dict() for d in R.deviations(scales[scale], strict=False)]
    tex = "\n".join(_deviation_items(devs))
    items = [line for line in tex.splitlines() if line.startswith(r"\item")]
    assert len(items) == len(devs) + sum(len(d["differences"]) for d in devs)
    for d in devs:
        assert latex_escape(d["text"]) in tex
        assert all(latex_escape(x) in tex for x in d["differences"])


def test_a_changed_value_is_labelled_with_its_source_not_called_paper(scales):
    lines = [line for d in R.deviations(scales["mini"]) for line in d.summary()]
    assert any(line.startswith("epochs.joint: ours 40, here ") for line in lines)  # the phase split
    assert any(line.startswith("optim.lr: cited 0.001, here 0.004 (ssd_fp)") for line in lines)
    assert any(line.startswith("optim.lr: paper 0.001, here 0.01") for line in lines)
    assert not any(line.startswith("epochs.joint: paper 40") for line in lines)
