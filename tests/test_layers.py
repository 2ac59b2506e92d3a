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


# ---------------------------------------------------------------- inside mt: a direction, no cycles, small functions

# What each part of the library must never import: the tasks (mt train, mt pretrain) plug the recipes into the
# loop; the loop knows no recipe and no task; decoding knows no training; the model knows none of them.
NEVER = {
    "mt.data": {"mt.model", "mt.fast", "mt.backends", "mt.decode", "mt.train", "mt.recipes", "mt.tasks", "mt.cli"},
    "mt.model": {"mt.fast", "mt.backends", "mt.decode", "mt.train", "mt.recipes", "mt.tasks", "mt.cli"},
    "mt.fast": {"mt.backends", "mt.decode", "mt.train", "mt.recipes", "mt.tasks", "mt.cli"},
    "mt.decode": {"mt.train", "mt.recipes", "mt.tasks", "mt.cli"},
    "mt.train": {"mt.decode", "mt.recipes", "mt.tasks", "mt.cli"},
    "mt.recipes": {"mt.tasks", "mt.cli"},
    "mt.tasks": {"mt.cli"},
}
SOURCE = [path for package in ALLOWED for path in sorted((ROOT / package).rglob("*.py"))]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project's modules a file imports, anywhere in it (functions and TYPE_CHECKING blocks included):
    ``from mt.x import y`` counts as mt.x.y when that is a module, else as mt.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= subs or {node.module}
            if len(subs) < len(node.names):
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    known = {module_name(path) for path in SOURCE}
    return {module_name(path): imported_modules(path, known) - {module_name(path)} for path in SOURCE}


def test_no_import_cycles_between_modules():
    graph, done, path, cycles = import_graph(), set(), [], []

    def visit(node: str) -> None:
        if node in path:
            cycles.append(" -> ".join(path[path.index(node):] + [node]))
            return
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert not cycles, cycles


@pytest.mark.parametrize("part", sorted(NEVER))
def test_each_part_of_the_library_imports_only_what_is_below_it(part):
    wrong = sorted(f"{module} imports {target}" for module, targets in import_graph().items()
                   if module == part or module.startswith(part + ".")
                   for target in targets if any(target == n or target.startswith(n + ".") for n in NEVER[part]))
    assert not wrong, wrong


def test_functions_are_short_and_the_loop_is_small():
    """No function over 60 lines (a reader holds one on a screen); the training loop, which every task runs,
    stays within 350 lines, so that an experiment cannot quietly grow inside it."""
    long = []
    for path in SOURCE:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
    assert len((ROOT / "mt" / "train" / "loop.py").read_text(encoding="utf-8").splitlines()) <= 350


# ---------------------------------------------------------------- no hidden switches

PRODUCT_AND_DRIVERS = SOURCE + sorted(p for folder in ("bench", "experiments") for p in (ROOT / folder).rglob("*.py"))


def _is_record(node: ast.ClassDef) -> bool:
    """A dataclass or NamedTuple: its class-level names declare the fields of each instance."""
    names = [getattr(d, "id", getattr(d, "attr", "")) for d in node.decorator_list] + \
        [getattr(b, "id", getattr(b, "attr", "")) for b in node.bases]
    return "dataclass" in names or "NamedTuple" in names or any(
        isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass" for d in node.decorator_list)


def _defined_attributes() -> dict[str, set[str]]:
    """Every module-level and class-level name that ``mt`` assigns (not the fields of records), by name -> the
    modules that define it."""
    defined: dict[str, set[str]] = {}
    for path in sorted((ROOT / "mt").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bodies = [tree.body] + [node.body for node in ast.walk(tree)
                                if isinstance(node, ast.ClassDef) and not _is_record(node)]
        for body in bodies:
            for node in body:
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign) else []
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            defined.setdefault(name.id, set()).add(module_name(path))
    return defined


def test_no_module_or_class_attribute_of_mt_is_switched_from_outside_its_module():
    """A module-level or class-level setting that other code flips (``Decoder.fused = False``, a flag a benchmark
    sets) is a hidden switch: the same call then computes differently depending on who ran before. Settings are
    constructor arguments, config keys or method calls instead. Also refused: ``global`` rebinding in ``mt``
    (module state that functions change) and ``setattr`` on those names."""
    defined = _defined_attributes()
    found = []
    for path in PRODUCT_AND_DRIVERS:
        here = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Global) and here.startswith("mt"):
                found.append(f"{here}:{node.lineno} global {', '.join(node.names)}")
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            names = [t.attr for t in targets  # self.x = ...: an instance's own attribute
                     if isinstance(t, ast.Attribute) and getattr(t.value, "id", None) != "self"]
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "setattr" \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                names.append(node.args[1].value)
            for name in names:
                owners = defined.get(name, set()) - {here}
                if owners and not name.startswith("__"):
                    found.append(f"{here}:{node.lineno} assigns {name} (defined at module or class level in "
                                 f"{', '.join(sorted(owners))})")
    assert not found, found


def test_nothing_registers_a_global_hook_at_import():
    """``register_*_hook`` at a module's top level changes every model or optimizer of the process on import."""
    found = []
    for path in PRODUCT_AND_DRIVERS:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            for call in ast.walk(node):
                name = getattr(getattr(call, "func", None), "id", None) or getattr(getattr(call, "func", None), "attr", "")
                if isinstance(call, ast.Call) and name.startswith("register_") and name.endswith("hook") and \
                        not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    found.append(f"{module_name(path)}:{call.lineno} {name}")
    assert not found, found
