"""DuckDB connections with the package's settings, for the fits and the reports.

Holds:
- ``MEMORY_LIMIT``: the most memory DuckDB may hold while it scans rows;
- ``n_threads``: ``n_jobs`` as the fits and reports take it -> a number of threads;
- ``database``: the process's one in-memory DuckDB database, with that limit and a spill
  folder of its own, and an attached compressed store (``STORE``) for tables kept between
  queries (a shard folder's rows, ``models.source``);
- ``connect``: a connection to that database with ``n_threads`` threads.

DuckDB sums in parallel, and a floating-point sum depends on the order of its terms. So
every sum whose digits reach a printed page is either over the rows of one text (which
DuckDB reads in order) or written with an ``ORDER BY`` inside the aggregate, which sums in
that order whatever the threads.

>>> with connect() as connection:
...     connection.execute("SELECT 1 + 1").fetchone()
(2,)
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from attnmag.errors import AttnmagError

__all__ = ["MEMORY_LIMIT", "STORE", "connect", "database", "n_threads"]

#: DuckDB's memory limit. Its default, 80% of the machine's memory, would let one scan take
#: most of a shared machine; with a fixed limit DuckDB spills its aggregation to a temporary
#: folder instead, so the memory of a fit from a folder stays bounded however large it is.
#: It holds a loaded folder's compressed table and what a query needs, which grows with the
#: texts (their per-text sums) and a part's rows (``models.source.PART_ROWS``), not the
#: folder's rows (``benchmarks/scale.py``).
MEMORY_LIMIT = "256MB"
#: The attached in-memory database whose tables DuckDB keeps compressed (once checkpointed).
STORE = "store"
#: The process's database, once opened (``database``).
_OPENED: list[duckdb.DuckDBPyConnection] = []


def n_threads(n_jobs: int | None) -> int:
    """``n_jobs`` -> a number of threads (``None`` or -1: one per core this process may use).

    >>> n_threads(3)
    3
    """
    if n_jobs is None or n_jobs == -1:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise AttnmagError(f"n_jobs must be a positive number of threads, None or -1, not {n_jobs}")
    return n_jobs


def database() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database, opened on first use: ``MEMORY_LIMIT`` (its
    tables included; beyond it DuckDB spills to a folder of its own, not ``.tmp`` in the
    working directory, removed at exit) and ``STORE`` attached with compression.

    >>> database() is database()
    True
    """
    if not _OPENED:
        spill = tempfile.mkdtemp(prefix="attnmag-duckdb-")
        config = {"memory_limit": MEMORY_LIMIT, "temp_directory": spill}
        connection = duckdb.connect(":memory:", config=config)
        connection.execute(f"ATTACH ':memory:' AS {STORE} (COMPRESS)")
        atexit.register(_close, connection, spill)
        _OPENED.append(connection)
    return _OPENED[0]


def _close(connection: duckdb.DuckDBPyConnection, spill: str) -> None:
    """Close the process's database and remove its spill folder."""
    connection.close()
    shutil.rmtree(spill, ignore_errors=True)


@contextmanager
def connect(
    n_jobs: int | None = None, *, keep_order: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to ``database()`` with ``n_threads(n_jobs)`` threads (DuckDB would count
    the machine's cores); closed on exit. ``keep_order=False`` lets DuckDB return rows out
    of their stored order where a query does not order them (less memory for large scans).
    Both are the database's settings, set anew by each ``connect``; what a connection
    registers or creates as a temporary view is its own.

    Examples
    --------
    >>> with connect(1) as connection:
    ...     connection.sql("SELECT current_setting('threads')").fetchall()
    [(1,)]
    """
    threads = n_threads(n_jobs)
    connection = database().cursor()
    try:
        connection.execute(f"SET threads = {threads}")
        connection.execute(f"SET preserve_insertion_order = {keep_order}")
        yield connection
    finally:
        connection.close()
