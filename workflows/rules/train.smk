rule train_fp:
    # full-precision model: trained from scratch, or evaluated from `fp_weights.<model>`
    input:
        unpack(fp_inputs),
    output:
        metrics=f"{RES}/runs/{{cell}}/s{{seed}}/metrics.json",
        checkpoint=f"{RES}/runs/{{cell}}/s{{seed}}/checkpoint.pt",
    wildcard_constraints:
        cell=_alternation(FP_IDS),
    params:
        outdir=output_dir,
        cache=FP_CACHE_ARG,
    log:
        f"{RES}/logs/train/{{cell}}_s{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{cell}}_s{{seed}}.tsv"
    threads: TRAIN["threads"]
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["runtime"],
        gpu=TRAIN["gpu"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        f"{TRAIN_CMD} "
        "{input.config} --out {params.outdir} {params.cache} --quiet > {log} 2>&1"


rule train_quant:
    # one quantized cell and seed; calibration and initialisation happen inside qbench train
    input:
        unpack(quant_inputs),
    output:
        metrics=f"{RES}/runs/{{cell}}/s{{seed}}/metrics.json",
        checkpoint=f"{RES}/runs/{{cell}}/s{{seed}}/checkpoint.pt",
        hard=f"{RES}/runs/{{cell}}/s{{seed}}/model_hard.pt",
    wildcard_constraints:
        cell=_alternation(QUANT_IDS),
    params:
        outdir=output_dir,
    log:
        f"{RES}/logs/train/{{cell}}_s{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{cell}}_s{{seed}}.tsv"
    threads: TRAIN["threads"]
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["runtime"],
        gpu=TRAIN["gpu"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        f"{TRAIN_CMD} "
        "{input.config} --out {params.outdir} --quiet > {log} 2>&1"
