"""The package's rooms (docs/architecture.md): every module in one, old paths kept as aliases.

The core is the top level: its modules are the ones the import contract in
pyproject.toml holds to "the core never imports ... the rooms around it". Every other
module sits in a subpackage the architecture document names, or is the package's
face (``__init__``, ``__main__``, the old-path aliases, the CLI).
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest
import tomllib

from gmpo_kfp import _moved

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gmpo_kfp"
FACE = {"__init__", "__main__", "_moved", "cli"}


def _core() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (walls,) = [
        c
        for c in contracts["contracts"]
        if c["name"].startswith("the core never imports") and "rooms around it" in c["name"]
    ]
    return {m.removeprefix("gmpo_kfp.") for m in walls["source_modules"]}


def _rooms() -> dict[str, set[str]]:
    """The subpackages docs/architecture.md's room table names (``name/``: its modules)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Rooms", 1)[1].split("\n## ", 1)[0].split("\n###", 1)[0]
    rooms = {}
    for row in [r for r in table.splitlines() if r.startswith("|")][2:]:
        cell = row.split("|")[2]
        named = re.match(r"\s*`([a-z_]+)/`:(.*)", cell)
        if named:
            # what follows a ";" sits beside the room (components/, pipelines/ at the root)
            held = named.group(2).split(";")[0]
            rooms[named.group(1)] = set(re.findall(r"`([a-z_]+)/?`", held))
    return rooms


def test_every_module_is_in_a_named_room():
    core, rooms = _core(), _rooms()
    outside = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem not in core | FACE:
            outside.append(path.name)
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        if folder.name not in core | set(rooms):
            outside.append(f"{folder.name}/")
    assert outside == [], f"modules outside any room of docs/architecture.md: {outside}"
    # and each room holds what the document says it holds, no more, no less
    for room, modules in rooms.items():
        here = {p.stem for p in (PACKAGE / room).glob("*.py")} - {"__init__"}
        here |= {p.parent.name for p in (PACKAGE / room).glob("*/__init__.py")}
        assert here == modules, room


def test_the_core_is_what_the_contract_holds():
    # a contract naming a module that no longer exists would hold nothing
    for name in _core():
        assert (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists(), name


def _imported_names(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_no_code_of_ours_imports_an_old_path():
    old = []
    for folder in ("gmpo_kfp", "components", "pipelines", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "test_layout.py" or path == PACKAGE / "_moved.py":
                continue
            for line, name in _imported_names(path):
                if name in _moved.MOVED:
                    old.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert old == []


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_path_is_the_module_at_its_new_path_with_a_warning(old):
    new = importlib.import_module(_moved.MOVED[old])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import sys

        sys.modules.pop(old, None)
        aliased = importlib.import_module(old)
    assert aliased is new
    assert aliased.__spec__.name == _moved.MOVED[old]  # its own spec, not the alias's
    assert [str(w.message).split(";")[0] for w in caught] == [f"{old} moved to {new.__name__}"]
    assert all(w.category is DeprecationWarning for w in caught)


def test_a_submodule_of_a_moved_package_is_one_module_too():
    import gmpo_kfp.in_verl.cpu.platform as new

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("gmpo_kfp.verl_cpu.platform")
    assert old is new
    assert _moved.new_path("gmpo_kfp.verl_cpu.hooks") == "gmpo_kfp.in_verl.cpu.hooks"
    assert _moved.new_path("gmpo_kfp.stagesx") is None
