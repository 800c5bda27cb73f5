rule tables:
    # the paper's Tables 1-8 with its numbers beside the reproduced / rerun ones, and the summary
    # tables; the intervals read the predictions.npz of the run directories runs.csv lists (every
    # run's evaluate record checked it exists), as the claims rule does
    input:
        plan=f"{RES}/plan.json",
        cells=f"{RES}/aggregate/cells.csv",
        runs=f"{RES}/aggregate/runs.csv",
    output:
        TABLE_FILES,
        f"{RES}/tables/all_cells.csv",
    params:
        outdir=output_dir,
        py=PY,
    log:
        f"{RES}/logs/tables.log",
    benchmark:
        f"{RES}/benchmarks/tables.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    group:
        "report"
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m qbench report tables --plan {input.plan:q} "
        "--cells {input.cells:q} --runs {input.runs:q} --outdir {params.outdir:q} > {log:q} 2>&1"
