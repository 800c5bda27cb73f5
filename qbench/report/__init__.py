"""Reporting: collecting and aggregating results, writing the paper's tables side by side with the
reproduced numbers, the figures, the claims and the PDF report (planning the runs is
``qbench.workflow``).

Modules run on their own (``python -m qbench.report.<module> --help``) and from the Snakemake
workflow (``Snakefile``, ``workflows/rules``).
"""
