"""DuckDB connections with the package's settings, for the fits and the reports.

Holds:
- ``MEMORY_LIMIT``: the most memory DuckDB may hold while it scans rows;
- ``n_threads``: ``n_jobs`` as the fits and reports take it -> a number of threads;
- ``connect``: an in-memory connection with that limit, those threads and a spill folder of
  its own.

DuckDB sums in parallel, and a floating-point sum depends on the order of its terms. So
every sum whose digits reach a printed page is either over the rows of one text (which
DuckDB reads in order) or written with an ``ORDER BY`` inside the aggregate, which sums in
that order whatever the threads.

>>> with connect() as connection:
...     connection.execute("SELECT 1 + 1").fetchone()
(2,)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from attnmag.errors import AttnmagError

__all__ = ["MEMORY_LIMIT", "connect", "n_threads"]

#: DuckDB's memory limit. Its default, 80% of the machine's memory, would let one scan take
#: most of a shared machine; with a fixed limit DuckDB spills its aggregation to a temporary
#: folder instead, so the memory of a fit from a folder stays bounded however large it is.
#: What it holds grows with the texts (its per-text sums), not the rows
#: (``benchmarks/scale.py``).
MEMORY_LIMIT = "256MB"


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


@contextmanager
def connect(
    n_jobs: int | None = None, *, keep_order: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with ``MEMORY_LIMIT``, ``n_threads(n_jobs)`` threads
    (DuckDB would count the machine's cores) and its own spill folder (not ``.tmp`` in the
    working directory); closed on exit. ``keep_order=False`` lets DuckDB return rows out of
    their stored order where a query does not order them (less memory for large scans).

    Examples
    --------
    >>> with connect(1) as connection:
    ...     connection.sql("SELECT current_setting('threads')").fetchall()
    [(1,)]
    """
    threads = n_threads(n_jobs)
    spill = tempfile.mkdtemp(prefix="attnmag-duckdb-")
    config = {
        "memory_limit": MEMORY_LIMIT,
        "threads": threads,
        "temp_directory": spill,
        "preserve_insertion_order": keep_order,
    }
    try:
        connection = duckdb.connect(":memory:", config=config)
        try:
            yield connection
        finally:
            connection.close()
    finally:
        # DuckDB removes what it spilled when it closes; the folder is then empty.
        try:
            os.rmdir(spill)
        except OSError:
            shutil.rmtree(spill, ignore_errors=True)
