"""Pipeline support: planning runs from the paper registry, collecting and aggregating results,
writing the paper's tables side by side with the reproduced numbers, figures and the PDF report.

Modules run on their own (``python -m qbench.report.<module> --help``) and from the Snakemake
workflow (``Snakefile``, ``workflows/rules``).
"""
