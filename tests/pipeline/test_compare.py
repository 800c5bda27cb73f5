"""qbench.workflow.compare: equal results pass, a moved number or verdict is named, run facts
(wall time, run directory) are ignored."""

from __future__ import annotations

from qbench.workflow.compare import differences, main


def _tree(root, claims_rows, cells_rows):
    (root / "aggregate").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "claims.csv").write_text("claim,effect,verdict\n" + "".join(f"{r}\n" for r in claims_rows))
    (root / "aggregate" / "cells.csv").write_text("cell,hard_top1_mean,wall_time_s_mean,run_dir\n"
                                                  + "".join(f"{r}\n" for r in cells_rows))
    (root / "tables" / "table1.csv").write_text("Method,1/32\nOurs,80.1\n")
    return root


def test_equal_results_with_other_run_facts_are_equal(tmp_path, capsys):
    a = _tree(tmp_path / "a", ["x,+1.0,reproduced"], ["c,80.1,12.5,/a/runs/c"])
    b = _tree(tmp_path / "b", ["x,+1.0,reproduced"], ["c,80.1,99.0,/b/runs/c"])
    assert differences(a, b) == []
    assert main([str(a), str(b)]) == 0 and "no differences" in capsys.readouterr().err


def test_a_moved_number_or_verdict_is_named(tmp_path, capsys):
    a = _tree(tmp_path / "a", ["x,+1.0,reproduced"], ["c,80.1,1,/a"])
    b = _tree(tmp_path / "b", ["x,+1.0,inconclusive"], ["c,80.2,1,/b"])
    assert differences(a, b) == ["aggregate/cells.csv:2 hard_top1_mean: '80.1' vs '80.2'",
                                 "claims.csv:2 verdict: 'reproduced' vs 'inconclusive'"]
    assert main([str(a), str(b)]) == 1
    assert main([str(a), str(tmp_path / "missing")]) == 2 and "no result files" in capsys.readouterr().err
