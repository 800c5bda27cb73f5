"""Bad input stops before any work with one line naming the file or key, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from qbench.cli import main
from qbench.train.config import Config, ConfigError, load_raw

ROOT = Path(__file__).resolve().parents[2]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("text, expected", [
    ("seed: 0\nmodel: {arch: resnet18\n", r"config.yaml:\d+: not valid YAML"),
    ("seed: 0\ndata:\n\tdataset: fake\n", r"config.yaml:3: not valid YAML"),
    ("seed: !!python/object/apply:os.system ['echo pwned']\n",
     r"config.yaml:1: tag !!python/object/apply:os.system is not allowed"),
    ("", r"config.yaml: empty"),
    ("- a\n- b\n", r"config.yaml: must be a YAML mapping"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", r"config.yaml: not a UTF-8 text file"),
])
def test_unreadable_configs_name_file_and_line(tmp_path, capsys, text, expected):
    import re

    path = tmp_path / "config.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    assert main(["train", str(path), "--out", str(tmp_path / "out")]) == 2
    err = _err_line(capsys)
    assert re.search(expected, err), err
    assert str(path) in err and not (tmp_path / "out").exists()


def test_numbers_as_people_write_them(tmp_path, smoke, merge):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(merge(smoke, {"optim": {"weight_decay": 0.0}})).replace(
        "weight_decay: 0.0", "weight_decay: 5e-4"))
    raw = load_raw(path, ["optim.lr=1e-3", "temperature.slope=5E0"])
    cfg = Config.from_dict(raw)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.temperature.slope) == (0.001, 0.0005, 5.0)
    # what snakemake's --config passes for nested values: text
    as_text = merge(smoke, {"seed": "2", "optim": {"lr": "1e-3", "milestones": ["1"], "grad_clip": "null"},
                            "epochs": {"fp": "1"}, "quant": {"learn_biases": "false"}})
    cfg = Config.from_dict(as_text)
    assert (cfg.seed, cfg.optim.lr, cfg.optim.milestones, cfg.optim.grad_clip, cfg.epochs.fp) == (2, 0.001, [1], None, 1)
    with pytest.raises(ConfigError, match="optim.lr: must be > 0, got '1e-3x'"):
        Config.from_dict(merge(smoke, {"optim": {"lr": "1e-3x"}}))


def test_weight_level_set_checked_as_in_the_pipeline(smoke, merge):
    with pytest.raises(ConfigError, match="quant.weights: 'act_2bit' is an activation level set"):
        Config.from_dict(merge(smoke, {"quant": {"weights": "act_2bit"}, "epochs": {"fp": 0, "weights": 1}}))
    with pytest.raises(ConfigError, match="quant.activations: 'ternary' is a signed set"):
        Config.from_dict(merge(smoke, {"quant": {"activations": "ternary"}, "epochs": {"fp": 0, "joint": 1}}))


def test_temperature_beyond_float32_is_a_config_error(smoke, merge):
    over = {"quant": {"weights": "ternary"}, "epochs": {"fp": 0, "weights": 3},
            "temperature": {"kind": "exponential", "slope": 1e38, "epoch_scale": 1.0}}
    with pytest.raises(ConfigError, match="temperature: T reaches .* beyond float32"):
        Config.from_dict(merge(smoke, over))
    over["temperature"] = {"kind": "exponential", "slope": 5, "epoch_scale": 1e6}  # 2 ** 1e6 overflows Python floats
    with pytest.raises(ConfigError, match="temperature: T reaches inf"):
        Config.from_dict(merge(smoke, over))
    over["temperature"]["cap"] = 1e4
    assert Config.from_dict(merge(smoke, over)).temperature.cap == 1e4


def test_quantizer_refuses_nan_and_overflowing_temperature():
    from qbench.quant import hard_quantize, soft_quantize
    from qbench.quant.functional import NonFiniteError

    b = torch.tensor([-0.5, 0.5])
    x = torch.tensor([0.5, float("nan"), -1.0])
    with pytest.raises(NonFiniteError, match="NaN"):
        hard_quantize(x, "ternary", b, 1.0, 1.0)  # used to map NaN onto the lowest level
    x = torch.tensor([0.5, -0.5, 2.0])  # on the biases: T * 0 with T = inf is NaN
    for T in (float("inf"), 3.5e38):
        with pytest.raises(ValueError, match="beyond the range of torch.float32"):
            soft_quantize(x, "ternary", b, 1.0, 1.0, T)
    assert torch.isfinite(soft_quantize(x, "ternary", b, 1.0, 1.0, 3.0e38)).all()


def test_nan_weights_stop_training_with_epoch_step_phase(tmp_path, write_config, fp_checkpoint, capsys,
                                                         monkeypatch):
    """Weights that turn NaN after the last step of an epoch (so no loss sees them) used to be evaluated
    as the lowest level: the run finished with a plausible accuracy."""
    orig = torch.optim.SGD.step

    def step_then_break(self, *a, **k):
        out = orig(self, *a, **k)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_break)
    cfg = write_config({"start": {"mode": "pretrained", "checkpoint": str(fp_checkpoint)},
                        "quant": {"weights": "ternary"}, "data": {"train_size": 16, "batch_size": 16},
                        "epochs": {"fp": 0, "weights": 1}})
    out = tmp_path / "q"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 1
    err = _err_line(capsys)
    assert "non-finite weights (conv1.weight" in err and "after epoch 1, step 1, phase weights" in err
    assert not (out / "metrics.json").exists()


def test_detection_config_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump({"task": "detect", "data": {"train_size": 4, "test_size": 2},
                                    "detect": {"augment": "heavy"}, "epochs": {"fp": 1}}))
    assert main(["train", str(path), "--out", str(tmp_path / "d")]) == 2
    assert "detect.augment" in _err_line(capsys)
    assert not (tmp_path / "d").exists()


def test_qbench_data_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    from qbench.data import DatasetError, find_fashion_mnist

    monkeypatch.setenv("QBENCH_DATA", str(tmp_path / "typo"))
    with pytest.raises(DatasetError, match=f"QBENCH_DATA={tmp_path / 'typo'}: no such directory"):
        find_fashion_mnist()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_data_provenance_in_env_and_metrics(tmp_path, write_config, monkeypatch):
    import hashlib
    import json

    monkeypatch.delenv("QBENCH_DATA", raising=False)
    cfg = write_config({"model": {"num_classes": 10}, "data": {"dataset": "fashion_mnist", "train_size": 32,
                                                                "test_size": 16}})
    out = tmp_path / "fm"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    env = json.loads((out / "env.json").read_text())
    assert metrics["data_files"] == env["data_files"] and len(env["data_files"]) == 4
    rec = next(r for r in env["data_files"] if r["path"].endswith("t10k-labels-idx1-ubyte.gz"))
    data = Path(rec["path"]).read_bytes()
    assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()


def test_truncated_jpeg_stops_with_its_path(tmp_path, write_config, tiny_imagenet, capsys):
    import shutil

    root = tmp_path / "imagenet"
    shutil.copytree(tiny_imagenet, root)
    bad = sorted((root / "train").rglob("*.JPEG"))[3]
    bad.write_bytes(bad.read_bytes()[:200])
    cfg = write_config({"model": {"num_classes": 3, "in_channels": 3},
                        "data": {"dataset": "imagenet", "root": str(root), "image_size": 32,
                                 "train_size": None, "test_size": None, "batch_size": 4}})
    assert main(["train", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = _err_line(capsys)
    assert f"{bad}: cannot decode image" in err


def test_truncated_jpeg_in_a_worker_process_is_one_line(tmp_path, tiny_imagenet):
    import shutil

    from qbench.data import DatasetError, build_data

    root = tmp_path / "imagenet"
    shutil.copytree(tiny_imagenet, root)
    bad = sorted((root / "val").rglob("*.JPEG"))[0]
    bad.write_bytes(bad.read_bytes()[:200])
    data = build_data("imagenet", str(root), 32, 3, 3, workers=1)
    with pytest.raises(DatasetError) as info:
        list(data.test_batches(4))
    assert str(info.value) .startswith(f"{bad}: cannot decode image") and "\n" not in str(info.value)


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_unknown_scale_lists_the_known_ones(tmp_path):
    res = _snakemake(tmp_path, "--config", "scale=nonexistent")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "config key 'scale': unknown scale 'nonexistent'; known: gpu, mini, paper, smoke" in out
    assert "required property" not in out


def test_trainer_keys_are_checked_when_planning(tmp_path):
    """A typo inside `train:` used to pass the dry run and fail in every training job."""
    res = _snakemake(tmp_path, "--config", "scale=smoke", "train={optim: {lrr: 0.1}}")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "config key 'train.optim.lrr': unknown key" in out
    assert "Job stats" not in out
    # snakemake hands nested --config values over as text: "1e-3" and "2" are numbers
    res = _snakemake(tmp_path, "--config", "scale=smoke", "train={optim: {lr: 1e-3}, data: {batch_size: 16}}")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]


def test_level_sets_one_rule_for_trainer_and_pipeline(smoke, merge):
    from qbench.workflow import plan

    cfg = plan.merge_scale_file({"scale": "smoke", "cell_overrides": {
        "alexnet_w2a32": {"quant": {"weights": "act_2bit"}}}}, ROOT / "workflows" / "config")
    with pytest.raises(plan.PipelineConfigError) as pipeline_err:
        plan.validate_semantics(cfg, plan.enabled_cells(cfg))
    with pytest.raises(ConfigError) as trainer_err:
        Config.from_dict(merge(smoke, {"quant": {"weights": "act_2bit"}, "epochs": {"fp": 0, "weights": 1}}))
    reason = str(trainer_err.value).split(": ", 1)[1]
    assert reason in str(pipeline_err.value)
