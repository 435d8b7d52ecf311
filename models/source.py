"""What a fit reads: a frame's or a shard folder's rows, as one DuckDB view.

Holds:
- ``Source``: the rows of a tidy frame (registered with DuckDB, not copied) or of a shard
  folder's verified shards (``extract.shards.shard_rows``), shown to SQL as one view;
- ``open_source``: what the fits take (a frame, a shard folder's or Parquet file's path, a
  ``Source``) -> a ``Source``.

A shard folder is verified against its manifest (checksums) once per process: the result is
remembered by its manifest's bytes and its shards' sizes and modification times, so that a
``fit_all`` and a report on the same folder read its shards' bytes for the checksums once.

>>> source = open_source(frame)
>>> with source.connected(1) as connection:
...     connection.execute("SELECT count(*) FROM frame").fetchone()[0] == len(frame)
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from attnmag.database import connect
from attnmag.errors import AttnmagError
from attnmag.extract.shards import (
    RUN_FILE,
    SHARD_GLOB,
    read_frame,
    shard_rows,
    verified_shards,
)

__all__ = ["Source", "open_source"]

#: Verified folders: resolved path -> (what the verification is valid for, the shards).
_VERIFIED: dict[Path, tuple[tuple, tuple[str, ...]]] = {}


@dataclass(frozen=True)
class Source:
    """The rows a fit reads: ``frame`` (in memory) or ``shards`` (a verified folder's files).

    ``name`` says which in messages ("the frame", "the shard folder norms").

    Examples
    --------
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
    def connected(self, n_jobs: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A new DuckDB connection (``attnmag.database.connect``: ``n_jobs`` threads) that
        shows the rows as the view ``frame``; closed after."""
        with connect(n_jobs, keep_order=False) as connection:
            self.view(connection)
            yield connection

    def view(self, connection: duckdb.DuckDBPyConnection, name: str = "frame") -> None:
        """Show all the rows to ``connection`` as the view ``name``."""
        self.part_view(connection, None if self.folder is None else self.shards, name)

    def parts(self) -> list[tuple[str, ...] | None]:
        """Parts that hold whole texts, for queries whose memory grows with the rows they
        see at once: each shard of a folder, or the whole frame (``[None]``)."""
        return [None] if self.folder is None else [(shard,) for shard in self.shards]

    def rows(self, select: str, where: list[str], group: dict[str, object]) -> pd.DataFrame:
        """One group's rows (``group``: column -> value) that meet the SQL conditions
        ``where``, with the columns ``select`` gives, by sequence and position: what
        ``Fits.results`` and ``.augment()`` read again."""
        where = [*where, *(f'"{column}" = ?' for column in group)]
        values = [v.item() if isinstance(v, np.generic) else v for v in group.values()]
        query = f"SELECT {select} FROM frame WHERE {' AND '.join(where)} "
        with self.connected() as connection:
            return connection.execute(query + 'ORDER BY sequence, "position"', values).df()

    def part_view(
        self, connection: duckdb.DuckDBPyConnection, part: tuple[str, ...] | None, name: str
    ) -> None:
        """Show ``part`` (shards of the folder, or ``None``: the frame) as the view ``name``."""
        if part is None:
            connection.register(f"{name}_rows", self.frame)
            connection.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "{name}_rows"')
        else:
            shard_rows(connection, list(part)).create_view(name, replace=True)


def open_source(data: object) -> Source:
    """What a fit is given -> its ``Source``.

    Parameters
    ----------
    data : pandas.DataFrame, str, os.PathLike or Source
        A tidy frame; a shard folder's path (verified against its manifest once per
        process); a Parquet file's path (read with ``extract.read_frame``); or a
        ``Source``, returned as it is.

    Returns
    -------
    Source
        Anything else, or a path to nothing, is an ``AttnmagError``.

    Examples
    --------
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
        return Source(folder=path, shards=_verified(path))
    raise AttnmagError(
        "the models stage takes the tidy frame (a pandas DataFrame) or the path of a shard "
        f"folder or Parquet file, not {type(data).__name__}"
    )


def _verified(folder: Path) -> tuple[str, ...]:
    """``folder``'s shards, verified unless they were, unchanged, earlier in this process."""
    key = folder.resolve()
    state = _state(folder)
    known = _VERIFIED.get(key)
    if known is not None and known[0] == state:
        return known[1]
    shards = tuple(str(path) for path in verified_shards(folder))
    _VERIFIED[key] = (_state(folder), shards)
    return shards


def _state(folder: Path) -> tuple:
    """The manifest's bytes and every Parquet file's name, size and modification time."""
    manifest = folder / RUN_FILE
    text = manifest.read_bytes() if manifest.is_file() else b""
    files = sorted(folder.glob(SHARD_GLOB))
    return text, tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
