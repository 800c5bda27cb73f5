"""The scale config model (qbench.workflow.scale_config): the committed JSON schema is the one it
generates, every shipped scale passes both with the defaults the hand-written schema used to fill
in, and a bad value is one line naming the key and the file."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml

from conftest import ROOT, snakemake, write_yaml
from qbench.workflow import plan, scale_config

CONFIG_DIR = ROOT / "workflows" / "config"
SCALES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))

# what the hand-written schema (before the model) filled into {scale, train}: the defaults the
# rules have always read
OLD_DEFAULTS = {
    "scale": "x", "train": {}, "description": "", "seeds": [0, 1], "fp_seeds": [0], "launcher": "python",
    "fp_cache": None, "train_command": None,
    "cells": {"only": None, "skip": []},
    "baselines": {"enabled": True, "models": None, "settings": None},
    "detection": {"enabled": False, "train": {}, "phases": {}},
    "fp_weights": {}, "models": {},
    "phases": {"fp": {}, "weights": {}, "activations": {}, "both": {}},
    "cell_seeds": {}, "cell_overrides": {},
    "resources": {"train": {"threads": 1, "mem_mb": 4000, "runtime": 120, "gpu": 0},
                  "light": {"threads": 1, "mem_mb": 2000, "runtime": 20}},
    "cluster": {"account": None, "partition": None, "gpu_partition": None, "qos": None, "gpu_request": "gpus",
                "gpu_model": None, "constraint": None, "extra": None},
}


def _schema() -> dict:
    return yaml.safe_load(scale_config.SCHEMA_PATH.read_text(encoding="utf-8"))


def fill_defaults(schema: dict, instance: dict) -> dict:
    """Validate ``instance`` with jsonschema, filling in every missing property's default (as
    snakemake's ``validate`` does)."""
    base = jsonschema.validators.validator_for(schema)

    def properties(validator, props, inst, sch):
        if validator.is_type(inst, "object"):
            for name, sub in props.items():
                if "default" in sub:
                    inst.setdefault(name, copy.deepcopy(sub["default"]))
        yield from base.VALIDATORS["properties"](validator, props, inst, sch)

    out = copy.deepcopy(instance)
    jsonschema.validators.extend(base, {"properties": properties})(schema).validate(out)
    return out


def test_committed_schema_is_the_generated_one():
    assert scale_config.main(["schema", "--check"]) == 0, "run: python -m qbench.workflow.scale_config schema"


def test_schema_check_finds_a_stale_file(tmp_path, capsys):
    out = tmp_path / "config.schema.yaml"
    assert scale_config.main(["schema", "--out", str(out)]) == 0
    assert scale_config.main(["schema", "--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("minimum: 100", "minimum: 1"))
    assert scale_config.main(["schema", "--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_defaults_are_the_old_schemas():
    minimal = {"scale": "x", "train": {}}
    assert scale_config.resolve(minimal) == OLD_DEFAULTS
    assert fill_defaults(_schema(), minimal) == OLD_DEFAULTS
    jsonschema.Draft202012Validator.check_schema(_schema())


@pytest.mark.parametrize("scale", SCALES)
def test_shipped_scales_pass_the_model_and_the_schema_alike(scale):
    merged = plan.merge_scale_file({"scale": scale}, CONFIG_DIR)
    resolved = scale_config.resolve(copy.deepcopy(merged))
    assert resolved == fill_defaults(_schema(), merged)
    assert resolved == plan.deep_merge(OLD_DEFAULTS, merged)  # what the old schema filled in
    # a detection phase a scale leaves out stays out: run_config falls back to `phases` for it
    assert set(resolved["detection"]["phases"]) == set(merged.get("detection", {}).get("phases", {}))


@pytest.mark.parametrize("over, line", [
    ({"cells": {"only": "alexnet_fp"}}, "config key 'cells.only': Input should be a valid list, got 'alexnet_fp'"),
    ({"epochz": 3}, "config key 'epochz': unknown key (known: baselines, cell_overrides, cell_seeds, cells, "
     "cluster, description, detection, fp_cache, fp_seeds, fp_weights, launcher, models, phases, resources, "
     "scale, seeds, train, train_command)"),
    ({"resources": {"train": {"gpus": 1}}}, "config key 'resources.train.gpus': unknown key (known: gpu, mem_mb, "
     "runtime, threads)"),
    ({"detection": {"phases": {"joint": {}}}}, "config key 'detection.phases.joint': unknown key (known: 'fp', "
     "'weights', 'activations' or 'both')"),
    ({"seeds": ["0"]}, "config key 'seeds.0': Input should be a valid integer, got '0'"),
    ({"seeds": []}, "config key 'seeds': List should have at least 1 item after validation, not 0"),
    ({"launcher": "srun"}, "config key 'launcher': Input should be 'python' or 'torchrun', got 'srun'"),
    ({"resources": {"light": {"mem_mb": 10}}},
     "config key 'resources.light.mem_mb': Input should be greater than or equal to 100, got 10"),
    ({"cluster": {"gpu_model": "a 100"}},
     "config key 'cluster.gpu_model': String should match pattern '^[A-Za-z0-9_.]+$', got 'a 100'"),
])
def test_a_bad_value_is_one_line_naming_the_key(over, line):
    merged = plan.merge_scale_file({"scale": "smoke", **over}, CONFIG_DIR)
    with pytest.raises(plan.PipelineConfigError) as err:
        scale_config.resolve(merged)
    assert str(err.value) == line
    with pytest.raises(jsonschema.ValidationError):  # the generated schema refuses it too
        jsonschema.validate(merged, _schema())


def test_the_message_names_the_file_that_set_the_value(tmp_path):
    site = write_yaml(tmp_path / "site.yaml", {"cluster": {"qos": 3}})
    files = scale_config.sources([site], CONFIG_DIR, "gpu")
    assert files == [site, CONFIG_DIR / "gpu.yaml", CONFIG_DIR / "mini.yaml"]
    merged = plan.merge_scale_file({"scale": "gpu", "cluster": {"qos": 3}}, CONFIG_DIR)
    with pytest.raises(plan.PipelineConfigError, match=f"^{re.escape(str(site))}: config key 'cluster.qos': "):
        scale_config.resolve(merged, files)
    # the same value from --config, which is no file: the key alone
    with pytest.raises(plan.PipelineConfigError, match="^config key 'cluster.qos': "):
        scale_config.resolve(merged, files[1:])


def test_a_bad_value_stops_the_dry_run_with_exit_2(tmp_path):
    site = write_yaml(tmp_path / "site.yaml", {"cells": {"only": "alexnet_fp"}})
    res = snakemake(tmp_path, "-n", "--config", "scale=smoke", "--configfile", str(site))
    assert res.returncode == 2, res.stderr[-2000:]
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last == (f"invalid pipeline config: {site}: config key 'cells.only': Input should be a valid list, "
                    "got 'alexnet_fp'")
    assert "Job stats" not in res.stdout + res.stderr
