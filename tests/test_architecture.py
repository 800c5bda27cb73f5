"""Structure of the package itself: no import cycle between qbench's modules.

Every import counts, function-local ones too (a local import only hides a cycle from the
interpreter). An import of a module's own parent package is not an edge: a package's
``__init__`` re-exporting its submodules is how the public API is built.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qbench"


def _modules(package: Path) -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the qbench modules it imports (anywhere in its body)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node.module, node.level, name, is_package)
                # "from pkg import sub" imports the submodule; "from mod import f" the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_cycle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "qbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (pkg / "c.py").write_text("import qbench.a\n")
    graph = import_graph(pkg)
    assert graph["qbench.c"] == {"qbench.a"}
    assert cycles(graph) == [["qbench.a", "qbench.sub.b"]]


def test_qbench_has_no_import_cycle():
    assert cycles(import_graph()) == []


MAX_FUNCTION_LINES = 80


def long_functions(package: Path = PACKAGE, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function longer than ``limit`` lines."""
    out = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_the_length_check_sees_a_long_function(tmp_path):
    pkg = tmp_path / "qbench"
    pkg.mkdir()
    (pkg / "m.py").write_text("def short():\n    return 1\n\n\ndef long():\n" + "    x = 1\n" * 80)
    assert long_functions(pkg) == ["qbench/m.py:5 long (81 lines)"]


def test_no_function_in_qbench_is_longer_than_80_lines():
    # a run's lifecycle reads as its steps (setup, resume or calibrate, epochs, finalise)
    assert long_functions() == []


# the layers that run, collect and report any method: none may branch on (or name) one
METHOD_BLIND = ("train", "detection", "workflow", "report")


def method_names_in(package: Path, names: tuple[str, ...]) -> list[str]:
    """``path:line name`` of every whole-word, case-blind use of a method name under ``package``."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE)
    out = []
    for path in sorted(package.rglob("*.py")) + sorted(package.rglob("*.smk")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            out += [f"{path.relative_to(package)}:{number} {m}" for m in pattern.findall(line)]
    return out


def test_the_method_name_check_sees_a_name(tmp_path):
    (tmp_path / "mod.py").write_text("x = 1\nif method == 'lsq':  # LSQ's scale\n    pass\n")
    assert method_names_in(tmp_path, ("lsq",)) != []


def test_no_method_name_in_the_method_blind_layers():
    from qbench.quant import available_methods, get_method

    # the methods qbench ships (tests register toy methods of their own)
    shipped = tuple(m for m in available_methods() if get_method(m).__module__.startswith("qbench."))
    assert len(shipped) >= 2
    found = [hit for sub in METHOD_BLIND for hit in method_names_in(PACKAGE / sub, shipped)]
    assert found == []
