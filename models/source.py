"""What a fit or a report reads: a frame's or a shard folder's rows, as one DuckDB view.

Holds:
- ``Source``: a tidy frame's rows (registered with DuckDB, not copied) or a shard folder's
  (its table in ``attnmag.database``'s store), shown to SQL as the view ``frame``;
- ``open_source``: a frame, a folder's or Parquet file's path, or a ``Source`` -> a ``Source``;
- ``KEPT_FOLDERS``: how many folders' tables a process keeps;
- ``PART_ROWS``: about the most rows of a part, what a query by parts holds at once.

A folder is read, checked against its manifest and copied into a compressed table once per
process (``extract.shards.load_shards``), remembered by its manifest and its shards' sizes
and modification times.

>>> source = open_source(frame)
>>> with source.connected(1) as connection:
...     connection.execute("SELECT count(*) FROM frame").fetchone()[0] == len(frame)
True
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from attnmag.database import STORE, connect, database
from attnmag.errors import AttnmagError
from attnmag.extract.shards import RUN_FILE, SHARD_GLOB, frame_rows, load_shards, read_frame

__all__ = ["KEPT_FOLDERS", "PART_ROWS", "Source", "open_source"]

#: Folders whose tables a process keeps (the least recently opened goes first).
KEPT_FOLDERS = 2
#: About the most rows of a part (``Source.parts``): a shard of more rows is cut into
#: parts of whole texts, so that a query by parts holds as many rows whatever the shards'
#: size.
PART_ROWS = 2**20
#: Loaded folders, least recently opened first: path -> ``_Loaded``.
_LOADED: dict[Path, _Loaded] = {}
_TABLE_NUMBERS = itertools.count()


@dataclass(frozen=True)
class _Loaded:
    """A loaded folder (``shards``: its verified files; ``parts``: as ``Source.ranges``)."""

    state: tuple
    table: str
    shards: tuple[str, ...]
    parts: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Source:
    """The rows a fit reads: ``frame``, or ``folder``'s (``shards``: its verified files;
    ``ranges``: its parts' shards and sequences).

    >>> source = open_source(frame)
    >>> source.name, source.parts()
    ('the frame', [None])
    >>> with source.connected(n_jobs=1) as connection:
    ...     connection.sql("SELECT count(DISTINCT sequence) FROM frame").fetchall()
    [(16,)]
    """

    frame: pd.DataFrame | None = field(default=None, repr=False)
    folder: Path | None = None
    shards: tuple[str, ...] = ()
    ranges: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)

    @property
    def name(self) -> str:
        """The rows in words, for messages."""
        return "the frame" if self.folder is None else f"the shard folder {self.folder}"

    @contextmanager
    def connected(
        self, n_jobs: int | None = None, *, keep_order: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A new DuckDB connection (``attnmag.database.connect``) showing the rows as the
        view ``frame``; closed after."""
        with connect(n_jobs, keep_order=keep_order) as connection:
            self.part_view(connection, None, "frame")
            yield connection

    def parts(self) -> list[int | None]:
        """Parts that hold whole texts, in order: each shard, or its rows cut into parts of
        about ``PART_ROWS`` rows; ``[None]`` (all the rows) for a frame."""
        return [None] if self.folder is None else list(range(len(self.ranges)))

    def rows(self, select: str, where: list[str], group: dict[str, object]) -> pd.DataFrame:
        """One group's rows (``group``: column -> value) meeting the SQL ``where``, with the
        columns ``select`` gives, by sequence and position."""
        where = [*where, *(f'"{column}" = ?' for column in group)]
        query = f"SELECT {select} FROM frame WHERE {' AND '.join(where)} "
        query += 'ORDER BY sequence, "position"'
        with self.connected() as connection:
            return connection.execute(query, list(group.values())).df()

    def part_view(self, connection: duckdb.DuckDBPyConnection, part: int | None, name: str) -> None:
        """Show ``part`` (a number from ``parts``; ``None``: all) as the temporary view
        ``name``."""
        if self.folder is None:
            connection.register(f"{name}_rows", self.frame)
            query = f'SELECT * FROM "{name}_rows"'
        else:
            table = _loaded(self.folder).table
            where = ""
            if part is not None:
                shard, first, last = self.ranges[part]
                where = f" WHERE shard = {shard} AND sequence BETWEEN {first} AND {last}"
            columns = connection.sql(f"FROM {table} LIMIT 0").columns[1:]
            query = frame_rows(columns, f"(SELECT * EXCLUDE (shard) FROM {table}{where})")
        connection.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {query}')


def open_source(data: object) -> Source:
    """What a fit is given (a tidy frame, a shard folder's path, a Parquet file's path,
    read as the frame, or a ``Source``) -> its ``Source``; anything else is an error.

    >>> open_source(shards).name
    'the shard folder ...norms'
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, pd.DataFrame):
        return Source(frame=data)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_dir():
            return Source(frame=read_frame(path))
        loaded = _loaded(path)
        return Source(folder=path, shards=loaded.shards, ranges=loaded.parts)
    raise AttnmagError(
        "the models stage takes the tidy frame (a pandas DataFrame) or the path of a shard "
        f"folder or Parquet file, not {type(data).__name__}"
    )


def _loaded(folder: Path) -> _Loaded:
    """``folder``'s table, loaded unless it was, unchanged."""
    # The state is taken once, before loading: a shard changed meanwhile is loaded next time.
    key, state = folder.resolve(), _state(folder)
    known = _LOADED.pop(key, None)
    if known is not None and known.state != state:
        database().execute(f"DROP TABLE IF EXISTS {known.table}")
        known = None
    if known is None:
        table = f"{STORE}.folder_{next(_TABLE_NUMBERS)}"
        with connect(keep_order=True) as connection:
            try:
                shards = tuple(str(path) for path in load_shards(connection, folder, table))
                parts = _parts(connection, table)
            except BaseException:
                connection.execute(f"DROP TABLE IF EXISTS {table}")
                raise
        known = _Loaded(state, table, shards, parts)
    _LOADED[key] = known
    while len(_LOADED) > KEPT_FOLDERS:
        dropped = _LOADED.pop(next(iter(_LOADED))).table
        database().execute(f"DROP TABLE IF EXISTS {dropped}")
    return known


def _parts(connection: duckdb.DuckDBPyConnection, table: str) -> tuple[tuple[int, int, int], ...]:
    """Each shard of ``table`` cut into parts of whole texts of about equal rows, at most about
    ``PART_ROWS``: per part its shard, first and last sequence."""
    query = f"""
        WITH texts AS (SELECT shard, sequence, count(*) AS n FROM {table} GROUP BY ALL),
        placed AS (
            SELECT shard, sequence, (sum(n) OVER (PARTITION BY shard ORDER BY sequence) - n)
                * ceil(sum(n) OVER (PARTITION BY shard) / {PART_ROWS})::BIGINT
                // sum(n) OVER (PARTITION BY shard) AS part
            FROM texts
        )
        SELECT shard, min(sequence), max(sequence) FROM placed
        GROUP BY shard, part ORDER BY shard, part
    """
    return tuple(tuple(int(v) for v in row) for row in connection.execute(query).fetchall())


def _state(folder: Path) -> tuple:
    """The manifest's bytes and every Parquet file's name, size and modification time."""
    manifest = folder / RUN_FILE
    text = manifest.read_bytes() if manifest.is_file() else b""
    files = sorted(folder.glob(SHARD_GLOB))
    return text, tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
