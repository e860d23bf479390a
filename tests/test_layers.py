"""The package's import graph, read from the source: no cycles (importlib strings
included), and the baselines never reach the training engine."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PKG = ROOT / "dejavid"
MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")


def _target(name: str) -> list[str]:
    """Package modules that the dotted name ``name`` (absolute) refers to."""
    parts = name.split(".")
    if parts[0] != "dejavid" or len(parts) < 2:
        return []
    return [parts[1]] if parts[1] in MODULES else []


def imports_of(module: str) -> set[str]:
    """Every dejavid module that ``module`` imports anywhere in its source: import
    statements (top level or inside functions), relative imports, and strings naming a
    module (``importlib.import_module("dejavid.x")``, or an f-string with that prefix)."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.update(_target(a.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "dejavid" + ("." + base if base else "")
            if base == "dejavid":  # from . import x / from dejavid import x
                found.update(a.name for a in node.names if a.name in MODULES)
            else:
                found.update(_target(base))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(_target(node.value.strip()))
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith("dejavid."):
                prefix = str(head.value)[len("dejavid."):]
                found.update(m for m in MODULES if m.startswith(prefix))
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    return {m: imports_of(m) for m in MODULES}


def _cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for n in graph[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_the_parser_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The checker itself: a cycle hidden behind importlib and an f-string is found."""
    src = {
        "a": "import importlib\ndef f():\n    importlib.import_module('dejavid.b')\n",
        "b": "def g(name):\n    import importlib\n    return importlib.import_module(f'dejavid.c_{name}')\n",
        "c_x": "from .a import f\n",
    }
    for name, text in src.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", sorted(src))
    graph = _graph()
    assert graph == {"a": {"b"}, "b": {"c_x"}, "c_x": {"a"}}
    assert _cycle(graph) == ["a", "b", "c_x", "a"]


def test_no_import_cycle_in_the_package():
    graph = _graph()
    for m, deps in sorted(graph.items()):
        print(f"{m}: {', '.join(sorted(deps)) or '-'}")
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_backends_are_leaves_below_the_dispatch():
    graph = _graph()
    for backend in ("align_ref", "align_numba", "align_cuda"):
        assert graph[backend] <= {"backend"}, (backend, graph[backend])
        assert backend in graph["alignment"]


def test_baselines_do_not_import_the_training_engine():
    graph = _graph()
    reached = _reachable(graph, "baselines")
    assert not reached & {"engine", "train", "estimator", "signals", "optim"}, reached
    code = "import sys, dejavid.baselines; print(sorted(m for m in sys.modules if m.startswith('dejavid')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "dejavid.engine" not in out and "dejavid.train'" not in out, out


def test_light_modules_stay_light():
    """Device, metrics and exceptions import without the training engine; the package
    and the estimator import without torch."""
    graph = _graph()
    for m in ("device", "metrics", "errors", "backend", "settings"):
        assert "engine" not in _reachable(graph, m) | {m}, m
    code = ("import sys; import dejavid; from dejavid import DejaVidClassifier; "
            "print('torch' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"], out
