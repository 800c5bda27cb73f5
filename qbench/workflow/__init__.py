"""What only the Snakemake workflow uses (``Snakefile``, ``workflows/rules``): the scale config's
model, defaults and generated JSON schema (``scale_config``), planning the runs of a scale from
the paper registry and validating every rendered run config with the trainer's own config
classes (``plan``), checking the datasets (``prepare_data``) and keeping a run directory's
checkpoint only for the inputs it was started from (``run_inputs``).

Modules run on their own (``python -m qbench.workflow.<module> --help``).
"""
