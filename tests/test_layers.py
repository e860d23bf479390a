"""The package's import graph, read from the source: one subpackage per layer, each
importing only the layers below it; no cycles between modules (importlib strings and
lazy exports included); the baselines never reach the training engine."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "dejavid"

# Modules that every layer may use; they import no other part of the package.
SHARED = {"dejavid.errors", "dejavid.io", "dejavid.device"}

# layer -> the layers it may import (besides itself and the shared leaves).  A layer is a
# subpackage of dejavid; the order of this table is the order of the floors.
ALLOWED = {
    "runtime": set(),
    "alignment": set(),
    "data": {"alignment"},
    "config": {"data", "alignment"},
    "model": {"config", "data", "alignment"},
    "baselines": {"model", "config", "data", "alignment"},
    "training": {"model", "config", "data", "alignment"},
    "estimators": {"training", "baselines", "model", "config", "data", "alignment"},
    "report": {"training", "baselines", "model", "config", "data", "alignment"},
    "interop": {"training", "model", "config", "data", "alignment"},
    "extract": {"config", "data"},
    "predict": {"extract", "training", "model", "config", "data", "alignment"},
}


def module_names(pkg: Path = None) -> dict[str, Path]:
    """Dotted module name -> source file, for every module and package under ``pkg``."""
    pkg = pkg or PKG
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _known(name: str, modules) -> str | None:
    """The longest module of ``modules`` that the dotted ``name`` starts with."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _resolve(base: str, level: int, current: str, is_package: bool) -> str:
    """An absolute module name for ``from <level dots><base> import``."""
    if not level:
        return base
    package = current if is_package else current.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{base}" if base else package


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """Every package module that ``module`` imports anywhere in its source: import
    statements (top level or inside functions), relative imports, strings naming a module
    (``importlib.import_module("dejavid.x")``, or an f-string with that prefix) and the
    modules of a ``lazy_exports`` table.  Imports of the module's own parent packages
    are left out (Python has imported them already)."""
    path = modules[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def add(name):
        target = _known(name, modules)
        if target:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, module, is_package)
            for a in node.names:
                add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            for arg in node.args:
                if isinstance(arg, ast.Dict):
                    for key in arg.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            add(_resolve(key.value.lstrip("."), len(key.value) -
                                         len(key.value.lstrip(".")), module, is_package))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if re.fullmatch(r"dejavid(\.\w+)+", text):
                add(text)
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith("dejavid."):
                found.update(m for m in modules if m.startswith(str(head.value)))
    parents = {module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1)}
    return found - parents - {module}


def _defined_names(path: Path) -> set[str]:
    """Names a module defines at top level or exports through ``lazy_exports``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            for arg in node.args:
                if isinstance(arg, ast.Dict):
                    for value in arg.values:
                        if isinstance(value, ast.List):
                            names.update(e.value for e in value.elts if isinstance(e, ast.Constant))
    return names


def unresolved_imports(pkg: Path = None) -> list[str]:
    """``from <package module> import name`` where name is neither a module of the
    package nor a name that module defines (an import that fails when it runs, even one
    inside a function that no test calls)."""
    modules = module_names(pkg)
    bad = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _resolve(node.module or "", node.level, module, is_package)
            if base not in modules:
                if base.split(".")[0] == "dejavid":
                    bad.append(f"{module}: no module {base}")
                continue
            defined = _defined_names(modules[base])
            for a in node.names:
                if f"{base}.{a.name}" not in modules and a.name not in defined:
                    bad.append(f"{module}: from {base} import {a.name}")
    return bad


def _graph(pkg: Path = None) -> dict[str, set[str]]:
    modules = module_names(pkg)
    return {m: imports_of(m, modules) for m in modules}


def layer_of(module: str) -> str | None:
    """The layer (subpackage) of a module; None for the package itself and the leaves."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(graph.items()):
        if m == "dejavid":
            continue  # the public API on top: lazily names the layers' entry points
        for d in sorted(deps):
            if d in SHARED or layer_of(d) == layer_of(m) and layer_of(m) is not None:
                if m in SHARED and d not in SHARED:
                    bad.append(f"{m} -> {d}")
                continue
            if m in SHARED or layer_of(m) is None or layer_of(d) not in ALLOWED[layer_of(m)]:
                bad.append(f"{m} -> {d}")
    return bad


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


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "dejavid"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_the_parser_sees_every_kind_of_import(tmp_path):
    """The checker itself: a cycle hidden behind importlib, an f-string, a lazy export
    table and a relative import is found."""
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "data/__init__.py": "from .. import lazy_exports\n"
                            "__getattr__ = lazy_exports(__name__, {'.a': ['f']})\n",
        "data/a.py": "import importlib\ndef f():\n    importlib.import_module('dejavid.model.b')\n",
        "model/__init__.py": "",
        "model/b.py": "def g(name):\n    import importlib\n"
                      "    return importlib.import_module(f'dejavid.model.c_{name}')\n",
        "model/c_x.py": "from ..data import a\n",
    })
    graph = _graph(pkg)
    assert graph == {"dejavid": set(), "dejavid.data": {"dejavid.data.a"},
                     "dejavid.data.a": {"dejavid.model.b"}, "dejavid.model": set(),
                     "dejavid.model.b": {"dejavid.model.c_x"},
                     "dejavid.model.c_x": {"dejavid.data.a"}}
    assert _cycle(graph) == ["dejavid.data.a", "dejavid.model.b", "dejavid.model.c_x",
                             "dejavid.data.a"]
    # data may not import model (upward); model may import data.
    assert layer_violations(graph) == ["dejavid.data.a -> dejavid.model.b"]


def test_the_layer_rule_catches_upward_and_leaf_imports(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "io.py": "from .alignment import op\n",                          # a leaf reaching up
        "alignment/__init__.py": "", "alignment/op.py": "from ..errors import X\n",
        "errors.py": "",
        "training/__init__.py": "", "training/run.py": "from ..estimators import c\n",
        "estimators/__init__.py": "", "estimators/c.py": "from ..training.run import fit\n",
        "stray.py": "",                                                    # no layer
        "report/__init__.py": "", "report/t.py": "from .. import stray\n",
    })
    assert layer_violations(_graph(pkg)) == [
        "dejavid.io -> dejavid.alignment.op",
        "dejavid.report.t -> dejavid.stray",
        "dejavid.training.run -> dejavid.estimators.c",
    ]


def test_no_import_cycle_in_the_package():
    graph = _graph()
    for m, deps in sorted(graph.items()):
        print(f"{m}: {', '.join(sorted(deps)) or '-'}")
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_every_import_in_the_package_resolves(tmp_path):
    assert unresolved_imports() == []
    pkg = _write(tmp_path, {"__init__.py": "", "report/__init__.py": "",
                            "report/t.py": "def f():\n    from . import gone\n"
                                           "    from ..report import t\n    from .t import f\n"})
    assert unresolved_imports(pkg) == ["dejavid.report.t: from dejavid.report import gone"]


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations(_graph()) == []


def test_every_module_lives_in_a_layer():
    """Outside the subpackages: only the package's __init__ and the shared leaves; every
    subpackage is a layer of the rule and states its job in its docstring."""
    modules = module_names()
    loose = {m for m in modules if layer_of(m) is None} - SHARED - {"dejavid"}
    assert loose == set(), loose
    for layer in ALLOWED:
        init = PKG / layer / "__init__.py"
        assert init.is_file(), layer
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subpackages == set(ALLOWED), subpackages ^ set(ALLOWED)


def test_backends_are_leaves_below_the_dispatch():
    graph = _graph()
    for backend in ("ref", "numba", "cuda"):
        module = f"dejavid.alignment.{backend}"
        assert graph[module] <= {"dejavid.alignment.backend"}, (backend, graph[module])
        assert module in graph["dejavid.alignment.op"]


def test_baselines_do_not_import_the_training_engine():
    graph = _graph()
    engine = {"dejavid.training.engine", "dejavid.training.run", "dejavid.training.signals",
              "dejavid.training.optim", "dejavid.estimators.classifier"}
    for start in ("dejavid.report.rows", "dejavid.baselines.classic",
                  "dejavid.baselines.temporal_heads", "dejavid.baselines.encoder"):
        reached = _reachable(graph, start)
        assert not reached & engine, (start, reached & engine)
    code = ("import sys, dejavid.report.rows; "
            "print(sorted(m for m in sys.modules if m.startswith('dejavid')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "dejavid.training.engine" not in out and "dejavid.training.run'" not in out, out


def test_light_modules_stay_light():
    """Device, metrics and exceptions import without the training engine; the package
    and the estimator import without torch."""
    graph = _graph()
    for m in ("dejavid.device", "dejavid.model.metrics", "dejavid.errors",
              "dejavid.alignment.backend", "dejavid.config.settings"):
        assert "dejavid.training.engine" not in _reachable(graph, m) | {m}, m
    code = ("import sys; import dejavid; from dejavid import DejaVidClassifier; "
            "import dejavid.alignment, dejavid.data, dejavid.model, dejavid.training; "
            "print('torch' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"], out


def test_old_public_import_paths_still_work():
    """The public API's module paths from before the layers: the same objects."""
    code = """
import dejavid
from dejavid.model import DejaVid
from dejavid.alignment import align
from dejavid.centroids import dba
from dejavid.train import fit
from dejavid.data import load_index
from dejavid.estimator import DejaVidClassifier
from dejavid.temporal_heads import AttentiveProbeClassifier, GRUClassifier
from dejavid.baseline_estimators import KNeighborsDTW
from dejavid.settings import LoopSpec, TrainSettings
import dejavid.train, dejavid.training.run
assert dejavid.train is dejavid.training.run
for name in ("DejaVid", "align", "dba", "fit", "load_index", "DejaVidClassifier"):
    assert getattr(dejavid, name) is globals()[name], name
from dejavid.training.run import fit as fit2
from dejavid.baselines.temporal_heads import GRUClassifier as G2
assert fit2 is fit and G2 is GRUClassifier
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_exports_of_every_layer_resolve():
    """Every name a subpackage's __init__ exports is defined where its table says."""
    code = """
import importlib, dejavid
for layer in %r:
    pkg = importlib.import_module("dejavid." + layer)
    for name in pkg.__all__:
        getattr(pkg, name)
print("ok")
""" % (sorted(ALLOWED),)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_the_readme_layout_is_the_folder_tree():
    """The README's package tree names every module of the package, each in its folder,
    and nothing else."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Package layout"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("```")]
    listed, folder = set(), None
    for line in block.splitlines():
        if line.startswith("dejavid/"):
            folder = "dejavid"
        elif line.startswith("  ") and not line.startswith("    ") and line.split()[0].endswith("/"):
            folder = "dejavid/" + line.split()[0].rstrip("/")
            continue
        words = line.split()
        names = []
        for w in words:
            if not w.endswith(".py"):
                break
            names.append(w)
        if folder is None:
            continue
        base = "dejavid" if line.startswith("  ") and not line.startswith("    ") else folder
        listed.update(f"{base}/{n}" for n in names)
    actual = {str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")}
    actual -= {str(p.relative_to(ROOT)) for p in PKG.glob("*/__init__.py") if p.parent.name != "runtime"}
    assert listed == actual, (sorted(listed - actual), sorted(actual - listed))
