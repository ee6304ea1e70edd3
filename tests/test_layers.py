"""The package's layers, read from the source: who may import whom, no cycles, recipes on public names only."""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_distil"

# The core: arguments, the two trainers, teacher handling, student surgery and the Trainer glue they need.
CORE = {
    "hf_distil.config",
    "hf_distil.trainer",
    "hf_distil.task_config",
    "hf_distil.task_trainer",
    "hf_distil.student",
    "hf_distil.teachers",
    "hf_distil.callbacks",
    "hf_distil.run_folder",
    "hf_distil.launch",
    "hf_distil.errors",
    "hf_distil.batch_terms",
    "hf_distil.model_card",
}
# What sits on top of the library and that the core must never need.
EXTENSIONS = ("hf_distil.deploy", "hf_distil.tasks", "hf_distil.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, importer: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every `from … import …` and `import …` of hf_distil in the file, lazy ones included."""
    package = importer if path.name == "__init__.py" else importer.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return [(target, names) for target, names in found if target.split(".")[0] == "hf_distil"]


@cache
def graph() -> dict[str, set[str]]:
    """{module: the hf_distil modules it imports}; `from package import module` counts as the module."""
    edges = {}
    for name, path in modules().items():
        targets = set()
        for target, names in _imports(path, name):
            submodules = {f"{target}.{n}" for n in names} & modules().keys()
            targets |= submodules or {target}
        edges[name] = targets - {name}
    return edges


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _package_of(module: str) -> str:
    """hf_distil.<top-level module or subpackage>."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_modules_or_between_packages():
    assert _cycles(graph()) == []
    packages: dict[str, set[str]] = {}
    for source, targets in graph().items():
        if source == "hf_distil":  # the top-level __init__ gathers the public names of every layer
            continue
        packages.setdefault(_package_of(source), set()).update(
            _package_of(t) for t in targets if _package_of(t) != _package_of(source)
        )
    assert _cycles(packages) == []


def test_the_core_imports_no_extension_and_the_library_no_command_line():
    core = [m for m in graph() if any(_within(m, c) for c in CORE)]
    assert "hf_distil.trainer" in core and "hf_distil.teachers.prepare" in core
    wrong = {m: sorted(t for t in graph()[m] if t.startswith(EXTENSIONS)) for m in core}
    assert {m: t for m, t in wrong.items() if t} == {}
    into_cli = {m: t for m, t in graph().items() if not _within(m, "hf_distil.cli") and any("cli" in x for x in t)}
    assert into_cli == {}


@pytest.mark.parametrize(
    "package, allowed",
    [
        ("hf_distil.losses", ("hf_distil.errors",)),
        ("hf_distil.hub", ("hf_distil.errors",)),
        ("hf_distil.models", ("hf_distil.errors", "hf_distil.losses")),
        ("hf_distil.data", ("hf_distil.errors", "hf_distil.losses")),
    ],
)
def test_lower_layers_import_only_what_is_below_them(package, allowed):
    """losses/ is pure maths, hub/ publishes what it is handed; models/ and data/ feed the loss."""
    outside = {
        m: sorted(t for t in targets if not _within(t, package) and not any(_within(t, a) for a in allowed))
        for m, targets in graph().items()
        if _within(m, package)
    }
    assert {m: t for m, t in outside.items() if t} == {}


def test_private_kernels_and_private_names_stay_where_they_belong():
    """losses/_ops is entered through losses/ only; no module imports another module's underscore names."""
    into_ops = [m for m, t in graph().items() if not _within(m, "hf_distil.losses") and any("._ops" in x for x in t)]
    assert into_ops == []
    crossing = [
        (name, target, imported)
        for name, path in modules().items()
        for target, names in _imports(path, name)
        for imported in names
        if imported.startswith("_") and not imported.startswith("__") and target != name
    ]
    assert crossing == []


def test_recipes_and_benchmarks_import_public_names_only():
    """From a package (names it lists in __all__) or a core module (names without an underscore), never from a
    module inside a package."""
    wrong = []
    scripts = [*ROOT.glob("recipes/*.py"), *ROOT.glob("benchmarks/*.py")]
    # benchmarks/kl_kernel.py times the private compiled kernel against its torch-op path: it must reach inside.
    for script in [s for s in scripts if s != ROOT / "benchmarks" / "kl_kernel.py"]:
        for target, names in _imports(script, "recipes.script"):
            if (ROOT / target.replace(".", "/") / "__init__.py").exists():
                public = set(getattr(importlib.import_module(target), "__all__", ()))
                wrong += [f"{script.name}: {target}.{n}" for n in names if n not in public]
            elif target in CORE:
                wrong += [f"{script.name}: {target}.{n}" for n in names if n.startswith("_")]
            else:
                wrong.append(f"{script.name}: {target} is a module inside a package")
    assert wrong == []


def test_the_library_names_no_repository_path_in_its_messages():
    """A pip user has no recipes/ or ds_configs/ folder: messages name functions, flags and commands instead."""
    pattern = re.compile(r"\b(recipes|ds_configs|model_cards|benchmarks)/")
    hits = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        hits += [
            f"{name}:{node.lineno}: {node.value[:70]!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and pattern.search(node.value)
        ]
    assert hits == []


def test_every_package_folder_ships():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert folders <= listed
