"""End to end: the four Table 4 cells at smoke scale (slow: about 1 minute on 2 cores)."""

import json

import pytest


@pytest.mark.slow
def test_smoke_stage_runs_all_cells(tmp_path, data_root, mmdet_stack):
    from qbench.detection.stage import CELLS, run_stage

    summary = run_stage("smoke", tmp_path / "stage", quiet=True, data_root=str(data_root))
    assert set(summary["cells"]) == set(CELLS)
    for cell in CELLS:
        metrics = json.loads((tmp_path / "stage" / cell / "metrics.json").read_text())
        assert metrics["status"] == "complete"
        assert 0.0 <= metrics["final"]["hard_map"] <= 100.0
        assert 0.0 <= metrics["final"]["soft_map"] <= 100.0
        quantized = cell != "fp"
        assert (tmp_path / "stage" / cell / "model_hard.pt").exists() == quantized
        assert len(metrics["quant_report"]["weight_layers"]) == (13 if quantized else 0)
        assert len(metrics["quant_report"]["activation_layers"]) == (13 if cell == "w3a8" else 0)
