"""The paper's published numbers (Tables 1-8) and its experiment cells, as package data.

The files are plain YAML read with the project's safe loader (``qbench.io.parse_yaml``: no
Python tags, a key given twice is an error):

- ``tables.yaml``: every number of every table, keyed by table / row / column / metric, the
  tables of this suite that are not in the paper (``summary_tables``) and the figures the report
  draws (``table_keys``, ``table_names`` and ``figures`` are the lists the pipeline, the tables,
  the figures and the report read).
- ``experiments.yaml``: every experiment cell (model, level sets, init, sharing, start, T slope)
  once, with the table cells it fills (``table:row:column``), each validated by the pydantic
  model ``Cell``. The pipeline expands the cells, the table writer reads the same file back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, ValidationError,
                      ValidationInfo, WithJsonSchema, field_validator)

from qbench.models import TASKS, available_models
from qbench.quant import DEFAULT_METHOD, PAPER_WEIGHT_SETS, LevelSet, available_methods
from qbench.quant.model import SHARINGS
from qbench.quant.modules import INITS
from qbench.quant.variant import VARIANTS

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


def _one_of(key: str, allowed: tuple[str, ...]) -> Any:
    """A string field that takes one of a registry's names; the JSON schema lists them."""

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{key}={value!r} not in {allowed}")
        return value

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": list(allowed)})]


def _level_set(role: str) -> Any:
    """A level-set name (``qbench.quant.LevelSet.from_name``) fit for its role, or None (32 bit)."""

    def check(name: str | None) -> str | None:
        if name is None:
            return None
        levels = LevelSet.from_name(name)  # its ValueError names the known sets
        if role == "weights" and not levels.zero_centered:
            raise ValueError(f"{name!r} is an activation level set, not a weight one (zero-centred)")
        if role == "activations" and min(levels.values) < 0:
            raise ValueError(f"{name!r} is a weight level set, not an activation one (levels >= 0)")
        return name

    return Annotated[str | None, AfterValidator(check)]


def _strict_bool(value: Any) -> bool:
    # YAML's true/false only: "yes" or 1 would hide a typo
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _placement(value: Any) -> Placement:
    if isinstance(value, Placement):
        return value
    if not isinstance(value, str):
        raise ValueError(f"table placement {value!r} is not 'table:row:column' or 'table:column'")
    return Placement.parse(value)


_PlacementField = Annotated[Placement, PlainValidator(_placement),
                            WithJsonSchema({"type": "string", "description": "table:row:column (table8: table:column)"})]


class Cell(BaseModel):
    """One experiment of the paper (trained once per seed, whatever number of tables use it).

    A frozen pydantic model: experiments.yaml's entries are validated by it (unknown keys
    refused, every value checked against the registry it names), and ``model_json_schema()``
    describes the file's cell fields. Copy with ``cell.model_copy(update={...})``.

    Args:
        id: unique name, used in file names.
        task: ``classify`` or ``detect``.
        kind: ``fp`` (full precision) or ``quant``.
        model: architecture name understood by ``qbench train`` (``model.arch``), one of
            ``qbench.models.available_models(task)``.
        method: the quantization method (``qbench.quant.available_methods()``): ``qn`` for the
            paper's, a baseline's name for a cell that reruns it under the same recipe (kind quant).
        weights: weight level-set name, or None for 32-bit weights.
        activations: activation level-set name, or None for 32-bit activations.
        init: ``kmeans`` or ``linear`` bias initialisation.
        sharing: ``layerwise`` or ``shared`` quantizer parameters.
        start: ``pretrained`` (fine-tune the FP cell of the same model) or ``scratch``.
        slope: temperature slope k of T = k * epoch.
        learn_biases: the biases b_i train with the network (Sec. 4.3 ablation) instead of
            staying fixed after initialisation.
        variant: ``paper`` (the paper's quantization function) or ``released`` (the authors'
            released code's choices, qbench.quant.variant; quantized ``qn`` cells outside the
            paper's tables only). Single choices go through
            ``cell_overrides.<cell>.quant.options.variant``.
        figures: figure tags (``fig3``, ``fig4``, ``fig5``) that read its runs.
        tables: the table cells it fills.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # cross-field rules read earlier fields (ValidationInfo.data): keep task before model, kind
    # before method, both before variant, variant before tables
    id: str
    task: _one_of("task", TASKS) = "classify"
    kind: _one_of("kind", KINDS) = "quant"
    model: str
    method: str = DEFAULT_METHOD
    weights: _level_set("weights") = None
    activations: _level_set("activations") = None
    init: _one_of("init", INITS) = "kmeans"
    sharing: _one_of("sharing", SHARINGS) = "layerwise"
    start: _one_of("start", STARTS) = "pretrained"
    slope: float = 5.0
    learn_biases: Annotated[bool, PlainValidator(_strict_bool), WithJsonSchema({"type": "boolean"})] = False
    variant: _one_of("variant", VARIANTS) = "paper"
    figures: tuple[str, ...] = ()
    tables: tuple[_PlacementField, ...] = ()

    @field_validator("model")
    @classmethod
    def _model_of_task(cls, value: str, info: ValidationInfo) -> str:
        task = info.data.get("task")
        if task is not None and value not in available_models(task):
            raise ValueError(f"model={value!r} not in {available_models(task)} (qbench.models)")
        return value

    @field_validator("method")
    @classmethod
    def _registered_method(cls, value: str, info: ValidationInfo) -> str:
        if value not in available_methods():
            raise ValueError(f"method={value!r} not in {available_methods()} (qbench.quant.methods)")
        if value != DEFAULT_METHOD and info.data.get("kind", "quant") != "quant":
            raise ValueError(f"a method other than {DEFAULT_METHOD!r} needs kind: quant")
        return value

    @field_validator("variant")
    @classmethod
    def _variant_of_qn(cls, value: str, info: ValidationInfo) -> str:
        if value != "paper" and (info.data.get("method", DEFAULT_METHOD) != DEFAULT_METHOD
                                 or info.data.get("kind", "quant") != "quant"):
            raise ValueError(f"variant is an option of the {DEFAULT_METHOD!r} method's quantized cells")
        return value

    @field_validator("tables")
    @classmethod
    def _no_table_for_a_variant(cls, value: tuple, info: ValidationInfo) -> tuple:
        # a cell whose variant failed its own check is not held to this rule
        variant = info.data.get("variant", "paper")
        if variant != "paper" and value:
            raise ValueError(f"a variant={variant!r} cell is no result of the paper and fills no table")
        return value

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


# the keys of an experiments.yaml cell (its id is the key it stands under)
CELL_FIELDS = tuple(name for name in Cell.model_fields if name != "id")


def error_lines(file: str, prefix: str, error: ValidationError) -> str:
    """A pydantic error as the registry's message: one line per error, ``file: key: what``, the
    key dotted from the error's location (``cells.alexnet_w2a32.weights``, ``...tables[0]``).

    Args:
        file: the registry file named first (``experiments.yaml``).
        prefix: the dotted key of the validated entry (``cells.alexnet_w2a32``).
        error: what ``model_validate`` raised.
    """
    lines = []
    for e in error.errors(include_url=False):
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
        key = (prefix + key).lstrip(".") or "(the file)"
        if e["type"] == "value_error":
            what = str(e["ctx"]["error"])  # the validator's own words, without pydantic's prefix
        elif e["type"] == "extra_forbidden":
            what = "unknown key"
        elif e["type"] == "missing":
            what = "required key missing"
        else:
            what = f"{e['msg']}, got {e['input']!r}"
        lines.append(f"{file}: {key}: {what}")
    return "\n".join(lines)


def _check_cell(cid: str, raw: dict) -> Cell:
    """The cell ``cid`` of experiments.yaml (defaults merged in), validated.

    Raises:
        RegistryError: a line per error, naming ``cells.<cid>.<key>``.
    """
    if "id" in raw:
        raise RegistryError(f"experiments.yaml: cells.{cid}.id: unknown key (a cell's id is its key)")
    try:
        return Cell.model_validate({"id": cid, **raw})
    except ValidationError as e:
        raise RegistryError(error_lines("experiments.yaml", f"cells.{cid}", e)) from None


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


def _check_links(cell: Cell) -> None:
    """What a cell names in tables.yaml exists: its figure tags and its placements."""
    tags = {f.tag for f in figures() if f.tag}
    for tag in cell.figures:
        if tag not in tags:
            raise RegistryError(f"experiments.yaml: cell {cell.id!r}: figure tag {tag!r} not in {sorted(tags)} "
                                "(tables.yaml, figures:)")
    for place in cell.tables:
        _check_placement(cell.id, place)


@lru_cache(maxsize=None)
def _cells_cached() -> tuple[Cell, ...]:
    data = _read("experiments.yaml")
    defaults = data.get("defaults", {})
    cells = []
    for cid, raw in data["cells"].items():
        cell = _check_cell(cid, {**defaults, **raw})
        _check_links(cell)
        cells.append(cell)
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


CLAIM_BASES = ("stated", "table")
INTERVAL_TESTS = ("superiority", "noninferiority", "nonsuperiority", "equivalence")


def _positive_margin(value: Any) -> float:
    # bool is an int to Python, and a NaN or infinite margin decides nothing
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"a margin must be a finite number > 0, got {value!r}")
    return float(value)


_Margin = Annotated[float, PlainValidator(_positive_margin), WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]


def _known_cell(cell: Any, info: ValidationInfo) -> None:
    """``cell`` is a cell of experiments.yaml, when the caller passed their ids (``context``)."""
    known = (info.context or {}).get("cells")
    if known is not None and cell not in known:
        raise ValueError(f"unknown cell {cell!r}")


def _contrast(value: Any, info: ValidationInfo) -> tuple[tuple[str, float], ...]:
    """A comparison ``[a, b]`` (a - b) or ``{cell: weight}`` as its ``(cell, weight)`` pairs."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError("must be [a, b] or {cell: weight}")
        if value[0] == value[1]:  # it would be read as -a
            raise ValueError(f"compares {value[0]!r} with itself")
        value = {value[0]: 1.0, value[1]: -1.0}
    if not isinstance(value, dict) or len(value) < 2:
        raise ValueError("must be [a, b] or {cell: weight} of two or more cells")
    for cell, weight in value.items():
        _known_cell(cell, info)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight == 0:
            raise ValueError(f"weight of {cell!r} must be a finite non-zero number, got {weight!r}")
    return tuple((cell, float(weight)) for cell, weight in value.items())


_Contrast = Annotated[tuple[tuple[str, float], ...], PlainValidator(_contrast), WithJsonSchema(
    {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
               {"type": "object", "additionalProperties": {"type": "number"}, "minProperties": 2}]})]
_Text = Annotated[str, StringConstraints(min_length=1)]


class ClaimQuote(BaseModel):
    """The sentence of the paper a claim tests: a stable ``id``, its ``section``, its ``text``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: _Text
    section: _Text
    text: _Text


class Claim(BaseModel):
    """One claim of claims.yaml (the file's header says what each test means).

    Validated with ``context={"cells": ids}`` its cells must be cells of experiments.yaml.
    ``effect`` is ``paper`` (the paper's own effect) or ``cited`` (against a number cited from
    another recipe); ``margin`` a claim's own smallest effect of interest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # the test comes first: the validators below read it (ValidationInfo.data)
    test: _one_of("test", CLAIM_TESTS)
    basis: _one_of("basis", CLAIM_BASES)
    quote: ClaimQuote
    source: str
    statement: str
    comparisons: tuple[_Contrast, ...] = Field((), validate_default=True)
    cell: str | None = Field(None, validate_default=True)
    cells: tuple[str, ...] = Field((), validate_default=True)
    reason: str = Field("", validate_default=True)
    control: _one_of("control", ("auto", "none")) = "auto"
    effect: _one_of("effect", ("paper", "cited")) = "paper"
    margin: _Margin | None = None

    @field_validator("comparisons")
    @classmethod
    def _interval_tests_compare(cls, value: tuple, info: ValidationInfo) -> tuple:
        if info.data.get("test") in INTERVAL_TESTS and not value:
            raise ValueError(f"a {info.data['test']} claim has no comparisons")
        return value

    @field_validator("cell")
    @classmethod
    def _gap_closes_reads_a_cell(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("test") == "gap_closes":
            raise ValueError("a gap_closes claim needs its cell")
        if value is not None:
            _known_cell(value, info)
        return value

    @field_validator("cells")
    @classmethod
    def _trains_reads_cells(cls, value: tuple, info: ValidationInfo) -> tuple:
        if info.data.get("test") == "trains" and not value:
            raise ValueError("must be a non-empty list of cells")
        for cell in value:
            _known_cell(cell, info)
        return value

    @field_validator("reason")
    @classmethod
    def _not_testable_says_why(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("test") == "not_testable" and not value.strip():
            raise ValueError("a claim not testable here needs its reason")
        return value


class ClaimMargins(BaseModel):
    """How a claim's smallest effect of interest is found (``qbench.report.claims.margin_from_fp``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_fraction: _Margin
    table_precision: _Margin


class ClaimsFile(BaseModel):
    """claims.yaml: the margins, the fraction of its FP accuracy a trained run keeps, the claims."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    margins: ClaimMargins
    trained_fraction: Annotated[float, Field(gt=0, le=1)]
    claims: dict[str, Claim]


def check_claims(data: Any) -> ClaimsFile:
    """claims.yaml validated, its cells checked against experiments.yaml.

    Args:
        data: the parsed claims.yaml.

    Raises:
        RegistryError: a line per error, naming the dotted key (``claims.<id>.comparisons[0]``).
    """
    try:
        return ClaimsFile.model_validate(data, context={"cells": load_cells()})
    except ValidationError as e:
        raise RegistryError(error_lines("claims.yaml", "", e)) from None


def check_registries() -> None:
    """Read and check every registry (tables, experiments with their placements, claims), as
    the pipeline does at planning time.

    Raises:
        RegistryError: naming the file and key.
    """
    _tables_cached()
    _cells_cached()
    check_claims(_read("claims.yaml"))


__all__ = ["CLAIM_BASES", "CLAIM_TESTS", "Claim", "ClaimMargins", "ClaimQuote", "ClaimsFile", "RegistryError", "check_claims", "check_registries", "Cell", "Figure", "Placement", "SummaryTable", "bits_label", "cells_for_figure", "cells_for_table",
           "figure_names", "figures", "fp_cell_of", "load_cells", "load_tables", "summary_tables", "table_keys",
           "table_names"]
