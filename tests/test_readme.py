"""The README's usage example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_quantizer_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quantizer in ten lines", 1)[1]
    code = _python_blocks(section)[0]
    assert len(code.strip().splitlines()) <= 12
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "19 layers quantized; skipped: ['conv1', 'fc']" in out.stdout


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
