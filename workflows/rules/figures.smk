rule figures:
    # Figs. 2-5 of the paper from this scale's runs, and a paper-vs-reproduced summary
    input:
        plan=f"{RES}/plan.json",
        runs=f"{RES}/aggregate/runs.csv",
        cells=f"{RES}/aggregate/cells.csv",
    output:
        FIGURE_FILES,
    params:
        outdir=output_dir,
        py=PY,
    log:
        f"{RES}/logs/figures.log",
    benchmark:
        f"{RES}/benchmarks/figures.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    group:
        "report"
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MPLBACKEND=Agg {params.py:q} -m qbench report figures "
        "--plan {input.plan:q} --runs {input.runs:q} --cells {input.cells:q} --outdir {params.outdir:q} "
        "> {log:q} 2>&1"
