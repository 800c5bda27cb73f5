"""Config validation: unknown keys and impossible values are rejected before any work, naming the key."""

from __future__ import annotations

import pytest
import yaml

from qbench.cli import main
from qbench.train.config import Config, ConfigError, load_raw, set_dotted


@pytest.mark.parametrize("update, key", [
    ({"bogus": 1}, "bogus"),
    ({"checkpoint_every_s": -1}, "checkpoint_every_s"),
    ({"checkpoint_every_s": "often"}, "checkpoint_every_s"),
    ({"optim": {"lrr": 0.1}}, "optim.lrr"),
    ({"model": {"arch": "vgg"}}, "model.arch"),
    ({"model": {"in_channels": 2}}, "model.in_channels"),
    ({"model": {"num_classes": 1}}, "model.num_classes"),
    ({"data": {"dataset": "cifar"}}, "data.dataset"),
    ({"data": {"batch_size": 1}}, "data.batch_size"),
    ({"data": {"train_size": 0}}, "data.train_size"),
    ({"data": {"dataset": "imagenet", "root": None}}, "data.root"),
    ({"optim": {"lr": -1.0}}, "optim.lr"),
    ({"optim": {"momentum": 1.0}}, "optim.momentum"),
    ({"optim": {"milestones": [5, 3]}}, "optim.milestones"),
    ({"optim": {"grad_clip": 0}}, "optim.grad_clip"),
    ({"quant": {"weights": "7bit_weird"}}, "quant.weights"),
    ({"quant": {"activations": "ternary"}}, "quant.activations"),
    ({"quant": {"init": "random"}}, "quant.init"),
    ({"quant": {"weights": "ternary"}}, "epochs.fp"),
    ({"quant": {"weights": "ternary"}, "epochs": {"fp": 0, "activations": 1}}, "epochs.activations"),
    ({"epochs": {"fp": 0}}, "epochs"),  # scratch: nothing to evaluate
    ({"epochs": {"fp": 1, "joint": 2}}, "epochs.joint"),
    ({"epochs": {"fp": -1}}, "epochs.fp"),
    ({"temperature": {"slope": 0}}, "temperature.slope"),
    ({"temperature": {"kind": "cosine"}}, "temperature.kind"),
    ({"start": {"mode": "pretrained", "checkpoint": None}}, "start.checkpoint"),
    ({"device": "tpu"}, "device"),
    ({"seed": "zero"}, "seed"),
])
def test_rejected_with_key_named(update, key, smoke, merge):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(merge(smoke, update))
    assert str(err.value).startswith(f"{key}:") or str(err.value).startswith(f"{key} "), str(err.value)


def test_valid_config_round_trips(smoke, merge):
    cfg = Config.from_dict(merge(smoke, {"quant": {"weights": "3bit_pm4", "activations": "act_2bit"},
                                         "epochs": {"fp": 0, "weights": 2, "activations": 1, "joint": 3}}))
    assert cfg.phases() == ["weights"] * 2 + ["activations"] + ["joint"] * 3
    again = Config.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_32_means_full_precision(smoke, merge):
    cfg = Config.from_dict(merge(smoke, {"quant": {"weights": "32", "activations": "act_2bit"},
                                         "epochs": {"fp": 0, "activations": 2}}))
    assert cfg.quant.weights is None and cfg.quant.activations == "act_2bit"


def test_set_overrides_parse_yaml(tmp_path, smoke):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(smoke))
    raw = load_raw(path, ["optim.lr=0.5", "optim.milestones=[3, 4]", "quant.weights=ternary", "data.root="])
    assert raw["optim"]["lr"] == 0.5 and raw["optim"]["milestones"] == [3, 4]
    assert raw["quant"]["weights"] == "ternary" and raw["data"]["root"] is None
    with pytest.raises(ConfigError, match="key=value"):
        set_dotted(raw, "optim.lr")


def test_cli_rejects_before_any_work(tmp_path, write_config, capsys):
    cfg = write_config({"optim": {"weight_decay": -0.1}})
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    assert "optim.weight_decay" in capsys.readouterr().err
    assert not out.exists()
    assert main(["train", str(cfg), "--out", str(out), "--set", "optim.weight_decay=0.1",
                 "--set", "model.depth=3"]) == 2
    assert "model.depth" in capsys.readouterr().err
    assert not out.exists()


def test_detect_task_is_handed_to_the_detection_runner(tmp_path, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("qbench.detection.runner")
    fake.run_from_config = lambda cfg, out, quiet: calls.append((cfg, str(out), quiet))
    monkeypatch.setitem(sys.modules, "qbench.detection.runner", fake)
    det = {"task": "detect", "model": {"arch": "ssd300_vgg16"}, "data": {"train_size": 4, "test_size": 2},
           "optim": {"milestones": []}, "epochs": {"fp": 1}}
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump(det))
    assert main(["train", str(path), "--out", str(tmp_path / "d"), "--quiet", "--set", "seed=3"]) == 0
    assert calls == [({**det, "seed": 3}, str(tmp_path / "d"), True)]


def test_json_schema_names_the_keys():
    """The run config is a pydantic model: its JSON schema documents every key and refuses others."""
    from qbench.detection.config import DetectRunConfig

    schema = Config.model_json_schema()
    assert {"seed", "model", "optim", "epochs", "compile"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert {"lr", "milestones", "grad_clip"} <= set(defs["OptimConfig"]["properties"])
    assert defs["OptimConfig"]["additionalProperties"] is False
    assert "resnet18" in defs["ModelConfig"]["properties"]["arch"]["enum"]
    assert "qn" in defs["QuantConfig"]["properties"]["method"]["enum"]
    assert "pixel_norm" in DetectRunConfig.model_json_schema()["$defs"]["DetectConfig"]["properties"]


@pytest.mark.parametrize("update, key", [
    ({"nope": 1}, "nope"),
    ({"model": {"nope": 1}}, "model.nope"),
    ({"data": {"nope": 1}}, "data.nope"),
    ({"start": {"nope": 1}}, "start.nope"),
    ({"quant": {"nope": 1}}, "quant.nope"),
    ({"quant": {"options": {"nope": 1}}}, "quant.options.nope"),
    ({"temperature": {"nope": 1}}, "temperature.nope"),
    ({"optim": {"nope": 1}}, "optim.nope"),
    ({"epochs": {"nope": 1}}, "epochs.nope"),
])
def test_unknown_key_anywhere_is_refused_by_its_dotted_key(update, key, smoke, merge):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(merge(smoke, update))
    assert err.value.key == key and err.value.problem.startswith("unknown "), str(err.value)


@pytest.mark.parametrize("update, key, problem", [
    ({"optim": {"lr": "1e-3"}}, None, None),  # numbers written as text are numbers
    ({"data": {"batch_size": "64"}, "seed": "3"}, None, None),
    ({"data": {"batch_size": True}}, "data.batch_size", "must be an integer >= 1, got True"),
    ({"data": {"batch_size": 1.5}}, "data.batch_size", "must be an integer >= 1, got 1.5"),
    ({"epochs": {"fp": 2.0}}, "epochs.fp", "must be an integer >= 0, got 2.0"),
    ({"optim": {"lr": True}}, "optim.lr", "must be > 0, got True"),
    ({"optim": {"milestones": [1, "x"]}}, "optim.milestones",
     "must be a strictly increasing list of epochs >= 1, got [1, 'x']"),
    ({"epochs": 3}, "epochs", "must be a mapping, got 3"),
])
def test_types_are_strict_but_numbers_may_be_text(update, key, problem, smoke, merge):
    if key is None:
        Config.from_dict(merge(smoke, update))
        return
    with pytest.raises(ConfigError) as err:
        Config.from_dict(merge(smoke, update))
    assert (err.value.key, err.value.problem) == (key, problem)


def test_detect_refuses_the_classification_keys_it_does_not_read():
    from qbench.detection.config import DetectRunConfig

    with pytest.raises(ConfigError) as err:
        DetectRunConfig.from_dict({"model": {"stem": "small"}})
    assert err.value.key == "model.stem" and err.value.problem.startswith("unknown key (known: arch,")
