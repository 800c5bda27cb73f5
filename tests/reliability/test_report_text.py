"""The report compiles whatever text a config carries: characters pdflatex cannot typeset are
transliterated with a warning, and TeX never runs shell commands."""

from __future__ import annotations

import logging
import shutil

import pytest

from qbench.report import latex

pytestmark = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")

# the encoding lines of the report's preamble (qbench.report.latex.build_tex)
PREAMBLE = (r"\documentclass[10pt]{article}\usepackage[utf8]{inputenc}\usepackage[T1]{fontenc}"
            r"\usepackage{textcomp}\begin{document}")


def test_unicode_in_user_text_renders_with_a_warning(tmp_path, caplog):
    text = "Scale 東京 🎉 zero\u200bwidth Ωmega, ±0.5 × 2 — café"
    pdf = tmp_path / "report.pdf"
    with caplog.at_level(logging.WARNING, logger="qbench.report"):
        latex.compile_pdf(PREAMBLE + text + r"\end{document}", {}, pdf)
    assert pdf.read_bytes()[:4] == b"%PDF"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "U+6771" in warning and "U+1F389" in warning and "U+200B" in warning
    safe, replaced = latex.pdflatex_safe(text)
    assert "café" in safe and "±0.5 × 2 —" in safe and "\u200b" not in safe
    assert "[U+6771][U+4EAC]" in safe and "Ω" in replaced


def test_tex_runs_without_shell_escape(tmp_path, monkeypatch):
    calls = []
    real = latex.subprocess.run

    def spy(args, **kw):
        calls.append(list(args))
        return real(args, **kw)

    monkeypatch.setattr(latex.subprocess, "run", spy)
    monkeypatch.chdir(tmp_path)
    latex.compile_pdf(PREAMBLE + r"x\immediate\write18{touch PWN}\end{document}", {}, tmp_path / "r.pdf")
    tex_calls = [c for c in calls if c[0].endswith("pdflatex")]
    assert tex_calls and all("-no-shell-escape" in c for c in tex_calls)
    assert not list(tmp_path.rglob("PWN"))
