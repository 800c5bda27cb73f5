"""The released-variant benchmark runs and its numbers show what docs/quantizer.md says of them."""

import json
import math

from benchmarks import released_variant as bench


def test_released_variant_benchmark_measures_each_choice(tmp_path, capsys):
    out = tmp_path / "r.json"
    data = bench.main(["--numel", "4096", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(data))
    assert "| levels | choice | T |" in capsys.readouterr().out
    rows = {(r["levels"], r["choice"], r["T"]): r for r in data["soft"]}
    sig = 1 / (1 + math.exp(10))
    for levels, sum_s in (("binary", 2.0), ("3bit_pm4", 8.0)):
        for T in bench.TEMPERATURES:
            clamp = rows[(levels, "clamp", T)]
            assert clamp["max_dy_over_alpha"] <= sig * sum_s * (1 + 1e-9)
            cap = rows[(levels, "weight_t_cap", T)]
            unit = rows[(levels, "unit_t_weight_backward", T)]
            assert unit["max_dy_over_alpha"] < 1e-12 and unit["max_dg_rel"] > 0.5
            if T <= 2000:
                assert cap["max_dy_over_alpha"] < 1e-12 and cap["g_changed"] == 0.0
            else:
                assert cap["max_dy_over_alpha"] > 1e-2
    assert set(data["strict_step_changed"].values()) == {0}
    ternary = next(r for r in data["init"] if r["levels"] == "ternary")
    assert ternary["biases_paper"] == [-0.05, 0.05] and ternary["biases_released"][0] < -0.1
    assert ternary["level_changed"] > 0.1
