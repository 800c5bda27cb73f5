"""The training-step benchmark runs end to end and writes the JSON shape the docs rely on.

Tiny batches and one timed round: only the shape and the timing-free invariants are checked.
"""

import json

from benchmarks import train_step as bench

RATIO_KEYS = ("w3pm4_a2_vs_fp", "w1_a1_vs_fp", "fp_compiled_vs_fp", "w3pm4_a2_compiled_vs_fp",
              "w1_a1_compiled_vs_fp")


def test_train_step_benchmark_writes_every_cell(tmp_path):
    out = tmp_path / "t.json"
    data = bench.main(["--models", "resnet18", "--sizes", "mini", "paper", "--mini-batch", "4",
                       "--paper-batch", "2", "--rounds", "1", "--threads", "1", "--out", str(out)])
    on_disk = json.loads(out.read_text())
    assert on_disk["train_step"] == json.loads(json.dumps(data["train_step"]))
    cells = on_disk["train_step"]
    assert set(cells) == {"resnet18"} and set(cells["resnet18"]) == {"mini", "paper"}
    mini, paper = cells["resnet18"]["mini"], cells["resnet18"]["paper"]
    assert (mini["input"], mini["batch"], mini["classes"]) == ([1, 32, 32], 4, 10)
    assert (paper["input"], paper["batch"], paper["classes"]) == ([3, 224, 224], 2, 1000)
    for cell in (mini, paper):
        assert set(RATIO_KEYS) <= set(cell)
        assert cell["w3pm4_a2_vs_fp"] > 0 and cell["w1_a1_vs_fp"] > 0
        assert cell["compiled"] is False and cell["fp_compiled_vs_fp"] is None
        assert set(cell["ms"]) == {"fp", "w3pm4_a2", "w1_a1"}
    assert on_disk["machine"]["kernel"] in ("native", "torch")
    table = bench.markdown(on_disk)
    assert "| resnet18 | paper | 2 | fp32 |" in table


def test_train_step_benchmark_compiled_contenders(tmp_path):
    """The compiled contenders' plumbing, with dynamo's eager backend (no code generation)."""
    out = tmp_path / "c.json"
    data = bench.main(["--models", "resnet18", "--sizes", "mini", "--mini-batch", "2", "--rounds", "1",
                       "--threads", "1", "--compile", "--compile-backend", "eager", "--out", str(out)])
    cell = json.loads(out.read_text())["train_step"]["resnet18"]["mini"]
    assert cell["compiled"] is True and cell["compile_error"] is None, cell["compile_error"]
    assert set(cell["ms"]) == {"fp", "w3pm4_a2", "w1_a1", "fp_compiled", "w3pm4_a2_compiled", "w1_a1_compiled"}
    assert all(cell[k] > 0 for k in RATIO_KEYS)
    assert set(cell["compile_s"]) == {"fp", "w3pm4_a2", "w1_a1"}
    assert data["compile_backend"] == "eager"
