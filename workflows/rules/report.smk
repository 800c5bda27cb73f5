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
        "OMP_NUM_THREADS={threads} {params.py} -m qbench.report.latex --plan {input.plan} "
        "--cells {input.cells} --runs {input.runs} --claims {input.claims} --tables-dir {params.tables} "
        "--figures-dir {params.figures} --benchmarks-dir {params.benchmarks} "
        "--tex {output.tex} --pdf {output.pdf} > {log} 2>&1"
