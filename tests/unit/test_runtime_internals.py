"""Faust and aiokafka internals stay in runtime/, and still exist as the runtime expects.

faust-streaming and aiokafka are pinned, but an upgrade that renames a private method
would silently stop an override being called: these tests fail first.
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from runtime.internals import PRIVATE_NAMES, PrivateName

ROOT = Path(__file__).resolve().parents[2]
PARTS = sorted(
    p.name
    for p in ROOT.iterdir()
    if (p / "__init__.py").exists() and p.name not in {"tests", "scripts"}
)


def owner_of(entry: PrivateName) -> object:
    module, _, qualname = entry.owner.partition(":")
    owner: object = importlib.import_module(module)
    for name in filter(None, qualname.split(".")):
        owner = getattr(owner, name)
    return owner


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=lambda e: f"{e.owner}.{e.name}")
def test_every_private_name_the_runtime_uses_is_still_there(entry: PrivateName):
    owner = owner_of(entry)
    if entry.signature is not None:
        assert str(inspect.signature(getattr(owner, entry.name))) == entry.signature, entry.use
    elif inspect.isclass(owner):
        declared = any(entry.name in vars(c).get("__annotations__", {}) for c in owner.__mro__)
        assigned = any(
            re.search(rf"self\.{entry.name}\b\s*(:[^=]*)?=", inspect.getsource(c))
            for c in owner.__mro__
            if c.__module__.split(".")[0] in {"faust", "aiokafka"}
        )
        assert declared or assigned, f"{entry.owner} no longer has {entry.name}: {entry.use}"
    else:
        assert hasattr(owner, entry.name), f"{entry.owner} no longer has {entry.name}: {entry.use}"


def python_files(*parts: str) -> list[Path]:
    return [path for part in parts for path in sorted((ROOT / part).rglob("*.py"))]


def test_nothing_outside_the_runtime_names_a_private_faust_or_aiokafka_name():
    names = {entry.name for entry in PRIVATE_NAMES}
    offenders = []
    for path in python_files(*(p for p in PARTS if p != "runtime"), "scripts"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            used = None
            if isinstance(node, ast.Attribute) and node.attr in names:
                used = node.attr
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
                "faust",
                "aiokafka",
                "mode",
            }:
                used = next((a.name for a in node.names if a.name.startswith("_")), None)
            if used:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {used}")
    assert offenders == []


def imports_between_parts() -> dict[str, set[str]]:
    """Top-level part -> the other parts its modules import."""
    graph: dict[str, set[str]] = {part: set() for part in PARTS}
    for part in PARTS:
        for path in python_files(part):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                graph[part] |= {m.split(".")[0] for m in modules} & set(PARTS) - {part}
    return graph


def test_the_top_level_parts_import_each_other_without_a_cycle():
    graph = imports_between_parts()
    cycles = []

    def visit(part: str, path: list[str]) -> None:
        for following in sorted(graph[part]):
            if following in path:
                cycles.append(" -> ".join([*path[path.index(following) :], following]))
            else:
                visit(following, [*path, following])

    for part in PARTS:
        visit(part, [part])
    assert cycles == []


def test_stages_tables_and_sinks_are_wired_and_never_reach_for_the_app():
    graph = imports_between_parts()
    for part in ("agents", "tables", "sinks", "schemas", "runtime", "web"):
        assert "app" not in graph[part], part
        assert "config" not in graph.get(part, set()), part
    assert graph["schemas"] == set()
    assert graph["sinks"] <= {"schemas"}
