"""Reporting: collecting and aggregating results, writing the paper's tables side by side with the
reproduced numbers, the figures, the claims and the PDF report (planning the runs is
``qbench.workflow``).

Each step is one command, ``qbench report <step>`` (``qbench.cli.REPORT_STEPS``: the module
``qbench.report.<step>`` and its ``main``), run on its own or by the Snakemake workflow's rules
(``Snakefile``, ``workflows/rules``).
"""
