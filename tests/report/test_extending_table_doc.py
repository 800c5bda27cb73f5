"""docs/extending.md's table walk-through, run: its tables.yaml entry and experiments.yaml cells,
added to a copy of the paper's registries, pass the registry check, and the table writer builds
the new table from runs of its cells, the paper's numbers beside ours and a cell not run as such."""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import qbench.paper as paper
from qbench.io import parse_yaml
from qbench.paper import recipe
from qbench.report import aggregate, tables
from qbench.report.claims import fp_cell_of, paper_value
from qbench.report.collect import collect
from qbench.workflow import plan

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "extending.md"
REGISTRY_DIR = Path(paper.__file__).parent
# every cache of what qbench.paper read from its YAML files or derived from its cells (the
# deviations' cell rules), so that neither the copy nor the real files outlive their test
CACHES = tuple(f for module in (paper, recipe) for f in vars(module).values() if hasattr(f, "cache_clear"))


def _walkthrough_blocks() -> tuple[dict, dict]:
    """The section's two YAML blocks: the tables.yaml entry and the experiments.yaml cells."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## A cell or a table"):].split("\n## ")[0]
    blocks = [parse_yaml(b, "docs/extending.md") for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    assert [list(b) for b in blocks] == [["tables"], ["cells"]], \
        "the section has a tables.yaml block (tables:) and an experiments.yaml block (cells:)"
    return blocks[0]["tables"], blocks[1]["cells"]


def _clear_caches() -> None:
    for cached in CACHES:
        cached.cache_clear()


def _install(tmp_path: Path, monkeypatch, new_tables: dict, new_cells: dict) -> Path:
    """Copies of the registries with the walk-through's entries added; qbench.paper reads them."""
    copy_dir = tmp_path / "paper"
    copy_dir.mkdir()
    for path in REGISTRY_DIR.glob("*.yaml"):
        shutil.copy(path, copy_dir / path.name)
    for name, key, added in (("tables.yaml", "tables", new_tables), ("experiments.yaml", "cells", new_cells)):
        data = parse_yaml((copy_dir / name).read_text(encoding="utf-8"), name)
        data[key].update(copy.deepcopy(added))
        (copy_dir / name).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")

    def read(name: str):
        return parse_yaml((copy_dir / name).read_text(encoding="utf-8"), name)

    monkeypatch.setattr(paper, "_read", read)
    _clear_caches()
    return copy_dir


@pytest.fixture
def registries(tmp_path, monkeypatch):
    """``install(tables, cells)``: the paper's registries with those entries added, for this test only."""
    _clear_caches()
    yield lambda new_tables, new_cells: _install(tmp_path, monkeypatch, new_tables, new_cells)
    monkeypatch.undo()  # the real _read back before the caches refill
    _clear_caches()


def _fake_train():
    spec = importlib.util.spec_from_file_location("fake_train", ROOT / "tests" / "pipeline" / "fake_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runs(wd: Path, cell_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Stand-in runs (tests/pipeline/fake_train.py, 2 seeds) of ``cell_ids`` at the smoke scale,
    through the pipeline's run configs, collection and aggregation."""
    cfg = plan.merge_scale_file({"scale": "smoke"}, ROOT / "workflows" / "config")
    cfg.update({"seeds": [0, 1], "fp_seeds": [0], "cells": {"only": cell_ids, "skip": []}})
    cfg.setdefault("cell_overrides", {})
    fake = _fake_train()
    records = []
    cells = plan.enabled_cells(cfg)
    for cell in cells:
        for seed in plan.seeds_of(cfg, cell):
            conf = wd / "configs" / f"{cell.id}_s{seed}.yaml"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(plan.dump_yaml(plan.run_config(cfg, cell, seed)))
            run = wd / "runs" / cell.id / f"s{seed}"
            assert fake.main([str(conf), "--out", str(run), "--quiet"]) == 0
            records.append(collect(run, cell.id, seed))
    runs, cells_df = aggregate.aggregate(records)
    plan_data = {"scale": "smoke", "description": "fake data", "seeds": [0, 1], "fp_seeds": [0],
                 "detection_enabled": False, "cells": [c.id for c in cells]}
    return runs, cells_df, plan_data


def test_the_docs_table_walkthrough_is_accepted_and_built(registries, tmp_path):
    new_tables, new_cells = _walkthrough_blocks()
    before_tables, before_cells = paper.table_keys(), paper.load_cells()
    assert len(new_tables) == 1, "the walk-through adds one table"
    (key, entry), = new_tables.items()
    assert key not in before_tables
    registries(new_tables, new_cells)
    paper.check_registries()
    # a cell the doc shows that exists already changes only by placements in the new table, after its own
    for cid, old in before_cells.items():
        new = paper.load_cells()[cid]
        assert new.model_copy(update={"tables": old.tables}) == old, cid
        assert new.tables[:len(old.tables)] == old.tables, cid
        assert {p.table for p in new.tables[len(old.tables):]} <= {key}, cid
    assert paper.table_keys() == (*before_tables, key)
    assert key in paper.table_names()
    placed = {(p.row, p.column): c.id for c, p in paper.cells_for_table(key)}
    assert set(placed.values()) == set(new_cells)
    assert entry["layout"] in tables.LAYOUTS, f"layout {entry['layout']!r} is no maker of LAYOUTS"

    # the runs: every cell of the table but the new one (the doc lists it last), which stays not run
    not_run = list(new_cells)[-1]
    assert [c for c in new_cells if c not in before_cells] == [not_run]
    # the doc's regeneration step: docs/recipes.md is generated from the cells, one section each
    recipes = recipe.recipes_markdown(recipe.load_scale("paper"))
    assert f"## {not_run}\n" in recipes
    assert f"## {not_run}\n" not in (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
    runs, cells_df, plan_data = _runs(tmp_path, [c for c in new_cells if c != not_run])
    written = tables.write_all(plan_data, cells_df, tmp_path / "tables", runs)
    assert {tmp_path / "tables" / f"{key}.{ext}" for ext in ("csv", "md", "tex")} <= set(written)
    _, entries, grid = tables.build(plan_data, cells_df, runs)[key]

    rows = {r["key"]: r for r in entry["rows"]}
    columns = {c["key"]: c["label"] for c in entry["columns"]}
    lines = {(line[0], line[1]): line for line in grid[1:]}
    assert len(lines) == len(entry["order"])
    metrics = entry["metrics"]
    by_key = {(e.row, e.column, e.metric): e for e in entries}
    for row_key, col in entry["order"]:
        line = lines[(rows[row_key]["label"], columns[col])]
        cid = placed[(row_key, col)]
        for i, metric in enumerate(metrics):
            printed_paper, printed_ours, delta = line[2 + 3 * i: 5 + 3 * i]
            cited = rows[row_key]["cells"][col][metric]
            assert printed_paper == tables.fmt_value(cited), (row_key, col, metric)
            e = by_key[(row_key, col, metric)]
            assert e.cell == cid
            if cid == not_run:
                assert e.mean is None and printed_ours == tables.NOT_RUN + "*"
                continue
            # ours: the mean of its runs (two seeds, so with its interval), beside the paper's
            values = runs.loc[runs.cell == cid, tables.METRIC_COLUMN[metric]]
            assert e.status == "reproduced" and e.n == len(values) == 2
            assert printed_ours.startswith(f"{e.mean:.1f} ± ") and e.half_width is not None
            assert values.min() - 0.5 <= e.mean <= values.max() + 0.5
            if metric == "top1":  # fake data: each cell's change against its own FP beside the paper's
                fp_paper = paper_value(fp_cell_of(cid))
                paper_change = "n/a" if cited is None else f"{cited - fp_paper:+.1f}"
                assert delta.endswith(f" vs {paper_change}"), (row_key, col, delta)
    md = (tmp_path / "tables" / f"{key}.md").read_text(encoding="utf-8")
    assert entry["title"] in md
    not_run_labels = [f"{rows[r]['label']} {columns[c]}" for r, c in entry["order"] if placed[(r, c)] == not_run]
    assert not_run_labels and f"not run (not in this scale's cells): {', '.join(not_run_labels)}" in md
    long = pd.read_csv(tmp_path / "tables" / "all_cells.csv")
    assert set(long.loc[long.table == key, "cell"]) == set(new_cells)


def test_a_misspelled_layout_is_refused_naming_the_table(registries):
    new_tables, new_cells = _walkthrough_blocks()
    (key, entry), = new_tables.items()
    wrong = entry["layout"][::-1]
    registries({key: {**entry, "layout": wrong}}, new_cells)
    with pytest.raises(KeyError) as info:
        tables.build({"scale": "smoke", "cells": []}, pd.DataFrame())
    assert f"{key}: layout {wrong!r} has no maker; known: {', '.join(tables.LAYOUTS)}" in str(info.value)


def test_a_placement_to_a_column_the_new_table_lacks_is_refused_naming_the_cell(registries):
    new_tables, new_cells = _walkthrough_blocks()
    (key, entry), = new_tables.items()
    cid, raw = next((c, r) for c, r in new_cells.items() if c not in paper.load_cells())
    row = entry["rows"][0]["key"]
    registries(new_tables, {**new_cells, cid: {**raw, "tables": [f"{key}:{row}:w9a9"]}})
    with pytest.raises(paper.RegistryError, match=rf"cell {cid!r}: table placement {key}:{row}:w9a9: no setting"):
        paper.check_registries()
