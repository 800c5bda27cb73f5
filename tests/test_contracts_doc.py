"""docs/CONTRACTS.md against the code: the names it lists exist, and the signatures it spells
out for QuantPolicy, TemperatureSchedule, QuantMethod and the run directory are the real ones."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import qbench.quant as Q
from qbench import run_files
from qbench.quant import QuantMethod, QuantPolicy, TemperatureSchedule

DOC = (Path(__file__).resolve().parents[1] / "docs" / "CONTRACTS.md").read_text()


def _call_arguments(name: str) -> list[str]:
    """The argument names of the doc's ``name(...)`` line (its first occurrence as prose)."""
    match = re.search(r"`" + name + r"\((.*?)\)`", DOC, re.S)
    assert match, f"CONTRACTS.md spells out no {name}(...)"
    return [part.split("=")[0].strip() for part in re.split(r",\s*", match.group(1))]


def test_every_name_of_the_quant_import_block_exists():
    block = DOC[DOC.index("from qbench.quant import ("):]
    block = block[:block.index("\n)")]
    names = re.findall(r"^\s{4}([A-Za-z_]+),", block, re.M)
    assert len(names) > 15
    assert [n for n in names if not hasattr(Q, n)] == []


def test_quant_policy_and_schedule_arguments_are_the_dataclass_fields():
    assert _call_arguments("QuantPolicy") == [f.name for f in dataclasses.fields(QuantPolicy)]
    assert _call_arguments("TemperatureSchedule") == list(inspect.signature(TemperatureSchedule).parameters)


def test_every_public_quant_method_member_is_documented():
    section = DOC[DOC.index("`QuantMethod` (one instance"):DOC.index("Baselines (`qbench.quant.baselines`)")]
    members = {n for n in vars(QuantMethod) if not n.startswith("_")}
    assert {n for n in members if f"`{n}" not in section and f" {n}(" not in section and f"`{n}`" not in section} == set()


def test_the_run_directory_files_are_run_files():
    section = DOC[DOC.index("A run directory holds"):DOC.index("`predictions.npz` (numpy")]
    listed = set(re.findall(r"`([a-z_]+\.(?:yaml|json|pt|npz|log))`", section))
    assert listed == set(run_files.RUN_DIR) | {run_files.MAP_PSEUDO}


def test_extending_lists_the_papers_method_keys():
    from qbench.quant.methods.qn import SECTION_KEYS

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    sentence = text[text.index("takes `init`"):text.index("(`qbench.quant.methods.qn.SECTION_KEYS`)")]
    assert re.findall(r"`([a-z_.]+)`", sentence) == list(SECTION_KEYS)
