"""The rings: void_ops never loads Prefect, Ray or SQLAlchemy; imports point inward, without circles; every
module's ``__all__`` is exactly its public names."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import voidflow.void_ops

VOID_OPS = sorted(
    m.name for m in pkgutil.walk_packages(voidflow.void_ops.__path__, "voidflow.void_ops.") if not m.ispkg
)


@pytest.mark.parametrize("module", VOID_OPS)
def test_void_ops_never_imports_orchestration(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "outer = ('prefect', 'ray', 'sqlalchemy', 'voidflow.tasks', 'voidflow.flows', 'voidflow.infra'); "
        "bad = sorted(m for m in outer if m in sys.modules); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"


RINGS = ("void_ops", "tasks", "flows", "infra", "deployments")
ROOT = Path(__file__).resolve().parents[1]
#: Every module file of the rings, by its installed name (Alembic's migration scripts are not modules of ours).
MODULES = {
    "voidflow." + ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
    for ring in RINGS
    for path in sorted((ROOT / ring).rglob("*.py"))
    if "migrations" not in path.parts
}


def _defined_public(tree: ast.Module) -> set[str]:
    """Names a module defines at top level (functions, classes, constants) that do not start with ``_``."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_all_is_exactly_the_public_names(module: str) -> None:
    """``__all__`` lists every public name the module defines, and every name it lists exists (re-exports of
    names the module imports on purpose are allowed)."""
    loaded = importlib.import_module(module)
    exported = getattr(loaded, "__all__", None)
    assert exported is not None, f"{module} has no __all__"
    assert [name for name in exported if not hasattr(loaded, name)] == [], f"{module}: __all__ names a missing name"
    assert len(set(exported)) == len(exported), f"{module}: __all__ repeats a name"
    missing = _defined_public(ast.parse(MODULES[module].read_text())) - set(exported)
    assert missing == set(), f"{module} defines public names its __all__ leaves out: {sorted(missing)}"


def _imports(module: str) -> set[str]:
    """The modules of ours that ``module`` imports anywhere in its file (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {name for name in found if name in MODULES and name != module}


def test_no_import_circles() -> None:
    """No module of the rings reaches itself through its imports (a package may import its own submodules)."""
    graph = {module: _imports(module) for module in MODULES}
    circles = []
    for start in sorted(graph):
        stack, seen = [(start, (start,))], set()
        while stack:
            current, path = stack.pop()
            for following in sorted(graph[current]):
                if following == start and not all(step.startswith(start + ".") for step in path[1:]):
                    circles.append(" -> ".join((*path, start)))
                elif following not in seen:
                    seen.add(following)
                    stack.append((following, (*path, following)))
    assert circles == []


# What each ring may not import, anywhere in its files (function-level imports included): imports point inward.
OUTER = {
    "void_ops": ("tasks", "flows", "deployments", "infra", "prefect", "ray", "sqlalchemy"),
    "tasks": ("flows", "deployments"),
    "flows": ("deployments",),
    "infra": ("tasks", "flows", "deployments"),
}


@pytest.mark.parametrize("ring", sorted(OUTER))
def test_no_import_runs_outward(ring: str) -> None:
    root = ROOT
    found = []
    for path in sorted((root / ring).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.relative_to(root)}:{node.lineno} {name}" for name in names
                      if name.removeprefix("voidflow.").split(".")[0] in OUTER[ring]]  # fmt: skip
    assert found == [], f"{ring} imports outward: {found}"
