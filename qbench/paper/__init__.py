"""The paper's published numbers (Tables 1-8) and its experiment cells, as package data.

The files are plain YAML read with the project's safe loader (``qbench.io.parse_yaml``: no
Python tags, a key given twice is an error):

- ``tables.yaml``: every number of every table, keyed by table / row / column / metric, the
  tables of this suite that are not in the paper (``summary_tables``) and the figures the report
  draws (``table_keys``, ``table_names`` and ``figures`` are the lists the pipeline, the tables,
  the figures and the report read).
- ``experiments.yaml``: every experiment cell (model, level sets, init, sharing, start, T slope)
  once, with the table cells it fills (``table:row:column``). The pipeline expands the cells,
  the table writer reads the same file back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from qbench.models import TASKS, available_models
from qbench.quant import DEFAULT_METHOD, PAPER_WEIGHT_SETS, LevelSet, available_methods
from qbench.quant.model import SHARINGS
from qbench.quant.modules import INITS
from qbench.quant.variant import VARIANTS

CELL_FIELDS = ("task", "kind", "model", "method", "weights", "activations", "init", "sharing", "start",
               "slope", "learn_biases", "variant", "figures", "tables")
KINDS = ("fp", "quant")
STARTS = ("pretrained", "scratch")


class RegistryError(ValueError):
    """A registry file (tables, experiments, claims) is inconsistent; the message names the key."""


def _read(name: str) -> Any:
    from qbench.io import FileFormatError, parse_yaml

    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    try:
        return parse_yaml(text, name)
    except FileFormatError as e:
        raise RegistryError(str(e)) from None


@lru_cache(maxsize=None)
def _tables_cached() -> dict:
    return _read("tables.yaml")["tables"]


def load_tables() -> dict:
    """Return a deep copy of the paper's tables (``{table_key: {...}}``)."""
    return copy.deepcopy(_tables_cached())


def table_keys() -> tuple[str, ...]:
    """The paper's tables in order (``table1`` ...): every table the pipeline writes."""
    return tuple(_tables_cached())


@dataclass(frozen=True)
class SummaryTable:
    """A table of the report that is not in the paper.

    Args:
        name: file base name (``<name>.{csv,md,tex}``).
        label: what numbers it in the report (``Table A``), apart from the paper's numbers.
        title: caption title.
        after: the paper table it is printed after.
        sources: the paper tables whose models and W/A settings it covers.
    """

    name: str
    label: str
    title: str
    after: str
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        keys = tuple(_tables_cached())
        if not self.name or self.name in keys:
            raise RegistryError(f"tables.yaml: summary_tables: name {self.name!r} is empty or a paper table's key")
        for key in (self.after, *self.sources):
            if key not in keys:
                raise RegistryError(f"tables.yaml: summary_tables: {self.name}: {key!r} is not a table of the paper")


@lru_cache(maxsize=None)
def summary_tables() -> tuple[SummaryTable, ...]:
    """The report's tables that are not in the paper (``tables.yaml``, ``summary_tables:``)."""
    return tuple(SummaryTable(t["name"], str(t["label"]), t["title"], t["after"], tuple(t["sources"]))
                 for t in _read("tables.yaml").get("summary_tables", []))


def table_names() -> tuple[str, ...]:
    """Every table file the pipeline writes, in the report's order: the paper's tables, each
    summary table right after the paper table it follows."""
    names: list[str] = []
    for key in table_keys():
        names.append(key)
        names += [t.name for t in summary_tables() if t.after == key]
    return tuple(names)


@dataclass(frozen=True)
class Figure:
    """A figure of the report.

    Args:
        name: file base name (``<name>.pdf``).
        number: the paper's figure number; None for a figure that is not in the paper.
        tag: the ``figures:`` tag of the experiment cells it draws from; None when it needs none.
    """

    name: str
    number: int | None
    tag: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise RegistryError(f"tables.yaml: figures: a figure needs a name, got {self.name!r}")
        if self.number is not None and (not isinstance(self.number, int) or self.number < 1):
            raise RegistryError(f"tables.yaml: figures: {self.name}: number must be null or >= 1")


@lru_cache(maxsize=None)
def figures() -> tuple[Figure, ...]:
    """The report's figures in order (``tables.yaml``, ``figures:``)."""
    return tuple(Figure(f["name"], f.get("number"), f.get("tag")) for f in _read("tables.yaml")["figures"])


def figure_names() -> tuple[str, ...]:
    """File base names of the report's figures, in order."""
    return tuple(f.name for f in figures())


@dataclass(frozen=True)
class Placement:
    """Where a cell's result goes: a table, a row and (except Table 8's ratio rows) a column.

    Args:
        table: table key, e.g. ``table1``.
        row: row key in that table (``ours``, ``linear``, ``fp``, ...).
        column: column key (``w2a32`` ...); for Table 8 the column and the row is free.
    """

    table: str
    row: str | None
    column: str

    @classmethod
    def parse(cls, text: str) -> "Placement":
        """Parse ``table:row:column`` or, for Table 8, ``table:column``."""
        parts = text.split(":")
        if len(parts) == 3:
            return cls(parts[0], parts[1], parts[2])
        if len(parts) == 2:
            return cls(parts[0], None, parts[1])
        raise ValueError(f"table placement {text!r} is not 'table:row:column' or 'table:column'")


@dataclass(frozen=True)
class Cell:
    """One experiment of the paper (trained once per seed, whatever number of tables use it).

    Args:
        id: unique name, used in file names.
        model: architecture name understood by ``qbench train`` (``model.arch``).
        kind: ``fp`` (full precision) or ``quant``.
        task: ``classify`` or ``detect``.
        method: the quantization method (``qbench.quant.available_methods()``): ``qn`` for the
            paper's, a baseline's name for a cell that reruns it under the same recipe.
        weights: weight level-set name, or None for 32-bit weights.
        activations: activation level-set name, or None for 32-bit activations.
        init: ``kmeans`` or ``linear`` bias initialisation.
        sharing: ``layerwise`` or ``shared`` quantizer parameters.
        start: ``pretrained`` (fine-tune the FP cell of the same model) or ``scratch``.
        slope: temperature slope k of T = k * epoch.
        learn_biases: the biases b_i train with the network (Sec. 4.3 ablation) instead of
            staying fixed after initialisation.
        variant: ``paper`` (the paper's quantization function) or ``released`` (the authors'
            released code's choices, qbench.quant.variant; beyond-paper cells only). Single
            choices go through ``cell_overrides.<cell>.quant.options.variant``.
        tables: the table cells it fills.
        figures: figure tags (``fig3``, ``fig4``, ``fig5``) that read its runs.
    """

    id: str
    model: str
    kind: str = "quant"
    task: str = "classify"
    method: str = DEFAULT_METHOD
    weights: str | None = None
    activations: str | None = None
    init: str = "kmeans"
    sharing: str = "layerwise"
    start: str = "pretrained"
    slope: float = 5.0
    learn_biases: bool = False
    variant: str = "paper"
    tables: tuple[Placement, ...] = field(default_factory=tuple)
    figures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def wa_label(self) -> str:
        """The paper's W/A notation, e.g. ``3(±4)/32``."""
        return f"{bits_label(self.weights)}/{bits_label(self.activations)}"

    @property
    def is_baseline(self) -> bool:
        """A quantized cell of another method than the paper's."""
        return self.method != DEFAULT_METHOD

    @property
    def method_options(self) -> dict:
        """The options of its method the cell sets (``quant.options`` of its run config): the
        paper's method's ablation fields init, sharing, learn_biases and variant; none for a
        baseline's cell, whose options are its method's defaults."""
        if self.is_baseline:
            return {}
        return {"init": self.init, "sharing": self.sharing, "learn_biases": self.learn_biases,
                "variant": self.variant}

    @property
    def setting(self) -> str:
        """The W/A column key of Tables 1-4 this cell belongs to (``w2a32``, ``w3pm4a32`` ...):
        its first wide-table placement, else ``w<bits>a<bits>`` from its level sets."""
        for place in self.tables:
            if place.row is not None and _tables_cached()[place.table].get("layout") == "wide":
                return place.column
        return f"w{_bits_key(self.weights)}a{_bits_key(self.activations)}"


def _bits_key(level_set: str | None) -> str:
    if level_set is None:
        return "32"
    if level_set in ("3bit_pm2", "3bit_pm4"):
        return level_set.replace("bit_", "")
    return str(LevelSet.from_name(level_set).bits)


def bits_label(level_set: str | None) -> str:
    """The paper's bit-width label of a level-set name (``act_linear8`` -> ``8``): its bits, and
    where the paper has two weight sets of that width (3(±2), 3(±4)) the largest level too.

    Args:
        level_set: a qbench.quant level-set name or None (32 bit).
    """
    if level_set is None:
        return "32"
    levels = LevelSet.from_name(level_set)
    same_width = [n for n in PAPER_WEIGHT_SETS if LevelSet.from_name(n).bits == levels.bits]
    if level_set in same_width and len(same_width) > 1:
        return f"{levels.bits}(±{max(levels.values):g})"
    return str(levels.bits)


def _check_cell(cid: str, raw: dict) -> None:
    unknown = set(raw) - set(CELL_FIELDS)
    if unknown:
        raise RegistryError(f"experiments.yaml: cell {cid!r} has unknown key(s) {sorted(unknown)}")
    if "model" not in raw:
        raise RegistryError(f"experiments.yaml: cell {cid!r} lacks 'model'")
    if not isinstance(raw.get("learn_biases", False), bool):
        raise RegistryError(f"experiments.yaml: cell {cid!r}: learn_biases must be true or false")
    if raw.get("variant", "paper") not in VARIANTS:
        raise RegistryError(f"experiments.yaml: cell {cid!r}: variant={raw['variant']!r} not in {VARIANTS}")
    if raw.get("variant", "paper") != "paper" and (raw.get("method", DEFAULT_METHOD) != DEFAULT_METHOD
                                                   or raw["kind"] != "quant"):
        raise RegistryError(f"experiments.yaml: cell {cid!r}: variant is an option of the "
                            f"{DEFAULT_METHOD!r} method's quantized cells")
    if raw.get("variant", "paper") != "paper" and raw.get("tables"):
        raise RegistryError(f"experiments.yaml: cell {cid!r}: a variant={raw['variant']!r} cell is no "
                            "result of the paper and fills no table")
    for key, allowed in (("kind", KINDS), ("init", INITS), ("sharing", SHARINGS), ("start", STARTS),
                         ("task", TASKS)):
        if raw[key] not in allowed:
            raise RegistryError(f"experiments.yaml: cell {cid!r}: {key}={raw[key]!r} not in {allowed}")
    if raw.get("method", DEFAULT_METHOD) not in available_methods():
        raise RegistryError(f"experiments.yaml: cell {cid!r}: method={raw['method']!r} not in "
                         f"{available_methods()} (qbench.quant.methods)")
    if raw.get("method", DEFAULT_METHOD) != DEFAULT_METHOD and raw["kind"] != "quant":
        raise RegistryError(f"experiments.yaml: cell {cid!r}: a method other than "
                         f"{DEFAULT_METHOD!r} needs kind: quant")
    if raw["model"] not in available_models(raw["task"]):
        raise RegistryError(f"experiments.yaml: cell {cid!r}: model={raw['model']!r} not in "
                         f"{available_models(raw['task'])} (qbench.models)")
    tags = {f.tag for f in figures() if f.tag}
    for tag in raw.get("figures", []):
        if tag not in tags:
            raise RegistryError(f"experiments.yaml: cell {cid!r}: figure tag {tag!r} not in {sorted(tags)} "
                             "(tables.yaml, figures:)")


def _check_placement(cid: str, place: "Placement") -> None:
    """The table, row and column a cell fills exist in tables.yaml (a typo would show the cell
    as "not run" in its table while its runs go nowhere)."""
    tables = _tables_cached()
    where = f"experiments.yaml: cell {cid!r}: table placement"
    if place.table not in tables:
        raise RegistryError(f"{where} {place.table!r}: no such table; known: {', '.join(tables)}")
    table = tables[place.table]
    columns = [c["key"] for c in table.get("columns", [])]
    if place.row is not None:
        rows = [r["key"] for r in table.get("rows", [])]
        if place.row not in rows:
            raise RegistryError(f"{where} {place.table}:{place.row}: no row {place.row!r} in "
                                f"{place.table}; known: {', '.join(rows)}")
    if place.column not in columns:
        raise RegistryError(f"{where} {place.table}:{place.row + ':' if place.row else ''}{place.column}: "
                            f"no setting {place.column!r} in {place.table}; known: {', '.join(columns)}")


@lru_cache(maxsize=None)
def _cells_cached() -> tuple[Cell, ...]:
    data = _read("experiments.yaml")
    defaults = data.get("defaults", {})
    cells = []
    for cid, raw in data["cells"].items():
        merged = {**defaults, **raw}
        _check_cell(cid, merged)
        try:
            merged["tables"] = tuple(Placement.parse(t) for t in merged.get("tables", []))
        except ValueError as e:
            raise RegistryError(f"experiments.yaml: cell {cid!r}: {e}") from None
        for place in merged["tables"]:
            _check_placement(cid, place)
        merged["figures"] = tuple(merged.get("figures", []))
        merged["slope"] = float(merged.get("slope", 5.0))
        cells.append(Cell(id=cid, **merged))
    return tuple(cells)


def load_cells() -> dict[str, Cell]:
    """All experiment cells, in file order, keyed by id."""
    return {c.id: c for c in _cells_cached()}


def fp_cell_of(model: str) -> Cell:
    """The full-precision cell of ``model`` (what pretrained cells of that model start from).

    Args:
        model: architecture name.
    """
    for cell in _cells_cached():
        if cell.kind == "fp" and cell.model == model:
            return cell
    raise KeyError(f"no full-precision cell for model {model!r} in experiments.yaml")


def cells_for_table(table: str) -> list[tuple[Cell, Placement]]:
    """The cells that fill ``table``, each with its placement.

    Args:
        table: table key, e.g. ``table5``.
    """
    return [(c, p) for c in _cells_cached() for p in c.tables if p.table == table]


def cells_for_figure(tag: str) -> list[Cell]:
    """The cells tagged with figure ``tag``.

    Args:
        tag: a figure's ``tag`` (``figures()``).
    """
    return [c for c in _cells_cached() if tag in c.figures]


# what a cell rule (deviations.yaml ``cells: {key: value or [values]}``) may test: the cell's own
# fields, and "quantizes" (weights / activations), "baseline" (a method other than the paper's),
# "tables" (a table it fills), "figures" (a figure tag), "level_counts_differ" (its quantizers take
# another number of levels than the paper's at the same level-set names)
CELL_RULE_FIELDS = ("model", "kind", "task", "method", "init", "sharing", "start", "variant", "learn_biases", "slope")
CELL_RULE_KEYS = CELL_RULE_FIELDS + ("quantizes", "baseline", "tables", "figures", "level_counts_differ")


def _rule_facts(cell: Cell, key: str) -> set:
    """The values ``cell`` has for a rule key (a rule value matches when it is one of them)."""
    if key in CELL_RULE_FIELDS:
        return {getattr(cell, key)}
    if key == "quantizes":
        return {k for k in ("weights", "activations") if getattr(cell, k) is not None}
    if key == "baseline":
        return {cell.is_baseline}
    if key == "tables":
        return {p.table for p in cell.tables}
    if key == "figures":
        return set(cell.figures)
    from qbench.quant.methods.baselines import level_label  # level_counts_differ: "" for the paper's method

    return {bool(level_label(cell.method, cell.weights, cell.activations))}


def select_cells(rule: dict, where: str) -> list[Cell]:
    """The cells matching every key of ``rule`` (a value, or a list of alternatives).

    Args:
        rule: ``{key: value or [values]}`` over ``CELL_RULE_KEYS``.
        where: what holds the rule, named in the error (e.g. ``deviations.yaml: entry 'x': cells``).

    Raises:
        RegistryError naming ``where`` and the key: an unknown key, or a rule no cell matches.
    """
    if not isinstance(rule, dict) or not rule:
        raise RegistryError(f"{where}: must be a list of cell ids or a non-empty mapping of {CELL_RULE_KEYS}")
    unknown = sorted(set(rule) - set(CELL_RULE_KEYS))
    if unknown:
        raise RegistryError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(CELL_RULE_KEYS)}")
    wanted = {k: set(v) if isinstance(v, list) else {v} for k, v in rule.items()}
    chosen = [c for c in _cells_cached() if all(_rule_facts(c, k) & wanted[k] for k in wanted)]
    if not chosen:
        raise RegistryError(f"{where}: no cell of experiments.yaml matches {rule}")
    return chosen


# the tests of the claims engine (qbench.report.claims reads this list): interval tests over
# comparisons, `gap_closes` and `trains` over cells, `not_testable` with a reason only
CLAIM_TESTS = ("superiority", "noninferiority", "nonsuperiority", "equivalence", "gap_closes", "trains",
               "not_testable")


def _positive_margin(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise RegistryError(f"claims.yaml: {key}: a margin must be a finite number > 0, got {value!r}")
    return float(value)


def check_claims(data: Any) -> None:
    """The structure of claims.yaml: margins finite and positive, every claim's test known, its
    comparisons of existing cells with finite non-zero weights, no cell compared with itself.
    Keys this check does not know (``quote``, ``section``, ``kind`` ...) are left alone.

    Args:
        data: the parsed claims.yaml.

    Raises:
        RegistryError: naming the key.
    """
    if not isinstance(data, dict) or not isinstance(data.get("claims"), dict):
        raise RegistryError("claims.yaml: needs a 'claims' mapping")
    margins = data.get("margins") or {}
    if not isinstance(margins, dict):
        raise RegistryError("claims.yaml: margins: must be a mapping of name -> number")
    for name, value in margins.items():
        _positive_margin(value, f"margins.{name}")
    cells = load_cells()
    for cid, raw in data["claims"].items():
        key = f"claims.{cid}"
        if not isinstance(raw, dict):
            raise RegistryError(f"claims.yaml: {key}: must be a mapping")
        if raw.get("test") not in CLAIM_TESTS:
            raise RegistryError(f"claims.yaml: {key}.test: {raw.get('test')!r} not in {CLAIM_TESTS}")
        if "margin" in raw:
            _positive_margin(raw["margin"], f"{key}.margin")
        if raw["test"] == "gap_closes" and raw.get("cell") not in cells:
            raise RegistryError(f"claims.yaml: {key}.cell: unknown cell {raw.get('cell')!r}")
        if raw["test"] == "trains":
            listed = raw.get("cells")
            if not isinstance(listed, list) or not listed:
                raise RegistryError(f"claims.yaml: {key}.cells: must be a non-empty list of cells")
            for cell in listed:
                if cell not in cells:
                    raise RegistryError(f"claims.yaml: {key}.cells: unknown cell {cell!r}")
        if raw["test"] == "not_testable" and not (isinstance(raw.get("reason"), str) and raw["reason"].strip()):
            raise RegistryError(f"claims.yaml: {key}.reason: a claim not testable here needs its reason")
        comps = raw.get("comparisons") or []
        if not isinstance(comps, list):
            raise RegistryError(f"claims.yaml: {key}.comparisons: must be a list")
        if raw["test"] in ("superiority", "noninferiority", "nonsuperiority", "equivalence") and not comps:
            raise RegistryError(f"claims.yaml: {key}: has no comparisons")
        for i, comp in enumerate(comps):
            at = f"{key}.comparisons[{i}]"
            if isinstance(comp, list):
                if len(comp) != 2:
                    raise RegistryError(f"claims.yaml: {at}: must be [a, b] or {{cell: weight}}")
                if comp[0] == comp[1]:
                    raise RegistryError(f"claims.yaml: {at}: compares {comp[0]!r} with itself")
                comp = {comp[0]: 1.0, comp[1]: -1.0}
            if not isinstance(comp, dict) or len(comp) < 2:
                raise RegistryError(f"claims.yaml: {at}: must be [a, b] or {{cell: weight}} of two or "
                                    "more cells")
            for cell, weight in comp.items():
                if cell not in cells:
                    raise RegistryError(f"claims.yaml: {at}: unknown cell {cell!r}")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                        or not math.isfinite(weight) or weight == 0:
                    raise RegistryError(f"claims.yaml: {at}: weight of {cell!r} must be a finite "
                                        f"non-zero number, got {weight!r}")


def check_registries() -> None:
    """Read and check every registry (tables, experiments with their placements, claims), as
    the pipeline does at planning time.

    Raises:
        RegistryError: naming the file and key.
    """
    _tables_cached()
    _cells_cached()
    check_claims(_read("claims.yaml"))


__all__ = ["CLAIM_TESTS", "RegistryError", "check_claims", "check_registries", "Cell", "Figure", "Placement", "SummaryTable", "bits_label", "cells_for_figure", "cells_for_table",
           "figure_names", "figures", "fp_cell_of", "load_cells", "load_tables", "summary_tables", "table_keys",
           "table_names"]
