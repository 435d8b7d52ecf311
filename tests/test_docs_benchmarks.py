"""The docs' benchmark tables are the results files the benchmarks write (``--results``)."""

import itertools
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
INCLUDED = sorted(
    {
        name
        for page in DOCS.glob("*.md")
        for name in re.findall(r"```\{include\} (results/\S+\.md)", page.read_text())
    }
)


@pytest.mark.parametrize("name", INCLUDED)
def test_each_included_results_file_opens_with_the_command_that_wrote_it(name: str) -> None:
    """``results/MODULE.md`` or ``results/MODULE-WHAT.md`` opens with ``python -m
    benchmarks.MODULE``, the load average and a table."""
    lines = (DOCS / name).read_text().splitlines()
    module = Path(name).stem.split("-")[0]
    assert lines[0].startswith(f"`python -m benchmarks.{module}"), lines[0]
    assert "load average" in lines[0]
    header, rule, *rows = itertools.takewhile(lambda line: line.startswith("|"), lines[2:])
    assert rows and all(row.count("|") == header.count("|") for row in [rule, *rows])


def test_the_benchmark_tables_come_from_results_files() -> None:
    expected = [
        *("fit", "fit-against", "precision", "batch_memory", "folder", "scale-fits"),
        *("end_to_end-long", "kills", "lags", "trend_coverage", "sites_heads", "tracks"),
        *("reml", "reml-frame", "mutation", "mutation-extract"),
    ]
    assert {f"results/{name}.md" for name in expected} <= set(INCLUDED)


def test_every_results_file_is_shown_by_a_page() -> None:
    """A results file no page includes (``{include}`` or a csv-table's ``:file:``) is stale."""
    pages = "\n".join(page.read_text() for page in DOCS.glob("*.md"))
    unused = [p.name for p in (DOCS / "results").iterdir() if f"results/{p.name}" not in pages]
    assert not unused, unused
