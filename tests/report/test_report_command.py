"""``qbench report STEP``: one command for every step of the report pipeline, as the rules run it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from qbench.cli import REPORT_STEPS, main

RULES = Path(__file__).resolve().parents[2] / "workflows" / "rules"


@pytest.mark.parametrize("step", REPORT_STEPS)
def test_every_step_is_a_module_with_a_main_that_takes_its_arguments(step, capsys):
    assert callable(importlib.import_module(f"qbench.report.{step}").main)
    with pytest.raises(SystemExit) as done:
        main(["report", step, "--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_an_unknown_step_or_a_bad_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as done:
        main(["report", "nope"])
    assert done.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["report", "tables", "--no-such-option"])
    assert done.value.code == 2


def test_the_rules_run_report_steps_through_the_command():
    text = "".join(p.read_text() for p in RULES.glob("*.smk"))
    assert re.findall(r"-m qbench\.report\.", text) == []
    used = set(re.findall(r"-m qbench report (\w+)", text))
    assert used and used <= set(REPORT_STEPS)
