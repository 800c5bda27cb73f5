# qbench pipeline: trains every cell of the paper's experiments, aggregates the results and
# writes the paper's tables side by side with the reproduced numbers, the figures and a report.
#
#   snakemake --cores all reproduce_tables                      # mini scale (default)
#   snakemake --cores all reproduce_tables --config scale=smoke
#   snakemake --profile workflows/profiles/slurm reproduce_tables --config scale=paper \
#       --configfile site.yaml
#
# See docs/pipeline.md.

import sys

from snakemake.utils import min_version

min_version("9.0")

WF = workflow.basedir
sys.path.insert(0, WF)  # the qbench package of this checkout, also when not installed

from qbench.paper import RegistryError, check_registries, load_cells  # noqa: E402
from qbench.workflow import plan, scale_config  # noqa: E402

try:  # the registries are checked like a config: a typo stops the dry run, one line
    check_registries()
except RegistryError as exc:
    plan.stop(exc, "invalid registry")

try:
    # snakemake's loader keeps the last of a key given twice; the project's refuses it
    plan.check_config_files(workflow.configfiles)
    _merged = plan.merge_scale_file(dict(config), f"{WF}/workflows/config")
    # before the model, whose pattern error would not say which word of it is wrong
    plan.check_sbatch_extra((_merged.get("cluster") or {}).get("extra"))
    # types, limits and unknown keys, with the defaults filled in (workflows/schemas/ holds the
    # JSON schema generated from the same model)
    _merged = scale_config.resolve(_merged, lambda: scale_config.sources(
        workflow.configfiles, f"{WF}/workflows/config", _merged["scale"]))
except plan.PipelineConfigError as exc:
    plan.stop(exc)
config.clear()
config.update(_merged)

try:
    CELLS = plan.enabled_cells(config)
    plan.validate_semantics(config, CELLS)
except plan.PipelineConfigError as exc:
    plan.stop(exc)

SCALE = config["scale"]
RES = plan.results_dir(config)
REP = f"reports/{SCALE}"
PY = sys.executable
CONDA_ENV = "../envs/qbench.yaml"  # relative to workflows/rules/

# jobs import the qbench package of this checkout even when it is not installed
shell.prefix(plan.pythonpath_prefix(WF))


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/aggregate.smk"
include: "workflows/rules/tables.smk"
include: "workflows/rules/figures.smk"
include: "workflows/rules/report.smk"


localrules:
    reproduce_tables,
    all,


rule reproduce_tables:
    input:
        TABLE_FILES,
        FIGURE_FILES,
        f"{RES}/claims.csv",
        f"{REP}/report.pdf",


rule all:
    default_target: True
    input:
        rules.reproduce_tables.input,
