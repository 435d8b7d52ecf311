"""No module of the package (``attnmag/``, ``extract/``, ``models/``, ``reports/``) imports
another module's private names (``_name``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("attnmag", "extract", "models", "reports")


def private_imports(path: Path) -> list[str]:
    """``module._name`` for each private name ``path`` imports from the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnmag"):
            found += [f"{node.module}.{a.name}" for a in node.names if _private(a.name)]
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if any(p.startswith("_") for p in a.name.split("."))
            ]
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for folder in PACKAGE_FOLDERS for p in (ROOT / folder).glob("*.py")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_no_private_name_is_imported_from_another_module(path):
    assert private_imports(path) == []


def test_the_check_sees_a_private_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from attnmag.extract.shards import _merged_provenance, read_manifest\n")
    assert private_imports(module) == ["attnmag.extract.shards._merged_provenance"]


def _private(name: str) -> bool:
    """A leading underscore, but not a dunder such as ``__version__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
