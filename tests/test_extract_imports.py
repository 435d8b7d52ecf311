"""The extract stage's modules import one another without cycles, and each declares its
surface: no module imports, at module level (``TYPE_CHECKING`` blocks included), a module
that imports it back, and every name in a module's ``__all__`` is defined there."""

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import attnmag
from attnmag import extract

MODULES = [
    "attnmag",
    *(f"attnmag.{m.name}" for m in pkgutil.iter_modules(attnmag.__path__)),
    *(f"attnmag.extract.{m.name}" for m in pkgutil.iter_modules(extract.__path__)),
]
CHECKED = [name for name in MODULES if name not in ("attnmag.__main__",)]


def module_file(name: str) -> Path:
    """The source file of module ``name``, found without importing it."""
    return Path(importlib.util.find_spec(name).origin)


def module_level_imports(name: str) -> set[str]:
    """The attnmag modules ``name`` imports outside functions (``if``/``try``/``with``
    blocks, ``TYPE_CHECKING`` among them, included)."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnmag"):
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("attnmag"))
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(module_file(name).read_text()).body)
    # A package's own __init__ is not an import back: importing a submodule runs it anyway.
    return {m for m in found if m in MODULES and m != name and not name.startswith(m + ".")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle of ``graph``, once, starting at its smallest module."""
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append([*path, nxt])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_module_imports_a_module_that_imports_it_back():
    graph = {name: module_level_imports(name) for name in MODULES}
    assert "attnmag.extract.frame" in graph["attnmag.extract.shards"]  # the graph is read
    assert cycles(graph) == []


@pytest.mark.parametrize("name", CHECKED)
def test_each_module_declares_its_surface(name):
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    assert all(not n.startswith("_") or n == "__version__" for n in module.__all__)
    assert all(hasattr(module, n) for n in module.__all__)


def test_the_shard_functions_are_the_stages():
    assert {"write_shards", "read_shards", "verified_shards", "read_frame"} <= set(extract.__all__)
    assert extract.read_shards is extract.shards.read_shards


def test_the_fits_and_reports_and_a_folders_reading_import_no_torch():
    """``attnmag fit`` and ``attnmag report`` need neither torch nor transformers: the
    measuring modules are imported where a run measures."""
    code = (
        "import sys, attnmag.models, attnmag.reports\n"
        "from attnmag.extract import combine, read_frame, read_shards, scan, verified_shards\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "from attnmag.extract import write_shards\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "[]"]
