# checkpoint.pt is deliberately not an output: snakemake deletes the outputs of a killed job
# (--rerun-incomplete, retries), and the checkpoint is what the next attempt resumes from.
# qbench.workflow.run_inputs empties the run directory when the job re-runs for changed inputs.


rule train_fp:
    # full-precision model: trained from scratch, or evaluated from `fp_weights.<model>`
    input:
        unpack(fp_inputs),
    output:
        metrics=f"{RES}/runs/{{cell}}/s{{seed}}/metrics.json",
    wildcard_constraints:
        cell=_alternation(FP_IDS),
    params:
        outdir=output_dir,
        py=PY,
        train=TRAIN_ARGV,
        cache=FP_CACHE_ARGS,
    log:
        f"{RES}/logs/train/{{cell}}_s{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{cell}}_s{{seed}}.tsv"
    threads: TRAIN_CPUS
    # every quantized cell of a model waits for its FP model: start those first, or the longest
    # FP run (AlexNet-BN, 20 epochs at mini) can end up alone at the tail of the schedule
    priority: 10
    resources:
        **TRAIN_RESOURCES,
    conda:
        CONDA_ENV
    shell:
        "{params.py:q} -m qbench.workflow.run_inputs --config {input.config:q} --out {params.outdir:q} > {log:q} 2>&1 && "
        f"{TRAIN_ENV} "
        "{params.train:q} {input.config:q} --out {params.outdir:q} {params.cache:q} --quiet >> {log:q} 2>&1"


rule train_quant:
    # one quantized cell and seed; calibration and initialisation happen inside qbench train
    input:
        unpack(quant_inputs),
    output:
        metrics=f"{RES}/runs/{{cell}}/s{{seed}}/metrics.json",
        hard=f"{RES}/runs/{{cell}}/s{{seed}}/model_hard.pt",
    wildcard_constraints:
        cell=_alternation(QUANT_IDS),
    params:
        outdir=output_dir,
        py=PY,
        train=TRAIN_ARGV,
    log:
        f"{RES}/logs/train/{{cell}}_s{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{cell}}_s{{seed}}.tsv"
    threads: TRAIN_CPUS
    resources:
        **TRAIN_RESOURCES,
    conda:
        CONDA_ENV
    shell:
        "{params.py:q} -m qbench.workflow.run_inputs --config {input.config:q} --out {params.outdir:q} > {log:q} 2>&1 && "
        f"{TRAIN_ENV} "
        "{params.train:q} {input.config:q} --out {params.outdir:q} --quiet >> {log:q} 2>&1"
