"""The shape of the house: imports run one way, and no module reaches into another's privates.

Every import in ``vsconf/`` counts -- at the top of a module, inside a function (a lazy
import is still a dependency), or under ``TYPE_CHECKING``.  The checks:

* no circle: the modules import each other in no loop (so no import runs back up);
* no module imports the package root ``vsconf`` (it only hands names on);
* no module takes another module's underscore names, by ``from m import _x`` or ``m._x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vsconf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {_module_name(path) for path in PACKAGE.rglob("__init__.py")}


def _absolute(module: str, level: int, name: str | None, importer: str) -> str:
    if level == 0:
        return name or ""
    base = importer.split(".")
    if importer not in PACKAGES:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.startswith("vsconf")]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(name, node.level, node.module, name)
            if not source.startswith("vsconf"):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # `from vsconf import api`: the module itself
                    found.append((submodule, None, node.lineno))
                else:
                    found.append((source, alias.name, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name) if target in MODULES and target != name} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_modules_import_each_other_in_no_circle():
    graph = _graph()
    # Subpackages' faces (__init__) only hand their rooms' names on: an edge into a room's
    # package from the room itself is the face importing it back, not a circle of work.
    for package in PACKAGES:
        for member in list(graph[package]):
            if member.startswith(package + "."):
                graph[member].discard(package)
    assert _cycles(graph) == []


def test_no_module_imports_the_package_root():
    offenders = [
        f"{name}:{line}" for name in MODULES if name != "vsconf" for target, _, line in _imports(name) if target == "vsconf"
    ]
    assert offenders == []


def test_no_module_reaches_into_another_modules_private_names():
    offenders = []
    for name in MODULES:
        for target, taken, line in _imports(name):
            if taken and taken.startswith("_") and not taken.startswith("__") and target != name:
                offenders.append(f"{name}:{line} takes {target}.{taken}")
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _absolute(name, node.level, node.module, name).startswith("vsconf"):
                source = _absolute(name, node.level, node.module, name)
                for alias in node.names:
                    if f"{source}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{name}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    assert offenders == []


def test_one_list_of_public_names_and_each_is_what_its_module_defines():
    import importlib

    import vsconf

    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING")
    listed = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert vsconf.__all__ == sorted([*listed, "__version__"])
    for name, module in listed.items():
        assert getattr(vsconf, name) is getattr(importlib.import_module(module), name), name
    assert set(vsconf.__all__) <= set(dir(vsconf))


def test_every_package_of_the_tree_is_installed():
    """A folder of modules that pyproject.toml does not list is missing from every install."""
    import re

    text = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")  # tomllib is 3.11+: the line is enough
    listed = set(ast.literal_eval(re.search(r"^packages = (\[.*\])$", text, re.M).group(1)))
    assert listed == PACKAGES
