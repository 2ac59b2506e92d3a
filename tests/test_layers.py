"""The packages are layers: each imports only those below it, so the import graph between them has no cycle.

    demo, eval  ->  data_prep  ->  mt       (eval and demo never import each other)

``mt`` reaches the commands of the packages above it through the ``mt.commands`` entry points, never by import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"mt": {"mt"}, "data_prep": {"mt", "data_prep"}, "eval": {"mt", "data_prep", "eval"},
           "demo": {"mt", "data_prep", "demo"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every import in a file, the ones inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    own = set(ALLOWED)
    wrong = {f"{path.relative_to(ROOT)} imports {name}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for name in imported_packages(path) & own - ALLOWED[package]}
    assert not wrong, sorted(wrong)


def test_entry_points_name_the_commands_of_the_upper_packages():
    from mt.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"prepare", "train", "pretrain", "generate", "average", "translate", "eval", "score", "demo"} <= set(commands)
