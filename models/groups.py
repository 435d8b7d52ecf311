"""The groups a fit runs once per, and the per-group arrays DuckDB hands back.

Holds ``GROUP_COLUMNS`` (the grouping columns, in the tables' order), ``group_keys`` (a
view's groups), ``key_of`` (a group's values -> its key: a value, or a tuple),
``key_values``, ``describe`` (words), ``by_group`` (DuckDB's rows per group), ``symmetric``
(matrices from upper triangles) and ``sql_list``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator

import duckdb
import numpy as np
import pyarrow as pa

from attnmag.errors import AttnmagError
from attnmag.extract.frame import GROUP_COLUMNS

__all__ = [
    "GROUP_COLUMNS",
    "by_group",
    "describe",
    "group_keys",
    "key_of",
    "key_values",
    "sql_list",
    "symmetric",
]


def key_of(values: Iterable[object]) -> Hashable:
    """A group's values, in ``GROUP_COLUMNS`` order -> its key, as Python values.

    >>> key_of([np.int64(3)]), key_of(["mlp", np.int64(2)])
    (3, ('mlp', 2))
    """
    plain = tuple(value.item() if isinstance(value, np.generic) else value for value in values)
    return plain[0] if len(plain) == 1 else plain


def key_values(columns: list[str], key: Hashable) -> dict[str, object]:
    """A group's key -> ``{column: value}``.

    >>> key_values(["site", "layer"], ("mlp", 2))
    {'site': 'mlp', 'layer': 2}
    """
    values = (key,) if len(columns) == 1 else key
    return dict(zip(columns, values, strict=True))


def describe(columns: list[str], key: Hashable) -> str:
    """A group in words, for messages.

    >>> describe(["site", "layer", "head"], ("mlp", 2, 0))
    "site 'mlp', layer 2, head 0"
    """
    return ", ".join(
        f"{column} {value!r}" if isinstance(value, str) else f"{column} {value}"
        for column, value in key_values(columns, key).items()
    )


def sql_list(columns: Iterable[str]) -> str:
    """Column names as a SQL list.

    >>> sql_list(["layer", "sequence"])
    '"layer", "sequence"'
    """
    return ", ".join(f'"{column}"' for column in columns)


def symmetric(
    columns: dict[str, np.ndarray], name: Callable[[int, int], str], size: int
) -> np.ndarray:
    """Per row, the ``size`` x ``size`` symmetric matrix whose (i <= j) entry is ``name(i, j)``.

    >>> symmetric({"s0_0": np.ones(1), "s0_1": np.full(1, 2.0), "s1_1": np.ones(1)},
    ...           lambda i, j: f"s{i}_{j}", 2).tolist()
    [[[1.0, 2.0], [2.0, 1.0]]]
    """
    out = np.empty((len(columns[name(0, 0)]), size, size))
    for i in range(size):
        for j in range(i, size):
            out[:, i, j] = out[:, j, i] = columns[name(i, j)]
    return out


def by_group(
    reader: pa.RecordBatchReader, groups: list[str]
) -> Iterator[tuple[Hashable, dict[str, np.ndarray]]]:
    """The rows of ``reader`` (ordered by ``groups``), one group at a time: key -> columns.

    >>> table = pa.table({"layer": [0, 0, 1], "n": [1, 2, 3]})
    >>> [(key, rows["n"].tolist()) for key, rows in by_group(table.to_reader(2), ["layer"])]
    [(0, [1, 2]), (1, [3])]
    """

    def pieces() -> Iterator[pa.RecordBatch]:
        """The batches cut where the group changes."""
        for batch in filter(len, reader):
            values = [batch.column(name).to_numpy(zero_copy_only=False) for name in groups]
            changes = np.flatnonzero(np.any([v[1:] != v[:-1] for v in values], axis=0)) + 1
            bounds = [0, *changes.tolist(), len(batch)]
            yield from (batch.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True))

    def first_key(piece: pa.RecordBatch) -> Hashable:
        return key_of(piece.column(name)[0].as_py() for name in groups)

    for key, same in itertools.groupby(pieces(), first_key):
        table = pa.Table.from_batches(list(same))
        yield key, {name: table[name].to_numpy() for name in table.column_names}


def group_keys(
    connection: duckdb.DuckDBPyConnection, columns: list[str], layers: Iterable[int] | None = None
) -> tuple[list[str], list[Hashable]]:
    """The grouping columns among ``columns``, and the sorted keys of the view ``frame``'s
    groups in ``layers`` (every layer by default).

    >>> from attnmag.models.source import open_source
    >>> with open_source(frame).connected(1) as connection:
    ...     group_keys(connection, ["sequence", "layer"], [5, 0])
    (['layer'], [0, 5])
    """
    groups = [column for column in GROUP_COLUMNS if column in columns]
    distinct = connection.execute(f"SELECT DISTINCT {sql_list(groups)} FROM frame").df()
    available = np.unique(distinct["layer"].to_numpy())
    wanted = available if layers is None else np.unique(np.asarray(list(layers), dtype=np.int64))
    absent = np.setdiff1d(wanted, available)
    if len(wanted) == 0 or len(absent):
        raise AttnmagError(f"the frame has no layers {absent.tolist() or '(none asked for)'}")
    chosen = distinct.loc[distinct["layer"].isin(wanted), groups].drop_duplicates()
    keys = [key_of(row) for row in chosen.itertuples(index=False)]
    return groups, sorted(keys)
