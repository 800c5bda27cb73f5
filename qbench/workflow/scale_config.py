"""The pipeline's scale config (workflows/config/<scale>.yaml deep-merged with ``--configfile`` /
``--config``) as pydantic models: its keys, types, limits, defaults and descriptions in one place.
The Snakefile validates the merged config with ``resolve``, which also fills in the defaults.

workflows/schemas/config.schema.yaml (JSON schema, for editors and other tools) is generated
from these models, never edited:

    python -m qbench.workflow.scale_config schema           # rewrite it
    python -m qbench.workflow.scale_config schema --check   # exit 1 if it is stale

`train` and the other partial ``qbench train`` configs stay plain mappings here: their keys are
checked by the trainer's own config classes when the run configs are rendered (``plan``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qbench.workflow.plan import PHASE_KINDS, PipelineConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflows" / "schemas" / "config.schema.yaml"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# keywords of the written schema in reading order: what a key is first, its nested keys last
SCHEMA_ORDER = ["$schema", "description", "type", "anyOf", "enum", "pattern", "items", "minItems", "minimum",
                "required", "additionalProperties", "propertyNames", "default", "properties"]

TrainConfig = dict[str, Any]  # a partial `qbench train` config (docs/CONTRACTS.md)
Seed = Annotated[int, Field(ge=0)]
Seeds = Annotated[list[Seed], Field(min_length=1)]
PhaseKind = Literal[PHASE_KINDS]  # type: ignore[valid-type]


class Section(BaseModel):
    """A mapping of the scale config: unknown keys are errors."""

    # strict: a pipeline key takes a YAML number, not text or a bool (the trainer's sections read
    # numbers written as text themselves); python-re: patterns match as jsonschema matches them.
    # Every section restates extra="forbid" and inherits the rest.
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class Cells(Section):
    """Which of the paper's cells run."""

    model_config = ConfigDict(extra="forbid")
    only: list[str] | None = Field(None, description="cell ids to run (null = every cell of the enabled tasks)")
    skip: list[str] = []


class Baselines(Section):
    """Which cells of other methods than the paper's (experiments.yaml, method) run."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="false leaves every baseline cell out")
    models: list[str] | None = Field(None, description="architectures whose baselines run (null = all)")
    settings: list[str] | None = Field(
        None, description="W/A settings (table column keys, e.g. w1a32, w2a32, w1a1, w1a2) whose baselines run "
        "(null = all)")


class Detection(Section):
    """The detection cells (Table 4)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    train: TrainConfig = Field({}, description="base qbench train config of detect cells (docs/detection.md)")
    # a mapping, not a section: a phase left out stays absent (`run_config` falls back to `phases`)
    phases: dict[PhaseKind, TrainConfig] = Field(
        {}, description="per-kind-of-run overrides for detect cells (replace `phases` when given)")


class Phases(Section):
    """Per-kind-of-run overrides (usually the epochs of each phase)."""

    model_config = ConfigDict(extra="forbid")
    fp: TrainConfig = {}
    weights: TrainConfig = {}
    activations: TrainConfig = {}
    both: TrainConfig = {}


class TrainResources(Section):
    """Resources of every training job."""

    model_config = ConfigDict(extra="forbid")
    threads: int = Field(1, ge=1, description="per process (OMP_NUM_THREADS); a job gets threads x max(gpu, 1) CPUs")
    mem_mb: int = Field(4000, ge=100)
    runtime: int = Field(120, ge=1, description="minutes")
    gpu: int = Field(0, ge=0, description="GPUs per job; with launcher torchrun also the processes per job")


class LightResources(Section):
    """Resources of every other job."""

    model_config = ConfigDict(extra="forbid")
    threads: int = Field(1, ge=1)
    mem_mb: int = Field(2000, ge=100)
    runtime: int = Field(20, ge=1)


class Resources(Section):
    """Resources of the jobs (threads, memory, minutes, GPUs)."""

    model_config = ConfigDict(extra="forbid")
    train: TrainResources = TrainResources()
    light: LightResources = LightResources()


SBATCH_EXTRA = r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:@/+%=-]+)?( +--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:@/+%=-]+)?)*$"


class Cluster(Section):
    """Site settings of cluster submission (docs/cluster.md; the user's site file); local runs
    ignore them. null = leave it to the cluster's defaults."""

    model_config = ConfigDict(extra="forbid")
    account: str | None = Field(None, description="sbatch --account")
    partition: str | None = Field(None, description="partition of CPU jobs; null = the cluster's default partition")
    gpu_partition: str | None = Field(None, description="partition of jobs with resources.train.gpu > 0; null = partition")
    qos: str | None = Field(None, description="sbatch --qos")
    gpu_request: Literal["gpus", "gres"] = Field(
        "gpus", description="how GPUs are asked for: --gpus=N, or --gres=gpu[:model]:N for sites that only accept GRES")
    gpu_model: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+$")] | None = Field(None, description="GPU type, e.g. a100")
    constraint: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.,&|:*!\[\]-]+$")] | None = Field(
        None, description="sbatch --constraint (node features), e.g. ib or \"a100&ib\"; passed quoted by the plugin")
    extra: Annotated[str, Field(pattern=SBATCH_EXTRA)] | None = Field(
        None, description="further sbatch options of every job, long options only, e.g. \"--hint=nomultithread "
        "--exclusive\"; options the executor plugin sets (constraint, qos, account, ...) have their own keys")


class ScaleConfig(Section):
    """Scale configuration of the qbench pipeline (workflows/config/<scale>.yaml, deep-merged with
    --configfile / --config). `train` is a partial `qbench train` config (docs/CONTRACTS.md); its
    keys are checked by qbench train itself, the pipeline checks models, level sets and paths."""

    model_config = ConfigDict(extra="forbid")
    scale: str = Field(pattern=r"^[A-Za-z0-9_-]+$",
                       description="name of the scale; outputs go to results/<scale>/ and reports/<scale>/")
    description: str = ""
    seeds: Seeds = Field([0, 1], description="seeds of every quantized cell (mean ± std over them)")
    fp_seeds: Seeds = Field([0], description="seeds of the full-precision cells; quantized cells start from the first")
    launcher: Literal["python", "torchrun"] = Field(
        "python", description="how training jobs start qbench train (torchrun uses resources.gpu processes)")
    fp_cache: str | None = Field(
        None, description="directory of the run cache for the FP models (qbench train --cache): an FP run whose "
        "config, code and torch version are cached there is restored instead of retrained; null = no cache")
    train_command: str | None = Field(
        None, description="replaces \"<python> -m qbench.cli train\" (e.g. a wrapper); null = default")
    cells: Cells = Cells()
    baselines: Baselines = Field(
        Baselines(), description="which cells of other methods than the paper's (experiments.yaml, method) run")
    detection: Detection = Detection()
    fp_weights: dict[str, str] = Field(
        {}, description="model -> FP state_dict file; that model's FP cell is evaluated, not trained")
    train: TrainConfig = Field(description="base qbench train config for every run of this scale")
    models: dict[str, TrainConfig] = Field({}, description="per-architecture overrides of `train`")
    phases: Phases = Field(Phases(), description="per-kind-of-run overrides (usually the epochs of each phase)")
    cell_seeds: dict[str, Seeds] = Field(
        {}, description="cell id -> seeds of that quantized cell instead of `seeds` (a superset of them), for "
        "claims that need more training-noise samples")
    cell_overrides: dict[str, TrainConfig] = Field(
        {}, description="cell id -> partial qbench train config merged last")
    resources: Resources = Resources()
    cluster: Cluster = Cluster()


def resolve(config: dict, sources: Sequence[str | Path] | Callable[[], Sequence[str | Path]] = ()) -> dict:
    """The merged scale config validated, with every default filled in: what the rules read.

    Raises PipelineConfigError, one line naming the key (and the file that set it).

    Args:
        config: the merged scale config (``plan.merge_scale_file``).
        sources: the files its values came from, the one that wins first (``sources``), or a
            function giving them: called only to name the file of an error, so a valid config
            does not read its files again.
    """
    try:
        return ScaleConfig.model_validate(config).model_dump()
    except ValidationError as exc:
        files = sources() if callable(sources) else sources
        raise PipelineConfigError(error_line(exc, files)) from None


def sources(configfiles: Sequence[str | Path], config_dir: str | Path, scale: str) -> list[Path]:
    """The files a merged value can come from, in the order they win: the ``--configfile`` files
    (the last first), then the scale's file and the files it ``extends``.

    Args:
        configfiles: the files snakemake was given.
        config_dir: directory of the shipped scale files.
        scale: the scale.
    """
    from qbench.io import read_yaml

    out = [Path(p) for p in reversed(configfiles)]
    chain: list[Path] = []
    path = Path(config_dir) / f"{scale}.yaml"
    while path.is_file() and path not in chain:  # a cycle was refused when merging
        chain.append(path)
        data = read_yaml(path, allow_empty=True)
        parent = data.get("extends") if isinstance(data, dict) else None
        if not isinstance(parent, str):
            break
        path = Path(config_dir) / f"{parent}.yaml"
    return out + chain


def _section_at(loc: Sequence) -> type[BaseModel] | None:
    """The model of the mapping at ``loc`` (None where it is no section)."""
    model: type[BaseModel] = ScaleConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, Section)):
            return None
        model = field.annotation
    return model


_ABSENT = object()


def _value_at(node: Any, loc: Sequence) -> Any:
    """The value at key path ``loc`` inside ``node`` (``_ABSENT`` where there is none)."""
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return _ABSENT
    return node


def _file_of(loc: Sequence, value: Any, files: Sequence[str | Path]) -> Path | None:
    """The first of ``files`` that holds ``value`` at ``loc`` (``value`` _ABSENT: any value):
    a later layer with another value there, or ``--config``, set it otherwise."""
    from qbench.io import read_yaml

    for path in files:
        found = _value_at(read_yaml(path, allow_empty=True), loc)
        if found is not _ABSENT and (value is _ABSENT or found == value):
            return Path(path)
    return None


def error_line(exc: ValidationError, files: Sequence[str | Path] = ()) -> str:
    """The first error of a validation as one line: ``[file: ]config key 'a.b': what``.

    Args:
        exc: the pydantic error.
        files: where the values may have come from (``sources``).
    """
    errors = exc.errors()
    err = errors[0]
    loc = list(err["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"  # the name of a mapping's key is wrong, not its value
    if is_key:
        loc.pop()
    if err["type"] == "extra_forbidden":
        section = _section_at(loc[:-1])
        known = sorted(section.model_fields) if section else []
        what = f"unknown key (known: {', '.join(known)})"
    elif is_key and err["type"] == "literal_error":
        what = f"unknown key (known: {err['ctx']['expected']})"
    elif err["type"] == "missing":
        what = "required key missing"
    else:
        what = err["msg"]
        if not isinstance(err["input"], (dict, list)):
            what += f", got {err['input']!r}"
    if len(errors) > 1:
        what += f" (and {len(errors) - 1} more)"
    key = ".".join(str(p) for p in loc)
    where = _file_of(loc, _ABSENT if is_key else err["input"], files)
    return f"{where}: config key '{key}': {what}" if where else f"config key '{key}': {what}"


def json_schema() -> dict:
    """The JSON schema of ``ScaleConfig``: nested models written in place (as the shipped file
    always read), pydantic's generated titles left out."""
    raw = ScaleConfig.model_json_schema()
    defs = raw.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
        out = {}
        for key in sorted(node, key=lambda k: SCHEMA_ORDER.index(k) if k in SCHEMA_ORDER else len(SCHEMA_ORDER)):
            value = node[key]
            if key == "title":
                continue
            if key == "properties":
                out[key] = {name: inline(sub) for name, sub in value.items()}
            elif key == "description":  # docstrings keep their line breaks
                out[key] = " ".join(value.split())
            else:  # a default is data, kept as it is
                out[key] = value if key == "default" else inline(value)
        return out

    return inline({"$schema": SCHEMA_DIALECT, **raw})


def schema_text() -> str:
    """workflows/schemas/config.schema.yaml as ``schema`` writes it."""
    header = ("# Generated from qbench/workflow/scale_config.py; do not edit. Regenerate with\n"
              "#   python -m qbench.workflow.scale_config schema\n")
    return header + yaml.safe_dump(json_schema(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    """``schema [--check] [--out PATH]``: write (or compare) the generated JSON schema."""
    parser = argparse.ArgumentParser(prog="python -m qbench.workflow.scale_config",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["schema"])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing it")
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH, help=f"default: {SCHEMA_PATH}")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.check:
        if not args.out.is_file() or args.out.read_text(encoding="utf-8") != text:
            print(f"stale: {args.out} (run python -m qbench.workflow.scale_config schema)", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
