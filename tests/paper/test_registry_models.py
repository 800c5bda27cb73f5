"""experiments.yaml's cells and claims.yaml's claims are validated by pydantic models: every
refusal names the file and the dotted key."""

from __future__ import annotations

import copy

import pytest

from qbench.paper import (CELL_FIELDS, Cell, Claim, ClaimsFile, RegistryError, _check_cell, _read, check_claims,
                          load_cells)
from qbench.report import claims as report_claims

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


CLAIM = {"test": "trains", "basis": "stated", "quote": {"id": "q", "section": "4.1", "text": "t"},
         "source": "Sec. 4.1", "statement": "s", "cells": ["alexnet_fp"]}


def _claims_with(claim: dict) -> dict:
    data = copy.deepcopy(_read("claims.yaml"))
    data["claims"]["x"] = claim
    return data


@pytest.mark.parametrize("edit, message", [
    ({"colour": "red"}, "claims.yaml: claims.x.colour: unknown key"),
    ({"test": "superiorty"}, "claims.yaml: claims.x.test: test='superiorty' not in ("),
    ({"basis": "said"}, "claims.yaml: claims.x.basis: basis='said' not in ('stated', 'table')"),
    ({"cells": ["alexnet_fpp"]}, "claims.yaml: claims.x.cells: unknown cell 'alexnet_fpp'"),
    ({"cells": []}, "claims.yaml: claims.x.cells: must be a non-empty list of cells"),
    ({"test": "gap_closes"}, "claims.yaml: claims.x.cell: a gap_closes claim needs its cell"),
    ({"test": "not_testable", "reason": " "}, "claims.yaml: claims.x.reason: a claim not testable here needs its reason"),
    ({"test": "superiority"}, "claims.yaml: claims.x.comparisons: a superiority claim has no comparisons"),
    ({"control": "off"}, "claims.yaml: claims.x.control: control='off' not in ('auto', 'none')"),
    ({"quote": {"id": "q", "section": "4.1"}}, "claims.yaml: claims.x.quote.text: required key missing"),
    ({"quote": {"id": "q", "section": "4.1", "text": "t", "page": 3}}, "claims.yaml: claims.x.quote.page: unknown key"),
    ({"test": "superiority", "comparisons": [["alexnet_fp", "nosuch"]]},
     "claims.yaml: claims.x.comparisons[0]: unknown cell 'nosuch'"),
])
def test_a_bad_claim_is_refused_naming_its_dotted_key(edit, message):
    with pytest.raises(RegistryError) as info:
        check_claims(_claims_with({**CLAIM, **edit}))
    assert message in str(info.value)


def test_the_report_reads_the_validated_claims_and_their_errors(monkeypatch):
    specs = report_claims.load_claims()
    assert specs["w3_lossless"].comparisons == ((("resnet18_w3pm4a32", 1.0), ("resnet18_fp", -1.0)),
                                                (("resnet50_w3pm4a32", 1.0), ("resnet50_fp", -1.0)))
    monkeypatch.setattr(report_claims, "_spec_file", lambda: _claims_with({**CLAIM, "cells": ["nosuch"]}))
    with pytest.raises(report_claims.ClaimsError, match=r"^claims\.yaml: claims\.x\.cells: unknown cell 'nosuch'$"):
        report_claims.load_claims()


def test_the_schema_lists_the_claim_fields():
    schema = Claim.model_json_schema()
    assert {"test", "basis", "quote", "source", "statement", "comparisons", "cell", "cells", "reason", "control",
            "effect", "margin"} == set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert set(ClaimsFile.model_json_schema()["properties"]) == {"margins", "trained_fraction", "claims"}
