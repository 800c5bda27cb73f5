"""Property tests: random configs and random quantizer inputs never end in a traceback."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qbench.quant import (LevelSet, hard_quantize, hard_quantize_reference, soft_quantize,
                          soft_quantize_reference)
from qbench.quant.functional import NonFiniteError
from qbench.train.config import SECTIONS, Config, ConfigError, set_dotted

KNOWN = {section: list(cls.model_fields) for section, cls in SECTIONS.items()}
TOP = ["task", "seed", "device", *SECTIONS]
# how people (and snakemake's --config) spell values: YAML text, parsed as --set parses it
YAML_SPELLINGS = ["1e-3", "1.0e-3", "5E-4", ".5", "-1", "0", "3", "1_000", "2.5", "'1e-3'", "\"2\"", "yes", "no",
                  "true", "~", "null", "", "[1, 2]", "[]", "{a: 1}", "nan", ".nan", ".inf", "-.inf", "1e400",
                  "ternary", "act_2bit", "3bit_pm4", "32", "kmeans", "linear", "cpu", "cuda:0", "auto",
                  "!!python/name:os.system", "!!binary aGVsbG8=", "[1, [2]]", "2020-01-01", "0x10", "1:30",
                  "'   '", "{", "résumé", "fake", "resnet18"]
KEY_MSG = re.compile(r"^(--set [\w.]+(:\d+)?|[A-Za-z_][\w.]*): \S")
values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


PLAUSIBLE = ["1e-3", "5E-4", "0.5", "0.9", "2", "16", "1", "0", "null", "linear", "kmeans", "ternary", "act_2bit",
             "true", "false", "[1]", "[]", "cpu", "'1e-3'", "\"2\""]


@st.composite
def edits(draw):
    """A list of (dotted key, how, value) edits of the smoke config: mostly plausible YAML
    spellings of known keys (so valid configs occur), some arbitrary values and unknown keys."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(TOP + ["bogus"]))
        if section in KNOWN:
            sub = draw(st.sampled_from(KNOWN[section] + ["unknown_key"]))
            key = f"{section}.{sub}"
        else:
            key = section
        kind = draw(st.sampled_from(["plausible", "plausible", "yaml", "value"]))
        if kind == "plausible":
            out.append((key, "yaml", draw(st.sampled_from(PLAUSIBLE))))
        elif kind == "yaml":
            out.append((key, "yaml", draw(st.sampled_from(YAML_SPELLINGS))))
        else:
            out.append((key, "value", draw(values)))
    return out


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=edits())
def test_random_configs_give_a_config_or_a_one_line_error_naming_a_key(smoke, changes):
    raw = yaml.safe_load(yaml.safe_dump(smoke))  # a fresh copy per example
    try:
        for key, how, v in changes:
            if how == "yaml":
                set_dotted(raw, f"{key}={v}")
            else:
                node = raw
                parts = key.split(".")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                    if not isinstance(node, dict):
                        raise ConfigError(f"{p}: not a section")
                node[parts[-1]] = v
        cfg = Config.from_dict(raw)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and KEY_MSG.match(msg), msg
        event("config error")
        return
    event("valid config")
    assert isinstance(cfg, Config)
    assert Config.from_dict(cfg.to_dict()) == cfg  # a valid config survives its own round trip


LEVEL_NAMES = ["binary", "ternary", "3bit_pm2", "3bit_pm4", "act_binary", "act_2bit", "act_linear3", "5bit"]
finite = st.floats(-1e3, 1e3, allow_nan=False)


@st.composite
def quant_inputs(draw):
    levels = LevelSet.from_name(draw(st.sampled_from(LEVEL_NAMES)))
    biases = sorted(draw(st.lists(finite, min_size=levels.n, max_size=levels.n)))
    xs = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([float("nan"), 0.0]),
                       min_size=1, max_size=20))
    alpha = draw(st.floats(1e-3, 1e3) | st.sampled_from([0.0, -1.0]))
    beta = draw(st.floats(1e-3, 1e3))
    T = draw(st.floats(1e-3, 1e6) | st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e39, 3e38, 1e300]))
    return levels, torch.tensor(biases, dtype=torch.float64), torch.tensor(xs, dtype=torch.float64), alpha, beta, T


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(quant_inputs(), st.sampled_from([torch.float32, torch.float64]))
def test_quantizer_matches_the_literal_equations_or_says_why_not(args, dtype):
    levels, biases, x, alpha, beta, T = args
    x, biases = x.to(dtype), biases.to(dtype)
    try:
        soft = soft_quantize(x, levels, biases, alpha, beta, T)
    except ValueError as e:
        assert "temperature" in str(e)
        assert not (T > 0 and T <= torch.finfo(dtype).max)
    else:
        ref = soft_quantize_reference(x.double(), levels, biases.double(), alpha, beta, T)
        scale = abs(alpha) * sum(levels.steps) + 1.0
        tol = (1e-4 if dtype == torch.float32 else 1e-9) * scale
        # where the sigmoid is steep, rounding u = beta * x and b to ``dtype`` moves its argument
        # T * (u - b) by about T * eps * (|u| + |b|); those elements are compared only for NaN
        u, b = beta * x.double()[:, None], biases.double()[None]
        z = T * (u - b)
        dz = T * torch.finfo(dtype).eps * (u.abs() + b.abs() + 1)
        steep = ((z.abs() < 40) & (dz > 1e-6)).any(dim=1)
        nan = torch.isnan(ref)
        assert torch.equal(torch.isnan(soft.double()), nan)
        ok = ((soft.double() - ref).abs() <= tol) | steep | nan
        assert bool(ok.all()), (soft, ref)
    try:
        hard = hard_quantize(x, levels, biases, alpha, beta)
    except NonFiniteError:
        assert torch.isnan(x).any()
    else:
        assert not torch.isnan(x).any()
        ref = hard_quantize_reference(x, levels, biases, alpha, beta)
        assert torch.allclose(hard, ref, rtol=0, atol=1e-6 * (abs(alpha) + 1) * sum(levels.steps))


def test_property_tests_reach_both_outcomes(smoke):
    """Guard against a vacuous property: valid and invalid configs both occur in the spellings."""
    raw = yaml.safe_load(yaml.safe_dump(smoke))
    set_dotted(raw, "optim.lr=1e-3")
    assert math.isclose(Config.from_dict(raw).optim.lr, 1e-3)
    with pytest.raises(ConfigError, match="--set optim.lr: tag !!python/name:os.system is not allowed"):
        set_dotted(raw, "optim.lr=!!python/name:os.system")
