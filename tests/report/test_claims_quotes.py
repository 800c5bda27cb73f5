"""claims.yaml quotes the paper: every claim's sentence is in the paper's text, stated claims
quote the text and table-read ones a table, and the claims the paper states but that cannot be
run here are listed as such."""

from __future__ import annotations


import pytest

from qbench.report import claims

@pytest.mark.parametrize("claim_id", sorted(claims.load_claims()))
def test_every_quote_is_in_the_paper(claim_id, paper_text):
    paper = claims.normalized_text(paper_text)
    quote = claims.load_claims()[claim_id].quote
    assert claims.normalized_text(quote.text) in paper, (claim_id, quote.text)


def test_normalized_text_ignores_line_breaks_and_hyphenation():
    assert claims.normalized_text("first to surpass the full-\nprecision model") == \
        claims.normalized_text("first to surpass the full-precision model")


def test_stated_claims_quote_the_text_and_table_claims_a_table():
    specs = claims.load_claims().values()
    for spec in specs:
        from_table = spec.quote.section.startswith("Table")
        assert from_table == (spec.basis == "table"), spec.id
    ids = {}
    for spec in specs:  # one quote id, one sentence
        assert ids.setdefault(spec.quote.id, spec.quote.text) == spec.quote.text, spec.quote.id


def test_stated_claims_the_paper_makes_are_all_listed():
    specs = claims.load_claims()
    assert specs["resnet18_w3_surpasses_fp"].comparisons == ((("resnet18_w3pm4a32", 1.0), ("resnet18_fp", -1.0)),)
    assert claims.paper_effect(dict(specs["resnet18_w3_surpasses_fp"].comparisons[0])) == pytest.approx(0.1)
    untestable = {cid: s for cid, s in specs.items() if s.test == "not_testable"}
    assert {"qn_beats_admm", "ssd_beats_admm", "qn_beats_iclr18", "qn_beats_bwn_1_1"} <= set(untestable)
    assert all(s.reason and s.basis == "stated" for s in untestable.values())
    # claims that compare with a cited method carry the cited gap as context, not as the effect
    assert all(s.effect_role == "cited" for cid, s in specs.items() if cid.startswith("qn_") and s.comparisons)
    # the temperature claim tests what the paper says (training is stable), not equal accuracy
    assert specs["temperature_stable"].test == "trains"
