"""The quantizer benchmark runs end to end and writes the JSON shape docs and notes rely on.

Only the shape and the invariants that do not depend on timing are checked: timings are
benchmark output, not test conditions.
"""

import json

from benchmarks import quantizer as bench


def test_benchmark_writes_ratios_for_every_level_set_and_size(tmp_path):
    out = tmp_path / "q.json"
    data = bench.main(["--quick", "--sizes", "4096", "16384", "--levels", "ternary", "5bit",
                       "--threads", "1", "--out", str(out)])
    on_disk = json.loads(out.read_text())
    assert on_disk["quantizer"] == json.loads(json.dumps(data["quantizer"]))
    rows = on_disk["quantizer"]
    assert [(r["levels"], r["numel"]) for r in rows] == [
        ("ternary", 4096), ("ternary", 16384), ("5bit", 4096), ("5bit", 16384)]
    for r in rows:
        for key in ("soft_fwd_vs_relu", "soft_fwd_bwd_vs_relu", "naive_fwd_bwd_vs_relu",
                    "hard_fwd_vs_relu", "soft_fwd_bwd_vs_naive"):
            assert r[key] > 0, key
        # autograd keeps x (plus the n-element parameters) on the fast path, x plus n + 1
        # input-sized tensors on the naive one
        assert 1.0 <= r["saved_bytes_vs_input"] < 1.0 + (2 * r["n"] + 4) / r["numel"]
        assert r["naive_saved_bytes_vs_input"] >= r["n"] + 1
        assert r["compiled"] is False and r["compiled_fwd_bwd_vs_relu"] is None
    assert {"w3pm4_a2_vs_fp", "w1_a1_vs_fp"} <= set(on_disk["train_step"])
    assert on_disk["machine"]["kernel"] in ("native", "torch")
    assert len(on_disk["temperature_sweep"]) == 10
    table = bench.markdown(on_disk)
    assert "| 5bit | 30 | 16,384 |" in table and "not run" in table
