rule write_plan:
    # the resolved config and the cells of this scale; rewritten only when they change
    output:
        f"{RES}/plan.json",
    params:
        text=PLAN_TEXT,
    log:
        f"{RES}/logs/write_plan.log",
    benchmark:
        f"{RES}/benchmarks/write_plan.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        CONDA_ENV
    run:
        plan.write_text(output[0], params.text)


rule render_config:
    # one qbench train config per cell and seed: scale defaults deep-merged with the cell
    output:
        f"{RES}/configs/{{cell}}_s{{seed}}.yaml",
    params:
        text=cell_config_text,
    log:
        f"{RES}/logs/render_config/{{cell}}_s{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/render_config/{{cell}}_s{{seed}}.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        CONDA_ENV
    # a shell job, not a run: block, which would start a whole snakemake process per config
    shell:
        "printf '%s' {params.text:q} > {output:q}.tmp && chmod 644 {output:q}.tmp && mv {output:q}.tmp {output:q}"


rule prepare_data:
    # makes the dataset available (or checks it is) and records what was found
    output:
        f"{RES}/data/{{dataset}}.json",
    params:
        spec=data_spec,
        py=PY,
    log:
        f"{RES}/logs/prepare_data/{{dataset}}.log",
    benchmark:
        f"{RES}/benchmarks/prepare_data/{{dataset}}.tsv"
    threads: 1
    resources:
        **LIGHT_RESOURCES,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m qbench.workflow.prepare_data --spec {params.spec:q} "
        "--out {output:q} > {log:q} 2>&1"
