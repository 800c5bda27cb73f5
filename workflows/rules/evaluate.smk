rule evaluate:
    # checks the run finished and extracts its final hard/soft accuracy, bits and timing
    input:
        metrics=f"{RES}/runs/{{cell}}/s{{seed}}/metrics.json",
    output:
        f"{RES}/eval/{{cell}}_s{{seed}}.json",
    params:
        rundir=input_dir,
        py=PY,
    log:
        f"{RES}/logs/evaluate/{{cell}}_s{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/evaluate/{{cell}}_s{{seed}}.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.py} -m qbench.report.collect --run-dir {params.rundir} "
        "--cell {wildcards.cell} --seed {wildcards.seed} --out {output} > {log} 2>&1"
