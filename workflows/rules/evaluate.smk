rule evaluate:
    # checks the run finished and extracts its final hard/soft accuracy, bits and timing
    input:
        metrics=f"{RES}/runs/{{cell}}/s{{seed}}/metrics.json",
    output:
        f"{RES}/eval/{{cell}}_s{{seed}}.json",
    params:
        rundir=input_dir,
        py=PY,
        # the cell as the pipeline loaded it: collect then imports neither torch nor the registry
        fields=cell_fields_json,
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
        "OMP_NUM_THREADS={threads} {params.py:q} -m qbench report collect --run-dir {params.rundir:q} "
        "--cell {wildcards.cell:q} --seed {wildcards.seed:q} --cell-fields {params.fields:q} --out {output:q} "
        "> {log:q} 2>&1"
