"""Cell rules: deviations.yaml selects the cells a deviation applies to by their properties, so a
new cell is covered by the deviations it shares without a hand-kept list."""

from __future__ import annotations

import pytest

from qbench.paper import RegistryError, load_cells, select_cells
from qbench.paper.recipe import _entry_cells
from qbench.quant.methods.baselines import level_label


def _ids(rule):
    return {c.id for c in select_cells(rule, "test")}


def test_a_rule_matches_fields_alternatives_and_derived_keys():
    cells = load_cells().values()
    assert _ids({"method": "inq"}) == {c.id for c in cells if c.method == "inq"}
    assert _ids({"method": ["ttq", "pact"]}) == {c.id for c in cells if c.method in ("ttq", "pact")}
    assert _ids({"baseline": True, "quantizes": "activations"}) == {
        c.id for c in cells if c.method != "qn" and c.activations is not None}
    assert _ids({"tables": "table8", "kind": "quant"}) == {"alexnet_w1a1", "alexnet_w2a2"}
    assert _ids({"figures": "fig5"}) == {"alexnet_w2a32", "alexnet_w2a32_T5", "alexnet_w2a32_T20"}


def test_level_counts_differ_is_the_tables_level_note():
    chosen = _ids({"level_counts_differ": True})
    assert chosen == {c.id for c in load_cells().values() if level_label(c.method, c.weights, c.activations)}
    assert {"alexnet_w2a32_lsq", "resnet18_w3pm4a32_inq", "resnet18_w5a32_abcnet"} <= chosen
    assert "resnet18_w2a32_inq" not in chosen  # INQ's 2-bit set has the paper's three levels


@pytest.mark.parametrize("rule, needle", [({"methd": "inq"}, "unknown key 'methd'"),
                                          ({"method": "nope"}, "no cell of experiments.yaml matches"),
                                          ({}, "non-empty mapping"), ("inq", "non-empty mapping")])
def test_a_bad_rule_fails_naming_where(rule, needle):
    with pytest.raises(RegistryError, match=f"deviations.yaml: entry 'x': cells: .*{needle}"):
        select_cells(rule, "deviations.yaml: entry 'x': cells")


def test_every_deviation_resolves_its_cells():
    assert _entry_cells("inq_first_last") == {c.id for c in load_cells().values() if c.method == "inq"}
    assert _entry_cells("mini_ssd_finetune") == {"ssd_w2a32", "ssd_w3pm4a32", "ssd_w3pm4a8"}
    assert _entry_cells("bn_hard_stats") is None
