"""DuckDB connections for the stages that read rows in SQL (the fits and the report).

Holds:
- ``connect()``: a context manager giving an in-memory DuckDB connection with a bounded
  memory limit, the threads this process may use, and a spill folder of its own;
- ``MEMORY_LIMIT``: the most memory DuckDB may hold while it scans rows;
- ``THREADS``: the threads DuckDB may use (``None``: the cores this process may use).

DuckDB sums in parallel, and a floating-point sum depends on the order of its terms. So
every sum whose digits reach a printed page is either over rows of one text (which DuckDB
reads in order) or written with an ``ORDER BY`` inside the aggregate, which sums in that
order whatever the threads.

Usage::

    from attnmag.sql import connect

    with connect() as connection:
        connection.sql("SELECT 42").fetchall()
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

__all__ = ["MEMORY_LIMIT", "THREADS", "connect"]

#: DuckDB's memory limit. Its default, 80% of the machine's memory, would let one scan take
#: most of a shared machine; with a fixed limit DuckDB spills its aggregation to a temporary
#: folder instead, so the memory of a fit or a report from a folder stays bounded however
#: large it is. What it holds grows with the texts (their sums), not the rows.
MEMORY_LIMIT = "256MB"
#: The threads DuckDB may use; ``None`` means the cores this process may use (DuckDB itself
#: would count the machine's).
THREADS: int | None = None


def _threads() -> int:
    """``THREADS``, or the cores this process may use."""
    if THREADS is not None:
        return THREADS
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def connect(*, keep_order: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with ``MEMORY_LIMIT``, ``THREADS`` and a spill folder.

    Parameters
    ----------
    keep_order : bool
        Keep the rows' order where a query does not sort them (DuckDB's
        ``preserve_insertion_order``); without it large scans hold less.

    Yields
    ------
    duckdb.DuckDBPyConnection
        Closed, and its spill folder removed, on leaving the block.

    Examples
    --------
    >>> with connect() as connection:
    ...     connection.sql("SELECT 6 * 7 AS answer").fetchall()
    [(42,)]
    """
    with tempfile.TemporaryDirectory(prefix="attnmag-duckdb-") as spill:
        config = {
            "memory_limit": MEMORY_LIMIT,
            "threads": _threads(),
            "temp_directory": spill,
            "preserve_insertion_order": keep_order,
        }
        connection = duckdb.connect(":memory:", config=config)
        try:
            yield connection
        finally:
            connection.close()
