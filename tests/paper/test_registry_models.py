"""experiments.yaml's cells are validated by a pydantic model: every refusal names the dotted key."""

from __future__ import annotations

import pytest

from qbench.paper import CELL_FIELDS, Cell, RegistryError, _check_cell, load_cells

BASE = {"task": "classify", "kind": "quant", "model": "resnet18"}


@pytest.mark.parametrize("raw, message", [
    ({"colour": "red"}, "experiments.yaml: cells.x.colour: unknown key"),
    ({"weights": "ternery"}, "experiments.yaml: cells.x.weights: unknown level set 'ternery'"),
    ({"weights": "act_2bit"}, "experiments.yaml: cells.x.weights: 'act_2bit' is an activation level set"),
    ({"activations": "ternary"}, "experiments.yaml: cells.x.activations: 'ternary' is a weight level set"),
    ({"method": "nosuch"}, "experiments.yaml: cells.x.method: method='nosuch' not in ("),
    ({"method": "lsq", "kind": "fp"}, "experiments.yaml: cells.x.method: a method other than 'qn' needs kind: quant"),
    ({"init": "kmean"}, "experiments.yaml: cells.x.init: init='kmean' not in ('kmeans', 'linear')"),
    ({"learn_biases": "yes"}, "experiments.yaml: cells.x.learn_biases: must be true or false"),
    ({"slope": "steep"}, "experiments.yaml: cells.x.slope: "),
    ({"tables": ["table1"]}, "experiments.yaml: cells.x.tables[0]: table placement 'table1' is not"),
    ({"figures": "fig3"}, "experiments.yaml: cells.x.figures: "),
])
def test_a_bad_cell_is_refused_naming_its_dotted_key(raw, message):
    with pytest.raises(RegistryError) as info:
        _check_cell("x", {**BASE, **raw})
    assert message in str(info.value)


def test_every_error_of_a_cell_is_one_line():
    with pytest.raises(RegistryError) as info:
        _check_cell("x", {"task": "classify", "colour": "red", "init": "kmean"})
    lines = str(info.value).splitlines()
    assert sorted(lines) == sorted(["experiments.yaml: cells.x.model: required key missing",
                                    "experiments.yaml: cells.x.colour: unknown key",
                                    "experiments.yaml: cells.x.init: init='kmean' not in ('kmeans', 'linear')"])


def test_a_cell_is_frozen_hashable_and_copied_with_updates():
    cell = load_cells()["alexnet_w2a32"]
    with pytest.raises(Exception):
        cell.slope = 1.0
    assert {cell: 1}[cell] == 1 and cell == _check_cell(cell.id, {k: getattr(cell, k) for k in CELL_FIELDS})
    other = cell.model_copy(update={"init": "linear"})
    assert other.init == "linear" and other.method_options["init"] == "linear" and cell.init == "kmeans"
    assert other != cell and other.wa_label == cell.wa_label == "2/32"


def test_the_schema_lists_the_cell_fields_and_their_choices():
    schema = Cell.model_json_schema()
    assert set(schema["properties"]) == {"id", *CELL_FIELDS}
    assert set(schema["required"]) == {"id", "model"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["init"]["enum"] == ["kmeans", "linear"]
    assert schema["properties"]["tables"]["items"]["type"] == "string"
