"""The benchmark pages' tables come from the results files the benchmarks write."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = sorted((ROOT / "docs").glob("benchmarks*.md"))
SPEC = importlib.util.spec_from_file_location(
    "benchmark_results", ROOT / "docs" / "_ext" / "benchmark_results.py"
)
EXTENSION = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(EXTENSION)
USED = sorted(
    {
        match
        for page in PAGES
        for match in re.findall(r"```\{benchmark-results\} (\S+)", page.read_text())
    }
)


def test_the_benchmark_pages_render_results_files() -> None:
    assert USED, "no page renders a results file"


@pytest.mark.parametrize("name", USED)
def test_each_results_file_a_page_renders_names_its_command(name: str) -> None:
    record = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
    assert record["command"].startswith(f"python -m benchmarks.{name.split('-')[0]}")
    assert record["rows"] and all(len(row) == len(record["columns"]) for row in record["rows"])


def test_a_results_table_is_markdown_with_its_pipes_escaped() -> None:
    table = EXTENSION.markdown_table(["method", "s"], [["a|b", 1.5]])
    assert table.splitlines() == ["| method | s |", "| --- | --- |", "| a\\|b | 1.5 |"]
