"""The three rings: void_ops never loads Prefect, Ray or SQLAlchemy; every ``__all__`` name exists."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

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


@pytest.mark.parametrize(
    "module",
    [
        *VOID_OPS,
        *(f"voidflow.{name}" for name in ("tasks.ledger", "tasks.shots", "tasks.batch", "flows.batch", "flows.params")),
    ],
)
def test_exported_names_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    exported = getattr(loaded, "__all__", None)
    assert exported, f"{module} has no __all__"
    assert [name for name in exported if not hasattr(loaded, name)] == []


# What each ring may not import, anywhere in its files (function-level imports included): imports point inward.
OUTER = {
    "void_ops": ("tasks", "flows", "deployments", "infra", "prefect", "ray", "sqlalchemy"),
    "tasks": ("flows", "deployments"),
    "infra": ("tasks", "flows", "deployments"),
}


@pytest.mark.parametrize("ring", sorted(OUTER))
def test_no_import_runs_outward(ring: str) -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted((root / ring).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.relative_to(root)}:{node.lineno} {name}" for name in names
                      if name.removeprefix("voidflow.").split(".")[0] in OUTER[ring]]  # fmt: skip
    assert found == [], f"{ring} imports outward: {found}"
