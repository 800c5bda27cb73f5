"""The paper registry: every table complete, spot values, every experiment cell consistent."""

import pytest

from qbench.paper import Placement, cells_for_table, fp_cell_of, load_cells, load_tables
from qbench.quant import LevelSet
from qbench.report.tables import LAYOUTS

EXPECTED_SHAPE = {  # table -> (number of rows, number of columns) as printed in the paper
    "table1": (11, 7), "table2": (12, 9), "table3": (6, 6), "table4": (3, 4),
    "table5": (2, 2), "table6": (2, 1), "table7": (2, 1), "table8": (2, 3),
}


def test_every_table_present_with_its_shape():
    tables = load_tables()
    assert sorted(tables) == [f"table{i}" for i in range(1, 9)]
    for key, (n_rows, n_cols) in EXPECTED_SHAPE.items():
        t = tables[key]
        assert len(t["rows"]) == n_rows, key
        assert len(t["columns"]) == n_cols, key
        assert t["layout"] in LAYOUTS


def test_every_cell_of_every_table_is_present():
    """Each row lists every column (null where the paper prints '-'), each value every metric."""
    for key, t in load_tables().items():
        col_keys = [c["key"] for c in t["columns"]]
        assert len(set(col_keys)) == len(col_keys)
        row_keys = [r["key"] for r in t["rows"]]
        assert len(set(row_keys)) == len(row_keys)
        for row in t["rows"]:
            assert list(row["cells"]) == col_keys, (key, row["key"])
            for value in row["cells"].values():
                if value is not None:
                    assert sorted(value) == sorted(t["metrics"]), (key, row["key"])
                    assert any(v is not None for v in value.values())
        if t["layout"] == "long":
            assert sorted(map(tuple, t["order"])) == sorted(
                (r["key"], c) for r in t["rows"] for c, v in r["cells"].items() if v is not None)


@pytest.mark.parametrize("table,row,col,metric,value", [
    ("table1", "ours", "w2a32", "top1", 60.9),
    ("table1", "ours", "w1a1", "top5", 72.5),
    ("table1", "fp", "w32a32", "top1", 61.8),
    ("table1", "binaryconnect", "w1a1", "top5", 50.42),
    ("table1", "dorefa", "w1a1", "top5", None),
    ("table1", "lqnet", "w1a2", "top1", 55.7),
    ("table2", "ours", "w32a2", "top1", 65.7),
    ("table2", "inq", "w5a32", "top5", 89.1),
    ("table2", "fp", "w32a32", "top5", 89.5),
    ("table2", "iclr18", "w32a2", "top1", 64.3),
    ("table3", "ours", "w3pm4a32", "top1", 76.2),
    ("table3", "twn", "w2a32", "top1", 72.5),
    ("table4", "ours", "w3pm4a8", "map", 76.1),
    ("table4", "admm", "w3pm4a32", "map", 77.6),
    ("table4", "fp", "w32a32", "map", 77.8),
    ("table5", "linear", "w3pm4a32", "top1", 60.7),
    ("table6", "shared", "w2a32", "top5", 82.4),
    ("table7", "scratch", "w3pm4a32", "top1", 55.3),
    ("table8", "time", "ternary", "ratio", 1.4),
    ("table8", "space", "fp", "ratio", 32.0),
])
def test_spot_values(table, row, col, metric, value):
    rows = {r["key"]: r for r in load_tables()[table]["rows"]}
    assert rows[row]["cells"][col][metric] == value


def test_missing_entries_are_null():
    rows = {r["key"]: r for r in load_tables()["table1"]["rows"]}
    assert rows["twn"]["cells"]["w1a32"] is None
    assert rows["ours"]["cells"]["w32a32"] is None


def test_every_reproducible_cell_has_exactly_one_experiment():
    tables = load_tables()
    for key, t in tables.items():
        placed = {}
        for cell, p in cells_for_table(key):
            assert (p.row, p.column) not in placed, (key, p)
            placed[(p.row, p.column)] = cell.id
        for row in t["rows"]:
            for col, value in row["cells"].items():
                wanted = row.get("ours") and value is not None
                if t["layout"] == "ratio":
                    assert {p[1] for p in placed} == {c["key"] for c in t["columns"]}
                    continue
                if row.get("ours") or (row["key"], col) not in placed:
                    assert ((row["key"], col) in placed) == bool(wanted), (key, row["key"], col)
                else:  # a cited method's number, rerun here by a cell of that method
                    assert value is not None, (key, row["key"], col)
                    assert load_cells()[placed[(row["key"], col)]].method == row["key"], (key, row["key"], col)


def test_placements_point_at_ours_rows_or_the_cited_row_of_their_method():
    tables = load_tables()
    for cell in load_cells().values():
        for p in cell.tables:
            t = tables[p.table]
            assert p.column in [c["key"] for c in t["columns"]]
            if p.row is not None:
                row = {r["key"]: r for r in t["rows"]}[p.row]
                if cell.is_baseline:
                    assert not row.get("ours") and row["key"] == cell.method, (cell.id, p)
                else:
                    assert row.get("ours"), (cell.id, p)


def test_cells_match_their_columns():
    """A cell's level sets agree with the W/A label of every column it fills."""
    for cell in load_cells().values():
        for p in cell.tables:
            if p.table == "table8":
                continue
            label = {c["key"]: c["label"] for c in load_tables()[p.table]["columns"]}[p.column]
            if cell.is_baseline:  # the method's own b-bit quantizer: the bit widths agree
                from qbench.quant.methods.baselines import bits_of

                bits = [bits_of(cell.weights, "weights"), bits_of(cell.activations, "activations")]
                assert [None if b == "32" else int(b[0]) for b in label.split("/")] == bits, (cell.id, label)
                assert cell.setting == p.column
                continue
            assert label == cell.wa_label, (cell.id, p, label)


def test_level_sets_are_valid_for_their_role():
    for cell in load_cells().values():
        if cell.weights:
            assert LevelSet.from_name(cell.weights).zero_centered, cell.id
        if cell.activations:
            levels = LevelSet.from_name(cell.activations)
            assert not levels.zero_centered and min(levels.values) >= 0, cell.id


def test_shared_cell_trained_once():
    cell = load_cells()["alexnet_w2a32"]
    assert {p.table for p in cell.tables} == {"table1", "table5", "table6"}
    ids = [c.id for c in load_cells().values() if (c.method, c.model, c.weights, c.activations, c.init, c.sharing,
                                                   c.start, c.slope, c.variant) == ("qn", "alexnet_bn", "ternary", None,
                                                                                    "kmeans", "layerwise", "pretrained",
                                                                                    10.0, "paper")]
    assert ids == ["alexnet_w2a32"]


def test_recipe_fields():
    cells = load_cells()
    assert cells["alexnet_w1a32"].slope == 10 and cells["resnet18_w1a32"].slope == 5
    assert cells["alexnet_w2a32_linear"].init == "linear"
    assert cells["alexnet_w2a32_shared"].sharing == "shared"
    assert cells["resnet18_w3pm4a32_scratch"].start == "scratch"
    assert sorted(c.slope for c in cells.values() if "fig5" in c.figures) == [5, 10, 20]
    assert {c.id for c in cells.values() if c.task == "detect"} == {"ssd_fp", "ssd_w2a32", "ssd_w3pm4a32",
                                                                   "ssd_w3pm4a8"}
    assert fp_cell_of("resnet18").id == "resnet18_fp"


def test_placement_parse():
    assert Placement.parse("table1:ours:w2a32") == Placement("table1", "ours", "w2a32")
    assert Placement.parse("table8:binary") == Placement("table8", None, "binary")
    with pytest.raises(ValueError):
        Placement.parse("table1")


def test_table_and_figure_lists_come_from_the_registry():
    """The pipeline, the report and the figure writer list tables and figures from tables.yaml."""
    from qbench.paper import figure_names, figures, summary_tables, table_keys, table_names
    from qbench.report import figures as figure_writer
    from qbench.report import tables as table_writer
    from qbench.report import latex

    assert table_keys() == tuple(f"table{i}" for i in range(1, 9))
    # the suite's own tables are written beside the paper's, each after the paper table it follows
    assert table_names() == ("table1", "table2", "table3", "methods_one_recipe", "table4", "table5", "table6",
                             "table7", "released_variant", "table8")
    assert [(t.name, t.label, t.sources) for t in summary_tables()] == [
        ("methods_one_recipe", "A", ("table1", "table2", "table3")),
        ("released_variant", "B", ("table1", "table2"))]
    assert set(table_writer.SUMMARY_TABLE_MAKERS) == {t.name for t in summary_tables()}
    assert figure_names() == ("fig2_quant_function", "fig3_weight_hist", "fig4_soft_hard_gap",
                              "fig5_temperature", "summary_paper_vs_repro")
    assert set(figure_writer.FIGURE_MAKERS) == set(figure_names())
    assert latex.FIGURE_NUMBERS == {"fig2_quant_function": 2, "fig3_weight_hist": 3, "fig4_soft_hard_gap": 4,
                                    "fig5_temperature": 5}
    # every cell's figure tag names a registered figure
    tags = {f.tag for f in figures() if f.tag}
    assert {t for c in load_cells().values() for t in c.figures} == tags


def test_bits_labels_follow_the_level_sets():
    from qbench.paper import bits_label

    labels = {name: bits_label(name) for name in (None, "binary", "ternary", "3bit_pm2", "3bit_pm4", "5bit",
                                                  "act_binary", "act_2bit", "act_linear8", "pow2_3")}
    assert labels == {None: "32", "binary": "1", "ternary": "2", "3bit_pm2": "3(±2)", "3bit_pm4": "3(±4)",
                      "5bit": "5", "act_binary": "1", "act_2bit": "2", "act_linear8": "8", "pow2_3": "3"}


def test_a_cell_names_a_model_of_its_task():
    with pytest.raises(ValueError, match="model='resnet18' not in \\('ssd300_vgg16',\\)"):
        from qbench.paper import _check_cell

        _check_cell("x", {"task": "detect", "kind": "quant", "model": "resnet18", "init": "kmeans",
                          "sharing": "layerwise", "start": "pretrained"})


def test_variant_cells_are_quantized_qn_cells_outside_the_papers_tables():
    from qbench.paper import RegistryError, _check_cell

    cells = load_cells()
    released = sorted(c.id for c in cells.values() if c.variant != "paper")
    assert released == ["alexnet_w1a1_released", "alexnet_w2a32_released", "resnet18_w1a2_released",
                        "resnet18_w1a32_released"]
    for cid in released:
        cell, paper = cells[cid], cells[cid.removesuffix("_released")]
        assert cell.variant == "released" and not cell.is_baseline and not cell.tables and not cell.figures
        assert (cell.model, cell.weights, cell.activations, cell.slope, cell.init, cell.sharing, cell.start) == \
            (paper.model, paper.weights, paper.activations, paper.slope, paper.init, paper.sharing, paper.start)
    base = {"task": "classify", "kind": "quant", "model": "resnet18", "init": "kmeans", "sharing": "layerwise",
            "start": "pretrained"}
    _check_cell("x", {**base, "variant": "released"})
    for raw, match in [({"variant": "relased"}, r"cells\.x\.variant: variant='relased' not in \('paper', 'released'\)"),
                       ({"variant": "released", "method": "lsq"}, r"cells\.x\.variant: variant is an option of the 'qn' method"),
                       ({"variant": "released", "kind": "fp"}, r"cells\.x\.variant: variant is an option of the 'qn' method"),
                       ({"variant": "released", "tables": ["table2:ours:w1a32"]}, r"cells\.x\.tables: .*fills no table")]:
        with pytest.raises(RegistryError, match=match):
            _check_cell("x", {**base, **raw})
