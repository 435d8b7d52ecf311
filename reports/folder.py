"""A shard folder as the report reads it: aggregates computed by DuckDB, rows read only for a
seeded sample of texts.

Holds:
- ``SAMPLE_TEXTS``: how many texts the figures that draw rows (violins, token grid) read;
- ``Folder``: a view of a shard folder's rows (some groups, layers, positions, texts) that
  the report's aggregates (``summaries``), panels, figures and findings accept in place of
  a frame; its queries return small tables (per cell and sequence sums, lengths per text);
- ``open_folder``: a finished folder written by ``extract.write_shards`` as a ``Folder``;
- ``run_query``, ``run_by_part``: a query over the shards in DuckDB of bounded memory, over
  all of them at once or part by part;
- what the report asks of its rows, for a frame or a ``Folder`` alike: ``levels`` (the values
  of a column), ``where_in`` (rows holding some values), ``positions_between``,
  ``row_count``, ``last_position``, ``drop_columns``, ``with_attrs`` and ``sample_rows``
  (the rows of the sample, a frame's own rows).

What is streamed. DuckDB reads the folder's rows (``models.source``: its shards, verified
and copied into a DuckDB table once per process, which the fits read too) with a memory
limit (``attnmag.database.MEMORY_LIMIT``; it spills beyond it). Opening a folder reads the
groups present (one row per group and layer, with its last position and rows) and the texts'
indices. A mean with its cluster-robust interval needs, per cell (a group and layer, with a
position or bin of positions), the rows ``n``, the texts ``G``, the mean and the sum over
texts of ``(S_g - n_g * mean)^2`` (``S_g`` a text's sum in the cell, ``n_g`` its rows), the
deviations of ``mean_ci``: DuckDB sums each cell's rows and values, then, given the means,
each text's sums and their squared deviations, part by part (``Source.parts``: a shard, or a
larger shard's texts cut into parts of whole texts, so it holds one part's texts at a time),
and returns one row per cell and part. Lengths are one row per text; site ratios join the
sites at the same token inside DuckDB, part by part. Only the figures that draw rows read
rows: those of a seeded sample of ``SAMPLE_TEXTS`` texts (all of them where the folder
holds no more), and only the columns they draw.

Usage::

    folder = open_folder("norms/")
    summaries.layer_means(folder)                     # as for a frame, without reading it
    rows, note = sample_rows(folder)                  # the sample's rows, and what it is
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from attnmag.database import connect
from attnmag.errors import AttnmagError
from attnmag.extract.frame import DERIVED, FRAME_DTYPES, GROUP_COLUMNS
from attnmag.extract.shards import merged_provenance, read_columns, read_manifest
from attnmag.models.source import Source, open_source

__all__ = [
    "SAMPLE_TEXTS",
    "Folder",
    "drop_columns",
    "last_position",
    "levels",
    "open_folder",
    "positions_between",
    "row_count",
    "run_by_part",
    "run_query",
    "sample_note",
    "sample_rows",
    "where_in",
    "with_attrs",
]

#: The texts whose rows the violins and the token grid read from a folder.
SAMPLE_TEXTS = 256
#: The columns the sample's rows carry (those of them the folder has).
SAMPLE_COLUMNS = ("sequence", *GROUP_COLUMNS, "position", "norm", "log_norm")


@dataclass(frozen=True, eq=False)
class Folder:
    """A view of a shard folder's rows: some values of its grouping columns and layers,
    positions ``first`` to ``last``, and its visible ``columns``.

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    source : models.source.Source
        Its rows (its verified shards).
    columns : tuple of str
        The columns the view shows (those dropped are still filtered on).
    attrs : dict
        The provenance, merged over the shards as ``extract.read_shards`` merges it.
    cells : pandas.DataFrame
        The folder's groups: one row per value of its grouping columns and layer, with its
        ``last`` position and ``rows``.
    texts : numpy.ndarray
        The folder's texts (``sequence`` values), sorted.
    dtypes : dict
        Column -> the frame's dtype (categories as ``extract.read_shards`` sets them).
    selected : tuple
        ``(column, values)`` pairs: the rows kept hold one of ``values`` in ``column``.
    first, last : int or None
        The positions kept (None: no bound).
    sample_texts, seed : int
        The size and seed of the sample that figures drawing rows read.
    memo : dict
        ``cluster_sums``' tables already computed, shared by the views of one folder (the
        report asks for some of them more than once).

    Examples
    --------
    >>> folder = open_folder(shards)
    >>> len(folder.source.shards), folder.texts.tolist()
    (2, [0, 1, 2, 3, 4, 5, 6, 7])
    >>> row_count(where_in(folder, "layer", [0, 1])) * 3 == row_count(folder) * 2
    True
    """

    path: Path
    source: Source = field(repr=False)
    columns: tuple[str, ...]
    attrs: dict
    cells: pd.DataFrame = field(repr=False)
    texts: np.ndarray = field(repr=False)
    dtypes: dict = field(repr=False)
    selected: tuple[tuple[str, tuple], ...] = ()
    first: int | None = None
    last: int | None = None
    sample_texts: int = SAMPLE_TEXTS
    seed: int = 0
    memo: dict = field(default_factory=dict, repr=False)

    def view_cells(self) -> pd.DataFrame:
        """The cells (group and layer) holding rows of this view, ``last`` its last position
        in each."""
        cells = self.cells
        for column, values in self.selected:
            if column in cells.columns:
                cells = cells[cells[column].isin(values)]
        first = -1 if self.first is None else self.first
        cells = cells[cells["last"] >= first]
        if self.last is not None:
            cells = cells.assign(last=np.minimum(cells["last"], self.last))
        return cells

    def where(self) -> tuple[str, list]:
        """The view's filter as SQL, and its parameters."""
        clauses, parameters = ["TRUE"], []
        for column, values in self.selected:
            clauses.append(f'"{column}" IN ({", ".join("?" * len(values))})')
            parameters += [_plain(v) for v in values]
        if self.first is not None:
            clauses.append('"position" >= ?')
            parameters.append(self.first)
        if self.last is not None:
            clauses.append('"position" <= ?')
            parameters.append(self.last)
        return " AND ".join(clauses), parameters

    def query(self, sql: str, parameters: Sequence = ()) -> pd.DataFrame:
        """Run ``sql`` on the folder's rows (the view ``frame``) and return its result with
        the frame's dtypes."""
        return _with_dtypes(run_query(self.source, sql, parameters), self.dtypes)

    def picked(self) -> np.ndarray:
        """The texts of the seeded sample: ``sample_texts`` of them, sorted (every text
        where there are no more)."""
        if len(self.texts) <= self.sample_texts:
            return self.texts
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(self.texts, size=self.sample_texts, replace=False))

    def cluster_sums(
        self,
        value: str,
        by: Sequence[str],
        *,
        cluster: str = "sequence",
        bin_width: int = 1,
        source: str | None = None,
        parameters: Sequence = (),
    ) -> pd.DataFrame:
        """Per ``by`` cell: rows ``n``, clusters ``n_groups``, ``mean`` of ``value`` and
        ``meat``, the sum over clusters of (cluster sum - cluster rows x mean) squared.

        With ``bin_width`` over 1, ``by`` ends with ``position``, which is pooled into bins
        (position 0 alone) as ``position_bin``, and ``at_position`` is the bin's mean
        position. ``source`` replaces the view's rows (SQL of a relation on ``frame``, with
        its ``parameters``). One pass runs part by part (a part holds whole texts, so
        DuckDB holds one part's texts at a time); a table asked for again (by any
        view of the folder) is not computed again.
        """
        names = [*by[:-1], "position_bin"] if bin_width > 1 else list(by)
        keys = [f'"{c}"' for c in by]
        if bin_width > 1:
            keys[-1] = (
                f'CASE WHEN "position" > 0 THEN ("position" - 1) // {int(bin_width)} + 1 '
                'ELSE 0 END AS "position_bin"'
            )
        if source is None:
            where, parameters = self.where()
            source = f"(SELECT * FROM frame WHERE {where})"
        asked = (value, tuple(by), cluster, bin_width, source, tuple(map(_plain, parameters)))
        if asked not in self.memo:
            self.memo[asked] = self._cluster_sums(value, keys, names, cluster, source, parameters)
        return self.memo[asked].copy()

    def _cluster_sums(
        self,
        value: str,
        keys: list[str],
        names: list[str],
        cluster: str,
        source: str,
        parameters: Sequence,
    ) -> pd.DataFrame:
        """``cluster_sums``' table, in one pass over each part (``keys``: the cells' SQL,
        ``names``: their columns).

        Each part gives its cells' rows, sums and clusters, and its clusters' squared
        deviations from the part's own cell mean ``c`` with the sums that move them to the
        folder's mean ``m``: sum (s_g - n_g m)^2 = sum (s_g - n_g c)^2 - 2 (m - c) sum
        n_g (s_g - n_g c) + (m - c)^2 sum n_g^2, exact, and accurate since ``c`` is near
        ``m``.
        """
        binned = "position_bin" in names
        # Summed in the order of the rows' keys, so the threads DuckDB uses do not move the
        # last digits (``attnmag.database``).
        unique = [c for c in (*GROUP_COLUMNS, "sequence", "position") if c in self.columns]
        order = "ORDER BY " + ", ".join(f'"{c}"' for c in dict.fromkeys([cluster, *unique]))
        by_cluster = f'ORDER BY p."{cluster}"'
        cell = ", ".join(f'"{c}"' for c in names)
        join = " AND ".join(f'p."{c}" = c."{c}"' for c in names)
        per_part = run_by_part(
            self.source,
            f"""WITH per AS (
                    SELECT {", ".join(keys)}, "{cluster}", count(*) AS n_g,
                        sum("{value}"::DOUBLE {order}) AS s_g
                        {', sum("position"::DOUBLE) AS p_g' if binned else ""}
                    FROM {source} GROUP BY ALL
                ), cells AS (
                    SELECT {cell + "," if cell else ""} sum(n_g)::BIGINT AS n,
                        sum(s_g ORDER BY "{cluster}") AS total,
                        {'sum(p_g ORDER BY "' + cluster + '") AS p,' if binned else ""}
                        count(*)::BIGINT AS n_groups
                    FROM per {"GROUP BY " + cell if cell else ""}
                )
                SELECT c.*,
                    sum((p.s_g - p.n_g * c.total / c.n) ** 2 {by_cluster}) AS q,
                    sum(p.n_g * (p.s_g - p.n_g * c.total / c.n) {by_cluster}) AS q1,
                    sum(p.n_g::DOUBLE * p.n_g {by_cluster}) AS q2
                FROM per p JOIN cells c ON {join or "TRUE"}
                GROUP BY ALL""",
            parameters,
        )
        sums = ["n", "total", *(["p"] if binned else []), "n_groups"]
        cells = per_part.groupby(names, sort=True)[sums].sum().reset_index()
        cells["mean"] = cells["total"] / cells["n"]
        if binned:
            cells["at_position"] = cells["p"] / cells["n"]
        shifted = per_part.merge(cells[[*names, "mean"]], on=names, how="left")
        step = shifted["mean"] - shifted["total"] / shifted["n"]
        shifted["meat"] = shifted["q"] - 2 * step * shifted["q1"] + step**2 * shifted["q2"]
        meat = shifted.groupby(names, sort=True)["meat"].sum().reset_index()
        out = cells.merge(meat, on=names, how="left", validate="one_to_one")
        out = _with_dtypes(out, self.dtypes)
        return out.sort_values(names, kind="stable").reset_index(drop=True)


def _plain(value: object) -> object:
    """A numpy scalar as the Python value DuckDB takes as a parameter."""
    return value.item() if isinstance(value, np.generic) else value


def run_query(source: Source, sql: str, parameters: Sequence = ()) -> pd.DataFrame:
    """``sql`` over all of ``source``'s rows in DuckDB of bounded memory, as a pandas frame.

    The rows are the view ``frame`` (in their stored order where the query keeps it).

    Parameters
    ----------
    source : models.source.Source
        The rows (a folder's: ``open_source(path)``).
    sql : str
        The query, on ``frame``.
    parameters : sequence
        Its ``?`` parameters.

    Returns
    -------
    pandas.DataFrame
        The result.

    Examples
    --------
    >>> counted = run_query(open_source(shards), "SELECT count(*) AS n FROM frame")
    >>> counted["n"].tolist() == [len(extract.read_shards(shards))]
    True
    """
    with source.connected(keep_order=True) as connection:
        return connection.execute(sql, list(parameters)).df()


def run_by_part(
    source: Source, sql: str, parameters: Sequence = (), **tables: pd.DataFrame
) -> pd.DataFrame:
    """``sql`` over each part of ``source`` in turn (``Source.parts``: whole texts), in one
    DuckDB connection; the results stacked.

    For sums per text: every text's rows are in one part, so DuckDB holds one part's texts
    at a time, however many rows the folder holds.

    Parameters
    ----------
    source : models.source.Source
        The rows (a folder's: ``open_source(path)``).
    sql : str
        The query, on ``frame`` (one part) and ``tables``.
    parameters : sequence
        Its ``?`` parameters.
    **tables : pandas.DataFrame
        Small tables the query joins, by name.

    Returns
    -------
    pandas.DataFrame
        Each part's result, in the parts' order.

    Examples
    --------
    >>> counts = run_by_part(open_source(shards), "SELECT count(*) AS n FROM frame")
    >>> len(counts), int(counts["n"].sum()) == len(extract.read_shards(shards))
    (2, True)
    """
    with connect() as connection:
        for name, table in tables.items():
            connection.register(name, table)
        parts = []
        for part in source.parts():
            source.part_view(connection, part, "frame")
            parts.append(connection.execute(sql, list(parameters)).df())
    return pd.concat(parts, ignore_index=True)


def _with_dtypes(table: pd.DataFrame, dtypes: Mapping[str, object]) -> pd.DataFrame:
    """``table``'s columns that the frame has, cast to the frame's dtypes."""
    for column in table.columns:
        if column in dtypes and table[column].dtype != dtypes[column]:
            values = table[column]
            if isinstance(dtypes[column], pd.CategoricalDtype):
                values = values.astype(object)
            table[column] = values.astype(dtypes[column])
    return table


def open_folder(path: str | Path, *, sample_texts: int = SAMPLE_TEXTS, seed: int = 0) -> Folder:
    """A finished shard folder as a ``Folder``: its shards verified, its groups and texts read.

    Parameters
    ----------
    path : str or Path
        A folder written by ``extract.write_shards``.
    sample_texts : int
        The texts the figures that draw rows read.
    seed : int
        The seed of that sample.

    Returns
    -------
    Folder
        A view of all its rows.

    Examples
    --------
    >>> folder = open_folder(shards, sample_texts=4)
    >>> folder.sample_texts, sorted(folder.cells["layer"].unique().tolist())
    (4, [0, 1, 2])
    """
    if sample_texts < 1:
        raise AttnmagError(f"sample_texts must be 1 or more, not {sample_texts}")
    folder = Path(path)
    if not folder.is_dir():
        raise AttnmagError(f"no shard folder at {folder}")
    source = open_source(folder)  # read once per process, however many fits and reports
    stored = pq.read_schema(source.shards[0]).empty_table().to_pandas()
    # The columns the folder's view gives: those stored, and those computed (as the frame has them).
    derived = {c: np.empty(0, FRAME_DTYPES[c]) for c in DERIVED if c not in stored.columns}
    empty = stored.assign(**derived)[read_columns(stored.columns)]
    groups = [c for c in GROUP_COLUMNS if c in empty.columns]
    keys = ", ".join(f'"{c}"' for c in groups)
    cells = run_query(
        source,
        f'SELECT {keys}, max("position") AS last, count(*) AS rows FROM frame GROUP BY ALL',
    )
    dtypes = dict(empty.dtypes)
    sites = read_manifest(folder)["arguments"].get("sites")
    for column in ("model", "site"):
        if column in groups:  # the run's sites in their order, else the values sorted
            named = sites if column == "site" and sites else None
            dtypes[column] = pd.CategoricalDtype(
                named or sorted(cells[column].astype(str).unique())
            )
    cells = _with_dtypes(cells, dtypes).sort_values(groups, kind="stable")
    texts = run_query(source, "SELECT DISTINCT sequence FROM frame")["sequence"]
    return Folder(
        path=folder,
        source=source,
        columns=tuple(empty.columns),
        attrs=merged_provenance([_shard_attrs(p) for p in source.shards]),
        cells=cells.reset_index(drop=True),
        texts=np.sort(texts.to_numpy()),
        dtypes=dtypes,
        sample_texts=sample_texts,
        seed=seed,
    )


def _shard_attrs(path: str) -> dict:
    """The provenance a shard carries in its Parquet metadata (what ``attrs`` reads back)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(b"PANDAS_ATTRS")
    return json.loads(raw) if raw else {}


def levels(data: pd.DataFrame | Folder, column: str) -> list:
    """The values ``column`` holds: a category's in its categories' order, others sorted.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.
    column : str
        A grouping column or ``layer``.

    Returns
    -------
    list
        The distinct values present.

    Examples
    --------
    >>> levels(pd.DataFrame({"layer": [2, 0, 2]}), "layer")
    [0, 2]
    """
    if isinstance(data, Folder):
        values = data.view_cells()[column]
    else:
        values = data[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values)
        return [c for c in values.cat.categories if c in present]
    return sorted(values.unique().tolist())


def where_in(data: pd.DataFrame | Folder, column: str, values: Iterable) -> pd.DataFrame | Folder:
    """The rows of ``data`` whose ``column`` holds one of ``values``.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.
    column : str
        The column compared.
    values : iterable
        The values kept.

    Returns
    -------
    pandas.DataFrame or Folder
        The rows kept, as ``data`` is.

    Examples
    --------
    >>> len(where_in(pd.DataFrame({"head": [-1, 0, 1]}), "head", [0, 1]))
    2
    """
    values = tuple(values)
    if isinstance(data, Folder):
        return replace(data, selected=(*data.selected, (column, values)))
    return data.loc[data[column].isin(values)]


def positions_between(
    data: pd.DataFrame | Folder, first: int | None = None, last: int | None = None
) -> pd.DataFrame | Folder:
    """The rows of ``data`` at positions ``first`` to ``last`` (None: no bound).

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.
    first, last : int, optional
        The first and last position kept.

    Returns
    -------
    pandas.DataFrame or Folder
        The rows kept, as ``data`` is.

    Examples
    --------
    >>> len(positions_between(pd.DataFrame({"position": [0, 1, 2]}), first=1))
    2
    """
    if isinstance(data, Folder):
        return replace(
            data, first=_bound(max, data.first, first), last=_bound(min, data.last, last)
        )
    keep = np.ones(len(data), dtype=bool)
    positions = data["position"].to_numpy()
    if first is not None:
        keep &= positions >= first
    if last is not None:
        keep &= positions <= last
    return data.loc[keep]


def _bound(tighter: object, old: int | None, new: int | None) -> int | None:
    """The tighter of two bounds (None: no bound), ``tighter`` being ``max`` or ``min``."""
    return old if new is None else new if old is None else tighter(old, new)


def row_count(data: pd.DataFrame | Folder) -> int:
    """The rows of ``data``.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.

    Returns
    -------
    int
        Their number (a count in DuckDB for a view of a folder).

    Examples
    --------
    >>> row_count(pd.DataFrame({"a": [1, 2]}))
    2
    """
    if not isinstance(data, Folder):
        return len(data)
    where, parameters = data.where()
    return int(data.query(f"SELECT count(*) AS n FROM frame WHERE {where}", parameters)["n"][0])


def last_position(data: pd.DataFrame | Folder) -> int | None:
    """The last position ``data`` holds (None where it holds no rows).

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.

    Returns
    -------
    int or None
        The largest position.

    Examples
    --------
    >>> last_position(pd.DataFrame({"position": [0, 3, 1]}))
    3
    """
    if isinstance(data, Folder):
        cells = data.view_cells()
        return int(cells["last"].max()) if len(cells) else None
    return int(data["position"].max()) if len(data) else None


def drop_columns(data: pd.DataFrame | Folder, columns: Iterable[str]) -> pd.DataFrame | Folder:
    """``data`` without ``columns`` (a view of a folder stops showing them).

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.
    columns : iterable of str
        The columns left out.

    Returns
    -------
    pandas.DataFrame or Folder
        ``data`` without them (a frame's index reset).

    Examples
    --------
    >>> list(drop_columns(pd.DataFrame({"a": [1], "b": [2]}), ["b"]).columns)
    ['a']
    """
    columns = list(columns)
    if isinstance(data, Folder):
        return replace(data, columns=tuple(c for c in data.columns if c not in columns))
    return data.drop(columns=columns).reset_index(drop=True)


def with_attrs(data: pd.DataFrame | Folder, attrs: Mapping[str, object]) -> pd.DataFrame | Folder:
    """``data`` with the provenance ``attrs``.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows (a frame is changed in place).
    attrs : mapping
        The provenance.

    Returns
    -------
    pandas.DataFrame or Folder
        ``data`` carrying ``attrs``.

    Examples
    --------
    >>> with_attrs(pd.DataFrame(), {"model": "gpt2"}).attrs
    {'model': 'gpt2'}
    """
    if isinstance(data, Folder):
        return replace(data, attrs=dict(attrs))
    data.attrs = dict(attrs)
    return data


def sample_rows(
    data: pd.DataFrame | Folder, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, str | None]:
    """The rows that figures drawing rows read: a frame's own, a folder's seeded sample.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.
    columns : sequence of str, optional
        The columns a folder's rows are read with (those of them it has); None: the
        sequence, grouping columns, position, norm and log norm.

    Returns
    -------
    tuple
        The rows as a frame (a folder's: those of its sampled texts, in the shards' order),
        and what they are where they are a sample (e.g. ``"a seeded sample of 256 of the
        10,000 texts"``), else None.

    Examples
    --------
    >>> rows, note = sample_rows(open_folder(shards, sample_texts=4))
    >>> rows["sequence"].nunique(), note
    (4, 'a seeded sample of 4 of the 8 texts')
    >>> sample_rows(frame)[1] is None
    True
    """
    if not isinstance(data, Folder):
        return data, None
    picked = data.picked()
    sampled = data if len(picked) == len(data.texts) else where_in(data, "sequence", picked)
    where, parameters = sampled.where()
    read = [c for c in (columns or SAMPLE_COLUMNS) if c in data.columns]
    names = ", ".join(f'"{c}"' for c in read)
    rows = sampled.query(f"SELECT {names} FROM frame WHERE {where}", parameters)
    rows.attrs = dict(data.attrs)
    return rows, sample_note(data)


def sample_note(data: pd.DataFrame | Folder) -> str | None:
    """What a folder's sample is, where it holds fewer texts than the folder; else None.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The rows.

    Returns
    -------
    str or None
        E.g. ``"a seeded sample of 256 of the 10,000 texts"``.

    Examples
    --------
    >>> sample_note(pd.DataFrame()) is None
    True
    """
    if not isinstance(data, Folder) or len(data.texts) <= data.sample_texts:
        return None
    return f"a seeded sample of {data.sample_texts:,} of the {len(data.texts):,} texts"
