"""Imports point one way between the four packages (ARCHITECTURE.md): read from the source, so nothing runs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each package may import of the others. trainables imports spaces for spaces.vocabulary, the one
# table of config names; spaces and data import none of the others.
MAY_IMPORT = {
    "data": set(),
    "spaces": set(),
    "trainables": {"data", "spaces"},
    "search": {"data", "spaces", "trainables"},
}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(MAY_IMPORT)


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_packages_below_it(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/: the check reads the wrong folder"
    wrong = {path.relative_to(ROOT).as_posix(): sorted(imported_packages(path) - MAY_IMPORT[package] - {package})
             for path in modules}
    assert {name: others for name, others in wrong.items() if others} == {}
