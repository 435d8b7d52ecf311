"""The ``benchmark-results`` directive: a benchmark's results file as a table, at build time.

Each benchmark writes its table to ``benchmarks/results/<name>.json`` (``save_results`` in
``benchmarks/common.py``): the command that ran, the date, the machine, its load, notes,
columns and rows. In a page,

    ```{benchmark-results} fit
    ```

renders ``fit.json`` as a table under a line naming that command, so the figures a page
shows are the ones the run wrote, never copied by hand; ``:columns: a, b`` shows those
columns only. A missing file or column is a build error.
"""

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def markdown_table(columns: list[str], rows: list[list[object]]) -> str:
    """A Markdown pipe table; ``|`` in a cell escaped."""

    def line(cells: list[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(columns), line(["---"] * len(columns)), *map(line, rows)])


class BenchmarkResults(SphinxDirective):
    """Renders ``benchmarks/results/<argument>.json``."""

    required_arguments = 1
    option_spec = {"columns": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        path = RESULTS / f"{self.arguments[0]}.json"
        if not path.is_file():
            raise self.error(f"no results file {path}: run the benchmark that writes it")
        self.env.note_dependency(str(path))
        record = json.loads(path.read_text(encoding="utf-8"))
        columns = record["columns"]
        shown = [c.strip() for c in self.options.get("columns", "").split(",") if c.strip()]
        unknown = sorted(set(shown) - set(columns))
        if unknown:
            raise self.error(f"{path.name} has no columns {unknown}; it has {columns}")
        keep = [columns.index(c) for c in shown or columns]
        rows = [[row[i] for i in keep] for row in record["rows"]]
        text = (
            f"`{record['command']}` ({record['date']}; {record['machine']}; load average "
            f"{record['load_average']} at the end). {' '.join(record['notes'])}\n\n"
            + markdown_table([columns[i] for i in keep], rows)
        )
        container = nodes.container(classes=["benchmark-results"])
        self.state.nested_parse(StringList(text.splitlines(), path.name), 0, container)
        return [container]


def setup(app) -> dict:
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
