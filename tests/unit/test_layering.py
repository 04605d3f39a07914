"""The import rules of DESIGN.md, checked on the source: edges never reach the store, capabilities never
reach an edge. Read with ast, so an import inside a function or under TYPE_CHECKING counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BERTH = Path(__file__).resolve().parents[2] / "berth"


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` (a module of `package`) imports, as absolute dotted names
    (`from berth import db` gives berth.db too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _violations(package: str, forbidden: str) -> list[str]:
    bad = []
    for path in sorted((BERTH / package).rglob("*.py")):
        package_of = ".".join(path.relative_to(BERTH.parent).parts[:-1])
        for module in sorted(imported_modules(path.read_text(), package_of)):
            if module == forbidden or module.startswith(forbidden + "."):
                bad.append(f"{path.relative_to(BERTH.parent)} imports {module}")
    return bad


def test_edges_import_no_store_module() -> None:
    assert _violations("api", "berth.db") == []


@pytest.mark.parametrize("package", ["registry", "iam", "storage", "db", "jobs", "lifecycle", "scanning",
                                     "replication"])
def test_capabilities_import_no_edge(package: str) -> None:
    assert _violations(package, "berth.api") == []


@pytest.mark.parametrize("line", ["import berth.db.registry", "from berth.db.registry import RepoRow",
                                  "from berth import db", "from ...db import store"])
def test_the_check_sees_every_import_form(line: str) -> None:
    found = imported_modules(f"def f():\n    {line}\n", "berth.api.oci")
    assert any(m == "berth.db" or m.startswith("berth.db.") for m in found), found
