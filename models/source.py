"""What a fit or a report reads: a frame's or a shard folder's rows, as one DuckDB view.

Holds:
- ``Source``: a tidy frame's rows (registered with DuckDB, not copied) or a shard folder's
  (its table in ``attnmag.database``'s store), shown to SQL as the view ``frame``;
- ``open_source``: a frame, a folder's or Parquet file's path, or a ``Source`` -> a ``Source``;
- ``KEPT_FOLDERS``: how many folders' tables a process keeps.

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
import numpy as np
import pandas as pd

from attnmag.database import STORE, connect, database
from attnmag.errors import AttnmagError
from attnmag.extract.shards import RUN_FILE, SHARD_GLOB, frame_rows, load_shards, read_frame

__all__ = ["KEPT_FOLDERS", "Source", "open_source"]

#: Folders whose tables a process keeps (the least recently opened goes first).
KEPT_FOLDERS = 2
#: Loaded folders, least recently opened first: path -> (state, table, shards).
_LOADED: dict[Path, tuple[tuple, str, tuple[str, ...]]] = {}
_TABLE_NUMBERS = itertools.count()


@dataclass(frozen=True)
class Source:
    """The rows a fit reads: ``frame``, or ``folder``'s (``shards``: its verified files).

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
        """Parts that hold whole texts: each shard's number, or ``[None]`` (all the rows)."""
        return [None] if self.folder is None else list(range(len(self.shards)))

    def rows(self, select: str, where: list[str], group: dict[str, object]) -> pd.DataFrame:
        """One group's rows (``group``: column -> value) meeting the SQL ``where``, with the
        columns ``select`` gives, by sequence and position."""
        where = [*where, *(f'"{column}" = ?' for column in group)]
        values = [v.item() if isinstance(v, np.generic) else v for v in group.values()]
        query = f"SELECT {select} FROM frame WHERE {' AND '.join(where)} "
        with self.connected() as connection:
            return connection.execute(query + 'ORDER BY sequence, "position"', values).df()

    def part_view(self, connection: duckdb.DuckDBPyConnection, part: int | None, name: str) -> None:
        """Show ``part`` (a shard's number; ``None``: all) as the temporary view ``name``."""
        if self.folder is None:
            connection.register(f"{name}_rows", self.frame)
            query = f'SELECT * FROM "{name}_rows"'
        else:
            table = _loaded(self.folder)[1]
            where = "" if part is None else f" WHERE shard = {int(part)}"
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
        return Source(folder=path, shards=_loaded(path)[2])
    raise AttnmagError(
        "the models stage takes the tidy frame (a pandas DataFrame) or the path of a shard "
        f"folder or Parquet file, not {type(data).__name__}"
    )


def _loaded(folder: Path) -> tuple[tuple, str, tuple[str, ...]]:
    """``folder``'s table, loaded unless it was, unchanged: its state, name and shards."""
    key = folder.resolve()
    known = _LOADED.pop(key, None)
    if known is not None and known[0] != _state(folder):
        database().execute(f"DROP TABLE IF EXISTS {known[1]}")
        known = None
    if known is None:
        table = f"{STORE}.folder_{next(_TABLE_NUMBERS)}"
        with connect(keep_order=True) as connection:
            try:
                shards = tuple(str(path) for path in load_shards(connection, folder, table))
            except BaseException:
                connection.execute(f"DROP TABLE IF EXISTS {table}")
                raise
        known = (_state(folder), table, shards)
    _LOADED[key] = known
    while len(_LOADED) > KEPT_FOLDERS:
        dropped = _LOADED.pop(next(iter(_LOADED)))[1]
        database().execute(f"DROP TABLE IF EXISTS {dropped}")
    return known


def _state(folder: Path) -> tuple:
    """The manifest's bytes and every Parquet file's name, size and modification time."""
    manifest = folder / RUN_FILE
    text = manifest.read_bytes() if manifest.is_file() else b""
    files = sorted(folder.glob(SHARD_GLOB))
    return text, tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
