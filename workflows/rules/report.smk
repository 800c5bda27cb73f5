rule report:
    # LaTeX report: every table and figure, the paper's claims checked, deviations, timings
    input:
        plan=f"{RES}/plan.json",
        cells=f"{RES}/aggregate/cells.csv",
        runs=f"{RES}/aggregate/runs.csv",
        claims=f"{RES}/claims.csv",
        tables=TABLE_FILES,
        figures=FIGURE_FILES,
    output:
        pdf=f"{REP}/report.pdf",
        tex=f"{REP}/report.tex",
    params:
        tables=tables_dir,
        figures=figures_dir,
        benchmarks=benchmarks_dir,
        py=PY,
    log:
        f"{RES}/logs/report.log",
    benchmark:
        f"{RES}/benchmarks/report.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    group:
        "report"
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m qbench report latex --plan {input.plan:q} "
        "--cells {input.cells:q} --runs {input.runs:q} --claims {input.claims:q} --tables-dir {params.tables:q} "
        "--figures-dir {params.figures:q} --benchmarks-dir {params.benchmarks:q} "
        "--tex {output.tex:q} --pdf {output.pdf:q} > {log:q} 2>&1"
