"""The house's import rules (ARCHITECTURE.md), read from the source, so nothing is imported or run:
imports point one way between the four packages, and each outside system stays in its rooms."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("data", "spaces", "trainables", "search")
# What each package may import of the others. trainables imports spaces for spaces.vocabulary, the one
# table of config names; spaces and data import none of the others.
MAY_IMPORT = {
    "data": set(),
    "spaces": set(),
    "trainables": {"data", "spaces"},
    "search": {"data", "spaces", "trainables"},
}
# Where each library may be imported: Ray in `search` and in the Tune adapter of the trial (trainables/train.py:
# tune.report, tune.get_checkpoint, the CPUs Ray assigned); MLflow in `search` only.
ALLOWED = {"ray": ("search/", "trainables/train.py"), "mlflow": ("search/",)}


def imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_packages_below_it(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/: the check reads the wrong folder"
    wrong = {path.relative_to(ROOT).as_posix(): sorted(imported_top_names(path) & set(MAY_IMPORT)
                                                       - MAY_IMPORT[package] - {package})
             for path in modules}
    assert {name: others for name, others in wrong.items() if others} == {}


@pytest.mark.parametrize("library", sorted(ALLOWED))
def test_a_library_is_imported_only_in_its_rooms(library):
    modules = [path for room in ROOMS for path in (ROOT / room).rglob("*.py")]
    importing = {path.relative_to(ROOT).as_posix() for path in modules if library in imported_top_names(path)}
    assert importing, f"no module imports {library}: the check reads the wrong files"
    outside = sorted(name for name in importing if not name.startswith(ALLOWED[library]))
    assert outside == [], f"{library} imported outside {ALLOWED[library]}"
