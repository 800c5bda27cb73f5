"""The claims of claims.yaml say what the paper's own numbers say."""

from __future__ import annotations

import pytest

from qbench.paper import load_cells
from qbench.report import claims


@pytest.mark.parametrize("claim_id", sorted(claims.load_claims()))
def test_the_papers_numbers_satisfy_each_claim(claim_id):
    spec = claims.load_claims()[claim_id]
    for comp in spec.comparisons:
        effect = claims.paper_effect(dict(comp))
        if effect is None:  # e.g. a cell the paper prints no number for (Sec. 4.3, Fig. 5)
            continue
        margin = claims.margins()["equivalence" if spec.test == "equivalence" else
                                  load_cells()[comp[0][0]].task]
        ok = {"superiority": effect > 0, "noninferiority": effect > -margin,
              "nonsuperiority": effect < margin, "equivalence": abs(effect) < margin}[spec.test]
        assert ok, (claim_id, comp, effect)


def test_every_baseline_cell_the_paper_cites_is_compared_with_the_papers_method():
    compared = {c for spec in claims.load_claims().values() for comp in spec.comparisons
                for c, _ in comp}
    cited = {c.id for c in load_cells().values() if c.is_baseline and c.tables}
    assert cited <= compared, sorted(cited - compared)
    for spec in claims.load_claims().values():
        for comp in spec.comparisons:
            cells = [load_cells()[c] for c, _ in comp]
            if any(c.is_baseline for c in cells):  # same model and setting on both sides
                assert len({(c.model, c.setting) for c in cells}) == 1, (spec.id, comp)
