rule aggregate:
    # per-run records -> runs.csv, and mean ± std per cell -> cells.csv (pandas)
    input:
        plan=f"{RES}/plan.json",
        evals=all_evals,
    output:
        runs=f"{RES}/aggregate/runs.csv",
        cells=f"{RES}/aggregate/cells.csv",
    params:
        py=PY,
    log:
        f"{RES}/logs/aggregate.log",
    benchmark:
        f"{RES}/benchmarks/aggregate.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m qbench report aggregate --plan {input.plan:q} "
        "--out-runs {output.runs:q} --out-cells {output.cells:q} {input.evals:q} > {log:q} 2>&1"


rule claims:
    # every claim of qbench/paper/claims.yaml: effect, 95 % interval (paired on test images and
    # seeds, qbench.stats) and verdict, one row per comparison
    input:
        plan=f"{RES}/plan.json",
        runs=f"{RES}/aggregate/runs.csv",
    output:
        f"{RES}/claims.csv",
    params:
        py=PY,
    log:
        f"{RES}/logs/claims.log",
    benchmark:
        f"{RES}/benchmarks/claims.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    # bookkeeping on the submitting host, like aggregate: in the report group it would run beside
    # tables and figures and make that job ask for 3 CPUs
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m qbench report claims --plan {input.plan:q} "
        "--runs {input.runs:q} --out {output:q} > {log:q} 2>&1"
