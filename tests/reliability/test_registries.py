"""Registries are checked like configs: claims.yaml's structure and experiments.yaml's placements."""

from __future__ import annotations

import copy

import pytest

from qbench.io import FileFormatError, parse_yaml
from qbench.paper import Placement, RegistryError, _check_placement, _read, check_claims, check_registries


@pytest.fixture(scope="module")
def claims():
    return _read("claims.yaml")


def test_shipped_registries_pass():
    check_registries()


def _with(claims, edit):
    data = copy.deepcopy(claims)
    edit(data)
    return data


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["claims"]["w3_lossless"]["comparisons"].__setitem__(0, ["alexnet_fp", "alexnet_fp"]),
     "claims.w3_lossless.comparisons[0]: compares 'alexnet_fp' with itself"),
    (lambda d: d["margins"].__setitem__("error_fraction", float("nan")), "margins.error_fraction: a margin must be a finite"),
    (lambda d: d["margins"].__setitem__("table_precision", -3), "margins.table_precision: a margin must be a finite"),
    (lambda d: d["margins"].__setitem__("classify", 1), "claims.yaml: margins.classify: unknown key"),
    (lambda d: d["claims"]["w3_lossless"].__setitem__("margin", float("inf")), "claims.w3_lossless.margin"),
    (lambda d: d["claims"]["w3_lossless"]["comparisons"].__setitem__(0, ["alexnet_fp", "alexnet_fpp"]),
     "unknown cell 'alexnet_fpp'"),
    (lambda d: d["claims"]["w3_lossless"]["comparisons"].__setitem__(0, {"alexnet_fp": 1}), "two or more cells"),
    (lambda d: d["claims"]["w3_lossless"]["comparisons"].__setitem__(0, {"alexnet_fp": 1, "alexnet_w1a32": float("nan")}),
     "finite non-zero"),
])
def test_bad_claims_are_refused_naming_the_key(claims, edit, message):
    with pytest.raises(RegistryError, match=None) as info:
        check_claims(_with(claims, edit))
    assert message in str(info.value)


def test_unknown_claim_keys_are_refused_each_on_its_line(claims):
    # a misspelled optional key (contol: none) would otherwise be dropped without a word
    with pytest.raises(RegistryError) as info:
        check_claims(_with(claims, lambda d: d["claims"]["w3_lossless"].update(section="4.1", kind="x")))
    assert str(info.value).splitlines() == ["claims.yaml: claims.w3_lossless.section: unknown key",
                                            "claims.yaml: claims.w3_lossless.kind: unknown key"]


def test_duplicate_claim_key_is_refused():
    text = "claims:\n  a: {test: superiority}\n  b: {test: superiority}\n  a: {test: equivalence}\n"
    with pytest.raises(FileFormatError, match=r"claims.yaml:4: duplicate key 'a' \(first on line 2\)"):
        parse_yaml(text, "claims.yaml")


@pytest.mark.parametrize("text, message", [
    ("table1:ourz:w3pm4a32", "no row 'ourz' in table1"),
    ("table1:ours:w3pm4a33", "no setting 'w3pm4a33' in table1"),
    ("tabel1:ours:w3pm4a32", "'tabel1': no such table"),
    ("table8:binry", "no setting 'binry' in table8"),
])
def test_placement_typos_are_refused(text, message):
    with pytest.raises(RegistryError) as info:
        _check_placement("c", Placement.parse(text))
    assert message in str(info.value)
