"""The benchmark pages' tables are the results files the benchmarks write (``--results``)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
INCLUDED = sorted(
    {
        name
        for page in DOCS.glob("benchmarks*.md")
        for name in re.findall(r"```\{include\} (results/\S+)", page.read_text())
    }
)


@pytest.mark.parametrize("name", INCLUDED)
def test_each_included_results_file_opens_with_the_command_that_wrote_it(name: str) -> None:
    lines = (DOCS / name).read_text().splitlines()
    module = Path(name).stem.split("-")[0]  # extract-small.md: another run of extract
    assert lines[0].startswith(f"`python -m benchmarks.{module}"), lines[0]
    assert "load average" in lines[0]
    header, rule, *rows = [line for line in lines[2:] if line.startswith("|")]
    assert rows and all(row.count("|") == header.count("|") for row in [rule, *rows])


def test_the_fits_table_comes_from_its_results_file() -> None:
    assert "results/fit.md" in INCLUDED
