"""Fits straight from a shard folder, in memory that does not grow with the rows.

Holds:
- ``position_trend_folder``: ``position_trend`` on a folder written by
  ``extract.write_shards`` (``aggregate``, ``ols``, ``mixed``);
- ``lag_effects_folder``: ``lag_effects`` on such a folder (``ols``, ``initial_conditions``,
  ``gmm``);
- ``MEMORY_LIMIT``: the most memory DuckDB may hold while it scans a folder.

What is streamed. DuckDB reads the folder's verified shards (``verified_shards``): their
grouping columns for the groups present, then the fitted rows, of which it sums, per group
and sequence, the products of a few base columns (``1``, ``position``, ``lag1``, ``lag2``,
``log_norm``), with the rows, the positions' range and a count of missing or infinite
values; for the position trend also per group and position (the position means of
``aggregate``, and the positions covered). Python receives these sums ordered by group, one
group at a time: arrays of sequences x m x m, whatever the number of rows. Every column of
a model's design ``[X | Z | y]`` is a base column or, for the initial conditions ``y1`` and
``y2``, a base column times a per-sequence constant, so each sequence's cross products
``X_s'X_s``, ``X_s'Z_s``, ... follow from its base sums (``models.mixed.GroupedDesign``).

What is estimated is what the in-memory fits estimate, from those cross products:

- ``ols``: OLS, with CR1 standard errors by sequence from the per-sequence scores
  ``X_s'y_s - X_s'X_s b`` (GLS at zero random-effect variance, ``cluster_covariance``);
- ``mixed`` and ``initial_conditions``: REML's global maximum by ``models.mixed``'s search
  on the vectorised GLS, and the GLS values there. statsmodels' ``MixedLM``, which needs
  the rows, does not confirm it (the in-memory fit reports statsmodels' optimum where its
  REML is within 1e-7 of the search's maximum: the two agree to about 1e-6, less closely
  where REML is flat, as with a handful of texts);
- ``aggregate``: OLS of the log of each position's mean norm on position;
- ``gmm``: the two-step Arellano-Bond estimates, Windmeijer's covariance, Hansen's J and
  AR(2), from per-text sums of the products of each row's levels ``l0`` .. ``l7`` (its own and
  seven positions back, by a DuckDB window within group and sequence), of which the
  differenced equations and their instruments are linear maps.

The options are checked, and bad folders refused, as the in-memory fits do: a group
without enough rows, a missing or infinite value, positions of a text that are not
consecutive (for ``initial_conditions`` and ``gmm``) are each an ``AttnmagError`` naming
the group or the sequence.

Usage::

    from attnmag.models.stream import lag_effects_folder, position_trend_folder

    trend = position_trend_folder("norms/", method="mixed")
    lags = lag_effects_folder("norms/", method="initial_conditions")
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import statsmodels.api as sm

from attnmag.errors import AttnmagError
from attnmag.extract.frame import GROUP_COLUMNS
from attnmag.extract.shards import shard_rows, verified_shards
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import METHODS, check_options
from attnmag.models.gmm import AR2_UNDEFINED, GMMResult, gmm_stats
from attnmag.models.groups import describe, group_columns, key_values
from attnmag.models.lags import GMM_LAGS
from attnmag.models.mixed import (
    STATSMODELS_SINGULAR_TOL,
    GroupedDesign,
    _exact,
    _search,
    cluster_covariance,
    reml_fit,
)
from attnmag.models.ols import _fit as ols_fit
from attnmag.models.tidy import Fit, build_table, glance_row, tidy_rows

__all__ = ["MEMORY_LIMIT", "lag_effects_folder", "position_trend_folder"]

#: DuckDB's memory limit. Its default, 80% of the machine's memory, would let one scan take
#: most of a shared machine; with a fixed limit DuckDB spills its aggregation to a temporary
#: folder instead, so the memory of a fit from a folder stays bounded however large it is.
#: What it holds grows with the texts (its per-text sums), not the rows; at this limit a
#: folder of 10 times the texts adds little beyond it, and its scans take no longer than at
#: 1 GB (``benchmarks/scale.py``).
MEMORY_LIMIT = "256MB"
#: The levels the Arellano-Bond sums need: ``l0`` to one lag beyond the last instrument's.
GMM_LEVELS = GMM_LAGS[1] + 2
#: Rows of the per-sequence sums handed to Python per batch.
BATCH_ROWS = 1 << 14
#: The base columns a design is built from (``1`` is implied), as SQL expressions.
BASE = {
    "position": '"position"::DOUBLE',
    "lag1": "lag1::DOUBLE",
    "lag2": "lag2::DOUBLE",
    "log_norm": "log_norm::DOUBLE",
}


@dataclass(frozen=True)
class _Request:
    """One folder fit: the rows to sum and how to fit one group from its sums."""

    fit: str
    method: str
    conf_level: float
    base: tuple[str, ...]  # base columns summed per sequence, besides the constant 1
    checked: tuple[str, ...]  # columns that must be finite in the fitted rows
    first: int  # the first fitted position
    last: int | None
    layers: Iterable[int] | None
    n_terms: int
    n_positions: int
    by_position: bool  # also sum per group and position (position_trend)
    consecutive: bool  # each text's positions must run consecutively from ``first``
    fitter: Callable[[dict[str, np.ndarray], dict[str, np.ndarray] | None], Fit]


def position_trend_folder(
    path: str | Path,
    *,
    method: str = "ols",
    max_position: int = MAX_POSITION,
    exclude_first: bool = True,
    layers: Iterable[int] | None = None,
    random_slope: bool = False,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """``models.position_trend`` on a shard folder, without building the frame.

    Parameters
    ----------
    path : str or Path
        A finished folder written by ``extract.write_shards`` (checked against its
        manifest).
    method : {"ols", "aggregate", "mixed"}
        As for ``position_trend``; ``"mixed"`` reports the GLS values at REML's global
        maximum (see the module docstring).
    max_position, exclude_first, layers, random_slope, cov_type, conf_level
        As for ``position_trend``.

    Returns
    -------
    pandas.DataFrame
        The tidy table ``position_trend`` gives on the folder's frame, with its glance
        records in ``attrs["glance"]``.

    Examples
    --------
    >>> trend = position_trend_folder("norms/", method="mixed")  # doctest: +SKIP
    """
    check_options("position_trend", method, METHODS["position_trend"], conf_level, cov_type)
    if random_slope and method != "mixed":
        raise AttnmagError(f"random_slope needs method='mixed', not method={method!r}")
    terms = ("intercept", "position")
    if method == "aggregate":
        fitter = _aggregate
    elif method == "ols":
        fitter = _per_sequence(_trend_design, lambda design, _, n: _ols(design, terms, n))
    else:
        fitter = _per_sequence(
            _trend_slope_design if random_slope else _trend_design,
            lambda design, scales, n: _mixed(design, scales, terms, n, cov_type=cov_type),
        )
    request = _Request(
        fit="position_trend",
        method=method,
        conf_level=conf_level,
        base=("position", "log_norm"),
        checked=("log_norm", "norm") if method == "aggregate" else ("log_norm",),
        first=1 if exclude_first else 0,
        last=max_position,
        layers=None if layers is None else tuple(layers),
        n_terms=2,
        n_positions=3,
        by_position=True,
        consecutive=False,
        fitter=fitter,
    )
    return _fit_folder(Path(path), request)


def lag_effects_folder(
    path: str | Path,
    *,
    method: str = "initial_conditions",
    exclude_first: bool = True,
    layers: Iterable[int] | None = None,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """``models.lag_effects`` on a shard folder, without building the frame.

    Parameters
    ----------
    path : str or Path
        A finished folder written by ``extract.write_shards``.
    method : {"initial_conditions", "gmm", "ols"}
        As for ``lag_effects``; ``"initial_conditions"`` reports the GLS values at REML's
        global maximum (see the module docstring).
    exclude_first, layers, cov_type, conf_level
        As for ``lag_effects``.

    Returns
    -------
    pandas.DataFrame
        The tidy table ``lag_effects`` gives on the folder's frame.

    Examples
    --------
    >>> lags = lag_effects_folder("norms/")  # doctest: +SKIP
    """
    check_options("lag_effects", method, METHODS["lag_effects"], conf_level, cov_type)
    first = 1 if exclude_first else 0
    if method == "gmm":
        terms, base, fitter = ("lag1", "lag2", "position"), (), _gmm
    elif method == "ols":
        terms = ("intercept", "lag1", "lag2")
        base = ("lag1", "lag2", "log_norm")
        fitter = _per_sequence(_lag_design, lambda design, _, n: _ols(design, terms, n))
    else:
        terms = ("intercept", "lag1", "lag2", "position", "y1", "y2")
        base = ("lag1", "lag2", "position", "log_norm")
        fitter = _per_sequence(
            _initial_conditions_design,
            lambda design, scales, n: _mixed(design, scales, terms, n, cov_type=cov_type),
        )
    request = _Request(
        fit="lag_effects",
        method=method,
        conf_level=conf_level,
        base=base,
        checked=("log_norm", "lag1", "lag2"),
        first=first + 2,
        last=None,
        layers=None if layers is None else tuple(layers),
        n_terms=len(terms),
        n_positions=2 if method == "initial_conditions" else 1,
        by_position=False,
        consecutive=method == "initial_conditions",  # gmm's: in _gmm_by_group
        fitter=fitter,
    )
    return _fit_folder(Path(path), request)


@contextmanager
def _connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with its memory limit, threads and spill folder set.

    Threads are the cores this process may use (DuckDB would count the machine's); spilled
    data goes to a temporary folder of its own, not to ``.tmp`` in the working directory.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="attnmag-duckdb-") as spill:
        config = {
            "memory_limit": MEMORY_LIMIT,
            "threads": cores,
            "temp_directory": spill,
            "preserve_insertion_order": False,
        }
        connection = duckdb.connect(":memory:", config=config)
        try:
            yield connection
        finally:
            connection.close()


def _fit_folder(folder: Path, request: _Request) -> pd.DataFrame:
    """Sum ``request``'s rows of ``folder`` in DuckDB; fit each group as its sums arrive."""
    paths = [str(path) for path in verified_shards(folder)]
    with _connection() as connection:
        shard_rows(connection, paths).create_view("frame")
        columns = [row[0] for row in connection.execute("DESCRIBE frame").fetchall()]
        needed = ["sequence", "layer", "position", *request.checked]
        missing = [column for column in dict.fromkeys(needed) if column not in columns]
        if missing:
            raise AttnmagError(
                f"the shard folder {folder} lacks the columns {missing} that the models stage needs"
            )
        groups, expected = _groups(connection, columns, request.layers)
        found = {}
        if request.method == "gmm":
            chunks = _gmm_by_group(connection, paths, groups, request)
        else:
            reader = connection.sql(_sums_query(groups, request)).to_arrow_reader(BATCH_ROWS)
            chunks = _by_group(reader, groups)
        for key, sums in chunks:
            found[key] = _fit_group(request, groups, key, sums)
    for key in expected:
        if key not in found:
            _check_size(request, groups, key, n_rows=0, n_sequences=0, n_covered=0)
    return build_table([found[key][0] for key in expected], [found[key][1] for key in expected])


def _groups(
    connection: duckdb.DuckDBPyConnection, columns: list[str], layers: Iterable[int] | None
) -> tuple[list[str], list[Hashable]]:
    """The grouping columns, and the keys of the groups in the requested layers, sorted.

    ``models.groups.group_columns`` judges the folder's distinct grouping values as it
    judges a frame's (several language models are refused there, for instance).
    """
    present = [column for column in GROUP_COLUMNS if column in columns]
    distinct = connection.execute(f"SELECT DISTINCT {_keys(present)} FROM frame").df()
    groups = group_columns(distinct)
    available = np.unique(distinct["layer"].to_numpy())
    wanted = available if layers is None else np.unique(np.asarray(list(layers), dtype=np.int64))
    absent = np.setdiff1d(wanted, available)
    if len(wanted) == 0 or len(absent):
        raise AttnmagError(f"the frame has no layers {absent.tolist() or '(none asked for)'}")
    chosen = distinct.loc[distinct["layer"].isin(wanted), groups].drop_duplicates()
    keys = [_key(row) for row in chosen.itertuples(index=False)]
    return groups, sorted(keys)


def _key(values: Iterable[object]) -> Hashable:
    """A group's values -> its key (a scalar for one grouping column), as Python values."""
    plain = tuple(value.item() if isinstance(value, np.generic) else value for value in values)
    return plain[0] if len(plain) == 1 else plain


def _sums_query(groups: list[str], request: _Request) -> str:
    """The SQL of ``request``'s per-(group, sequence) sums (and per-(group, position) sums),
    ordered by group."""
    keys = _keys(groups)
    base = ["", *request.base]
    sums = [
        f"sum({_product(a, b)}) AS {_pair(a, b)}"
        for i, a in enumerate(base)
        for b in base[i + 1 :]
        if b
    ] + [f"sum({_product(b, b)}) AS {_pair(b, b)}" for b in request.base]
    finite = " AND ".join(f"isfinite({column})" for column in request.checked)
    aggregates = [
        "count(*) AS n",
        *sums,
        'min("position") AS first_position',
        'max("position") AS last_position',
        f"count(*) FILTER (WHERE NOT coalesce({finite}, false)) AS n_bad",
    ]
    if request.method == "initial_conditions":
        aggregates += [
            f'max(lag2) FILTER (WHERE "position" = {request.first}) AS y1',
            f'max(lag1) FILTER (WHERE "position" = {request.first}) AS y2',
        ]
    if "norm" in request.checked:
        aggregates.append("sum(norm::DOUBLE) AS norm_sum")
    where = _where(request, request.first)
    select = ", ".join(aggregates)
    if request.by_position:
        grouping = f'GROUPING SETS (({keys}, sequence), ({keys}, "position"))'
        return (
            f'SELECT {keys}, sequence, "position", GROUPING(sequence) AS per_position, {select} '
            f"FROM frame WHERE {' AND '.join(where)} GROUP BY {grouping} "
            f'ORDER BY {keys}, per_position, sequence, "position"'
        )
    return (
        f"SELECT {keys}, sequence, {select} FROM frame WHERE {' AND '.join(where)} "
        f"GROUP BY {keys}, sequence ORDER BY {keys}, sequence"
    )


def _where(request: _Request, first: int) -> list[str]:
    """The SQL conditions on the rows to sum: positions ``first``..``request.last``, the
    requested layers."""
    where = [f'"position" >= {int(first)}']
    if request.last is not None:
        where.append(f'"position" <= {int(request.last)}')
    if request.layers is not None:
        layers = sorted({int(layer) for layer in request.layers})
        where.append(f"layer IN ({', '.join(map(str, layers))})")
    return where


def _keys(groups: list[str]) -> str:
    """The grouping columns as a SQL list."""
    return ", ".join(f'"{column}"' for column in groups)


def _gmm_by_group(
    connection: duckdb.DuckDBPyConnection,
    paths: list[str],
    groups: list[str],
    request: _Request,
) -> Iterator[tuple[Hashable, dict[str, np.ndarray]]]:
    """Per group, in key order, its texts' Arellano-Bond cross products (``_gmm_reduced``),
    summed by DuckDB shard by shard.

    A shard holds whole texts, so each text's sums are complete within its shard, and the
    window holds one shard's rows at a time (over the whole folder it would hold every row).
    Each shard's sums are checked (consecutive positions, the frame's lags) and reduced to
    the few arrays the estimator needs as they arrive.
    """
    parts: dict[Hashable, list[dict[str, np.ndarray]]] = {}
    query = f"{_gmm_query(groups, request)} ORDER BY {_keys(groups)}, sequence"
    for path in paths:
        shard_rows(connection, [path]).create_view("shard")
        reader = connection.sql(query).to_arrow_reader(BATCH_ROWS)
        for key, sums in _by_group(reader, groups):
            _check_consecutive(sums, request.first)
            parts.setdefault(key, []).append(_gmm_reduced(sums))
    for key in sorted(parts):
        chunks = parts.pop(key)
        yield key, {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _gmm_query(groups: list[str], request: _Request) -> str:
    """The SQL of the Arellano-Bond sums per (group, sequence) of the view ``shard``.

    A window gives each row the text's levels ``l0`` (its own ``log_norm``) to ``l7``, seven
    positions back (0 before the text's first used position). Per text: the sums of the
    products of ``[1, l0, ..., l7]`` over its equations' rows (``all_i_j``: offsets 3 and
    beyond from the first used position), and that vector at offsets 3 and 4 (``at3_i``,
    ``at4_i``), whose outer products take the first one or two equations out of those sums.
    Rows are selected by multiplying with 0/1 indicators, which DuckDB sums far faster than
    it evaluates a filter per aggregate. The outcome rows' ``lag1``/``lag2`` must be the
    window's ``l1``/``l2``.
    """
    keys, first = _keys(groups), request.first - 2
    lags = ", ".join(f"lag(log_norm::DOUBLE, {k}, 0) OVER w AS l{k}" for k in range(1, GMM_LEVELS))
    levels = ["", *(f"l{k}" for k in range(GMM_LEVELS))]
    sums = [
        f"sum({' * '.join(filter(None, ['e', a, b]))}) AS all_{i}_{j}"
        for i, a in enumerate(levels)
        for j, b in enumerate(levels[i:], start=i)
    ] + [
        f"sum({' * '.join(filter(None, [at, a]))}) AS {at}_{i}"
        for at in ("at3", "at4")
        for i, a in enumerate(levels)
    ]
    checks = [
        "count(*) AS n",
        'min("position") AS first_position',
        'max("position") AS last_position',
        f'sum("position"::DOUBLE) AS {_pair("", "position")}',
        f'sum("position"::DOUBLE * "position") AS {_pair("position", "position")}',
        "count(*) FILTER (WHERE NOT coalesce(isfinite(l0) AND isfinite(lag1) AND isfinite(lag2),"
        " false)) AS n_bad",
        "count(*) FILTER (WHERE l1 IS DISTINCT FROM lag1 OR l2 IS DISTINCT FROM lag2) AS n_off",
    ]
    offset = f'"position" - {first}'
    return (
        f'WITH levels AS (SELECT {keys}, sequence, "position", {offset} AS t, '
        f"({offset} >= 3)::DOUBLE AS e, ({offset} = 3)::DOUBLE AS at3, "
        f"({offset} = 4)::DOUBLE AS at4, log_norm::DOUBLE AS l0, {lags}, lag1, lag2 FROM shard "
        f"WHERE {' AND '.join(_where(request, first))} "
        f'WINDOW w AS (PARTITION BY {keys}, sequence ORDER BY "position")) '
        f"SELECT {keys}, sequence, {', '.join(checks + sums)} FROM levels WHERE t >= 2 "
        f"GROUP BY {keys}, sequence"
    )


def _product(a: str, b: str) -> str:
    """The SQL of the product of base columns ``a`` and ``b`` (``""`` is the constant 1)."""
    return " * ".join(BASE[c] for c in (a, b) if c) or "1"


def _pair(a: str, b: str) -> str:
    """The name of the sum of ``a`` times ``b`` (``""`` is the constant 1: ``n`` for both)."""
    names = [c for c in (a, b) if c]
    return "sum_" + "__".join(names) if names else "n"


def _by_group(
    reader: pa.RecordBatchReader, groups: list[str]
) -> Iterator[tuple[Hashable, dict[str, np.ndarray]]]:
    """The rows of ``reader`` (ordered by ``groups``) gathered per group: key -> columns."""
    pending: list[pa.RecordBatch] = []
    for batch in reader:
        if not len(batch):
            continue
        values = [batch.column(name).to_numpy(zero_copy_only=False) for name in groups]
        changes = np.flatnonzero(np.any([v[1:] != v[:-1] for v in values], axis=0)) + 1
        bounds = [0, *changes.tolist(), len(batch)]
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            piece = batch.slice(start, stop - start)
            if pending and _batch_key(pending[0], groups) != _batch_key(piece, groups):
                yield _batch_key(pending[0], groups), _columns(pending)
                pending = []
            pending.append(piece)
    if pending:
        yield _batch_key(pending[0], groups), _columns(pending)


def _batch_key(batch: pa.RecordBatch, groups: list[str]) -> Hashable:
    """The group key of ``batch``'s first row."""
    return _key(batch.column(name)[0].as_py() for name in groups)


def _columns(batches: list[pa.RecordBatch]) -> dict[str, np.ndarray]:
    """One group's rows as numpy columns."""
    table = pa.Table.from_batches(batches)
    return {name: table[name].to_numpy() for name in table.column_names}


def _fit_group(
    request: _Request, groups: list[str], key: Hashable, sums: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Check one group's sums as ``models.fits.group_rows`` checks its rows, then fit it:
    its table rows and glance record."""
    if request.by_position:
        per_position = sums.pop("per_position").astype(bool)
        positions = {name: values[per_position] for name, values in sums.items()}
        sums = {name: values[~per_position] for name, values in sums.items()}
        n_covered = int(per_position.sum())
    else:
        positions = None
        n_covered = int(sums["last_position"].max()) - request.first + 1
    if sums["n_bad"].any():
        raise AttnmagError(
            f"the frame has missing or infinite values in {list(request.checked)} at "
            f"positions {request.first} and beyond (a zero norm, or positions missing from a "
            "sequence)"
        )
    n_rows, n_sequences = int(sums["n"].sum()), len(sums["n"])
    _check_size(request, groups, key, n_rows=n_rows, n_sequences=n_sequences, n_covered=n_covered)
    if request.consecutive:
        _check_consecutive(sums, request.first)
    if request.method == "gmm":
        _check_gmm_texts(groups, key, sums, request.first)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = request.fitter(sums, positions)
    seconds = time.perf_counter() - start
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    names = {"fit": request.fit, "method": request.method}
    values = key_values(groups, key)
    rows = tidy_rows(fitted, conf_level=request.conf_level, **names, **values)
    return rows, glance_row(fitted, seconds=seconds, warnings=messages, **names, **values)


def _check_size(
    request: _Request,
    groups: list[str],
    key: Hashable,
    *,
    n_rows: int,
    n_sequences: int,
    n_covered: int,
) -> None:
    """A group needs ``n_terms + 2`` rows from 2 sequences covering ``n_positions``
    positions (``models.fits.group_rows``' rule); otherwise an error naming it."""
    if n_rows >= request.n_terms + 2 and n_sequences >= 2 and n_covered >= request.n_positions:
        return
    span = f"positions {request.first}..{request.last}"
    if request.last is None:
        span = f"positions >= {request.first}"
    raise AttnmagError(
        f"{describe(groups, key)} has {n_rows} rows from {n_sequences} sequences covering "
        f"{n_covered} positions at {span}; this fit needs at least {request.n_terms + 2} rows "
        f"from 2 sequences covering {request.n_positions} positions"
    )


def _check_gmm_texts(
    groups: list[str], key: Hashable, sums: dict[str, np.ndarray], first: int
) -> None:
    """The group needs more texts with a differenced equation (a row at ``first + 1``, where
    ``first`` is the first outcome row's position) than the GMM has instruments."""
    n_texts = int((sums["all_0_0"] > 0).sum())
    n_instruments = GMM_LAGS[1] - GMM_LAGS[0] + 2
    if n_texts <= n_instruments:
        raise AttnmagError(
            f"{describe(groups, key)} has {n_texts} texts of at least {first + 2} tokens; "
            f"method 'gmm' needs at least {n_instruments + 1} (more than its {n_instruments} "
            "instruments)"
        )


def _check_consecutive(sums: dict[str, np.ndarray], initial: int) -> None:
    """Each text's positions run consecutively from ``initial`` (``models.lags``' rule):
    its rows, least position, and sums of positions and their squares are those of
    ``initial``..its last position."""
    low, high, n = sums["first_position"], sums["last_position"], sums["n"]
    expected_sum = (low + high) * n / 2
    expected_squares = (high * (high + 1) * (2 * high + 1) - (low - 1) * low * (2 * low - 1)) / 6
    bad = (
        (low != initial)
        | (n != high - low + 1)
        | ~np.isclose(sums[_pair("", "position")], expected_sum, rtol=0, atol=0.5)
        | ~np.isclose(sums[_pair("position", "position")], expected_squares, rtol=0, atol=0.5)
    )
    if bad.any():
        sequence = sums["sequence"][np.argmax(bad)]
        raise AttnmagError(
            f"sequence {sequence} does not have every position from {initial} on: the lag "
            f"models need each text's tokens consecutive from position {initial - 2}"
        )


def _base_cross(sums: dict[str, np.ndarray], base: tuple[str, ...]) -> np.ndarray:
    """Per sequence, the cross products of ``[1, *base]``: shape (sequences, m, m)."""
    names = ["", *base]
    cross = np.empty((len(sums["n"]), len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names[i:], start=i):
            cross[:, i, j] = cross[:, j, i] = sums[_pair(a, b)]
    return cross


def _mapped(
    sums: dict[str, np.ndarray], base: tuple[str, ...], mapping: np.ndarray, k_fe: int
) -> GroupedDesign:
    """The design whose columns ``[X | Z | y]`` are ``mapping @ [1, *base]`` (a matrix, or
    one per sequence), with ``k_fe`` fixed effects and ``y`` last."""
    cross = _base_cross(sums, base)
    if mapping.ndim == 2:
        design = np.einsum("ik,gkl,jl->gij", mapping, cross, mapping)
    else:
        design = np.einsum("gik,gkl,gjl->gij", mapping, cross, mapping)
    k_re = design.shape[1] - k_fe - 1
    return GroupedDesign(design, int(sums["n"].sum()), k_fe, k_re)


def _selection(*rows: int, width: int) -> np.ndarray:
    """The matrix that picks ``rows`` of a vector of ``width`` entries."""
    return np.eye(width)[list(rows)]


def _trend_design(sums: dict[str, np.ndarray]) -> tuple[GroupedDesign, np.ndarray]:
    """``[1, position | 1 | log_norm]``; the random intercept's unit scale."""
    mapping = _selection(0, 1, 0, 2, width=3)
    return _mapped(sums, ("position", "log_norm"), mapping, 2), np.ones(1)


def _trend_slope_design(sums: dict[str, np.ndarray]) -> tuple[GroupedDesign, np.ndarray]:
    """``[1, position | 1, position / sd(position) | log_norm]``, as ``fit_mixed`` scales
    the random slope; the random effects' scales (1, 1 / sd(position))."""
    n = sums["n"].sum()
    total, squares = sums[_pair("", "position")].sum(), sums[_pair("position", "position")].sum()
    spread = float(np.sqrt((squares - total**2 / n) / (n - 1)))
    mapping = _selection(0, 1, 0, 1, 2, width=3)
    mapping[3] /= spread
    return _mapped(sums, ("position", "log_norm"), mapping, 2), np.array([1.0, 1 / spread])


def _lag_design(sums: dict[str, np.ndarray]) -> tuple[GroupedDesign, np.ndarray]:
    """``[1, lag1, lag2 | 1 | log_norm]``."""
    mapping = _selection(0, 1, 2, 0, 3, width=4)
    return _mapped(sums, ("lag1", "lag2", "log_norm"), mapping, 3), np.ones(1)


def _initial_conditions_design(sums: dict[str, np.ndarray]) -> tuple[GroupedDesign, np.ndarray]:
    """``[1, lag1, lag2, position, y1, y2 | 1 | log_norm]``: ``y1`` and ``y2`` are each
    text's constants, its first two levels."""
    mapping = np.broadcast_to(_selection(0, 1, 2, 3, 0, 0, 0, 4, width=5), (len(sums["n"]), 8, 5))
    mapping = mapping.copy()
    mapping[:, 4, 0], mapping[:, 5, 0] = sums["y1"], sums["y2"]
    base = ("lag1", "lag2", "position", "log_norm")
    return _mapped(sums, base, mapping, 6), np.ones(1)


def _per_sequence(
    builder: Callable[[dict[str, np.ndarray]], tuple[GroupedDesign, np.ndarray]],
    fit: Callable[[GroupedDesign, np.ndarray, int], Fit],
) -> Callable[[dict[str, np.ndarray], dict[str, np.ndarray] | None], Fit]:
    """A group's fitter: its per-sequence sums -> ``builder``'s design -> ``fit``."""

    def fitter(sums: dict[str, np.ndarray], _: dict[str, np.ndarray] | None) -> Fit:
        design, scales = builder(sums)
        return fit(design, scales, len(sums["n"]))

    return fitter


def _ols(
    design: GroupedDesign, terms: Iterable[str], n_groups: int, *, centred: bool = True
) -> Fit:
    """OLS of the design's fixed effects, CR1 by sequence with t on G - 1 df, and
    statsmodels' OLS glance fields (log-likelihood, AIC, BIC on ``k_fe`` parameters; R2
    centred where the design holds a constant, ``centred``). The design's first random
    effect is the intercept, so its column sums y."""
    zero = np.zeros((design.k_re, design.k_re))
    point = design.gls(zero)
    covariance = cluster_covariance(design, zero, point.fe_params, point.xwx_inv)
    n, k = design.n_obs, design.k_fe
    total = design.cross.sum(axis=0)
    rss = point.scale * (n - k)
    tss = total[-1, -1] - (total[k, -1] ** 2 / n if centred else 0.0)
    llf = -n / 2 * (np.log(2 * np.pi) + np.log(rss / n) + 1)
    return Fit(
        estimate=pd.Series(point.fe_params, index=list(terms)),
        std_error=pd.Series(np.sqrt(np.diag(covariance)), index=list(terms)),
        df=float(n_groups - 1),
        n_obs=n,
        n_groups=n_groups,
        converged=True,
        stats={
            "r2": float(1 - rss / tss),
            "loglik": float(llf),
            "aic": float(-2 * llf + 2 * k),
            "bic": float(-2 * llf + np.log(n) * k),
            "sigma": float(np.sqrt(point.scale)),
        },
    )


def _mixed(
    design: GroupedDesign,
    scales: np.ndarray,
    terms: tuple[str, ...],
    n_groups: int,
    *,
    cov_type: str,
) -> Fit:
    """REML's global maximum (``models.mixed``'s search) and the GLS values there, with
    ``fit_mixed``'s standard errors and glance fields; ``scales`` unscale the random effects
    (a random slope fitted on position / sd(position))."""
    notes = []
    if _exact(design):
        cov_rel, converged = np.zeros((design.k_re, design.k_re)), True
        notes.append(
            "the fixed effects fit the outcome exactly (to rounding), so REML is rounding "
            "noise: the boundary fit (GLS at zero variance, i.e. OLS) is reported"
        )
    else:
        cov_rel, converged = _search(design)
        if not cov_rel.any():
            notes.append(
                "zero random-effect variance is REML's global maximum: the boundary fit (GLS "
                "at zero variance, i.e. OLS) is reported"
            )
        elif np.linalg.eigvalsh(cov_rel).min() < STATSMODELS_SINGULAR_TOL:
            notes.append(
                "REML's maximum has a singular random-effects covariance (on the boundary): "
                "the GLS values there are reported"
            )
    return reml_fit(
        design,
        cov_rel,
        design.gls(cov_rel),
        terms=terms,
        n_groups=n_groups,
        scales=scales,
        cov_type=cov_type,
        converged=converged,
        notes=notes,
    )


def _aggregate(sums: dict[str, np.ndarray], positions: dict[str, np.ndarray] | None) -> Fit:
    """``fit_aggregate`` from the per-position sums: the log of each position's mean norm
    on position, classical OLS errors (t on n - 2 df)."""
    position = positions["position"].astype(np.float64)
    means = positions["norm_sum"] / positions["n"]
    design = pd.DataFrame({"Intercept": np.ones_like(position), "position": position})
    result = sm.OLS(np.log(means), design).fit()
    return ols_fit(result, df=float(result.df_resid), n_groups=len(sums["n"]))


def _levels(*terms: tuple[int | None, float]) -> np.ndarray:
    """A row over ``[1, l0, ..., l7]``: ``(k, c)`` adds c times level k (``None``: the 1)."""
    row = np.zeros(GMM_LEVELS + 1)
    for k, c in terms:
        row[0 if k is None else k + 1] += c
    return row


def _level_sums(sums: dict[str, np.ndarray]) -> np.ndarray:
    """Per text, the sums ``all_i_j`` as symmetric matrices."""
    size = GMM_LEVELS + 1
    out = np.empty((len(sums["n"]), size, size))
    for i in range(size):
        for j in range(i, size):
            out[:, i, j] = out[:, j, i] = sums[f"all_{i}_{j}"]
    return out


def _gmm_reduced(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Texts' level sums (``_gmm_query``) -> their Arellano-Bond cross products.

    The differenced equations' ``x = [Δy[t-1], Δy[t-2], 1]``, ``y = Δy[t]`` and instruments
    ``z = [y[t-2..t-6], 1]`` are linear in the levels, so each text's ``Z'X`` (``zx``),
    ``Z'y`` (``zy``), ``sum v[t] v[t-2]'`` of ``v = [x; y]`` two equations apart (``back``),
    ``Z'Z`` and ``sum z[t] z[t-1]'`` over consecutive equations are maps of its sums; the last
    two enter the estimator only summed, so they are kept summed (``zz``, ``adjacent``: one
    row for these texts). Texts without an equation have zero arrays, which add nothing.
    ``n``, ``last_position``, ``n_bad`` and ``all_0_0`` (its equations) are kept per text.
    """
    if sums["n_off"].any():
        sequence = sums["sequence"][np.argmax(sums["n_off"] > 0)]
        raise AttnmagError(
            f"sequence {sequence}'s lag1 and lag2 are not its log_norm one and two positions "
            "earlier: the lag models need each text's tokens consecutive from its first used "
            "position"
        )
    low, high = GMM_LAGS
    one = (None, 1.0)
    x = np.array([_levels((1, 1), (2, -1)), _levels((2, 1), (3, -1)), _levels(one)])
    y = _levels((0, 1), (1, -1))
    z = np.array([*(_levels((k, 1)) for k in range(low, high + 1)), _levels(one)])
    z_previous = np.array([*(_levels((k + 1, 1)) for k in range(low, high + 1)), _levels(one)])
    v = np.vstack([x, y])
    v_back = np.array(
        [_levels((3, 1), (4, -1)), _levels((4, 1), (5, -1)), _levels(one), _levels((2, 1), (3, -1))]
    )
    every = _level_sums(sums)
    at3, at4 = (
        np.column_stack([sums[f"{at}_{i}"] for i in range(GMM_LEVELS + 1)]) for at in ("at3", "at4")
    )
    following = every - at3[:, :, None] * at3[:, None, :]  # equations after the first
    after = following - at4[:, :, None] * at4[:, None, :]  # equations after the second
    zm = np.einsum("ik,gkl->gil", z, every)
    # Copies: a view would keep the whole record batch it came from alive.
    kept = {name: sums[name].copy() for name in ("n", "last_position", "n_bad", "all_0_0")}
    return kept | {
        "zx": zm @ x.T,
        "zy": zm @ y,
        "back": np.einsum("ik,gkl,jl->gij", v, after, v_back),
        "zz": (zm @ z.T).sum(axis=0, keepdims=True),
        "adjacent": np.einsum("ik,gkl,jl->ij", z, following, z_previous)[None],
    }


def _gmm(sums: dict[str, np.ndarray], _: dict[str, np.ndarray] | None) -> Fit:
    """``fit_gmm`` from a group's reduced sums (``_gmm_reduced``)."""
    texts = sums["all_0_0"] > 0  # texts with an equation
    try:
        result = _arellano_bond(
            zz=sums["zz"].sum(axis=0),
            zx=sums["zx"],
            zy=sums["zy"],
            adjacent=sums["adjacent"].sum(axis=0),
            back=sums["back"],
        )
    except np.linalg.LinAlgError as error:
        return _failed_gmm(sums, texts, f"GMM failed: {type(error).__name__}: {error}")
    std_error = np.sqrt(np.diag(result.covariance))
    terms = ["lag1", "lag2", "position"]
    return Fit(
        estimate=pd.Series(result.estimate, index=terms),
        std_error=pd.Series(std_error, index=terms),
        df=np.inf,
        n_obs=int(sums["all_0_0"].sum()),
        n_groups=int(texts.sum()),
        converged=bool(np.all(np.isfinite(result.estimate)) and np.all(np.isfinite(std_error))),
        stats=gmm_stats(result),
        notes=[AR2_UNDEFINED] if np.isnan(result.ar2_statistic) else [],
    )


def _failed_gmm(sums: dict[str, np.ndarray], texts: np.ndarray, message: str) -> Fit:
    """A GMM fit whose linear algebra failed: NaN estimates, ``converged=False``."""
    missing = pd.Series(np.nan, index=["lag1", "lag2", "position"])
    return Fit(
        estimate=missing,
        std_error=missing,
        df=np.inf,
        n_obs=int(sums["all_0_0"].sum()),
        n_groups=int(texts.sum()),
        converged=False,
        stats=gmm_stats(None),
        notes=[message],
    )


def _arellano_bond(
    *, zz: np.ndarray, zx: np.ndarray, zy: np.ndarray, adjacent: np.ndarray, back: np.ndarray
) -> GMMResult:
    """``models.gmm.arellano_bond`` from sums: ``zz`` sum_i Z_i'Z_i, ``adjacent``
    sum_t z_t z_{t-1}' over consecutive equations of a text; per text ``zx`` Z_i'X_i,
    ``zy`` Z_i'y_i and ``back`` sum_t v_t v_{t-2}' with v = [x; y] (equations two apart):
    the same two-step estimates, Windmeijer covariance, Hansen's J and AR(2) (see that
    module)."""
    total_zx, total_zy = zx.sum(axis=0), zy.sum(axis=0)
    a1 = np.linalg.inv(2 * zz - adjacent - adjacent.T)
    b1 = np.linalg.inv(total_zx.T @ a1 @ total_zx)
    one_step = b1 @ total_zx.T @ a1 @ total_zy
    g1 = zy - zx @ one_step  # per text Z_i' e_i
    omega = g1.T @ g1
    a2 = np.linalg.inv(omega)
    b2 = np.linalg.inv(total_zx.T @ a2 @ total_zx)
    estimate = b2 @ total_zx.T @ a2 @ total_zy
    g2 = zy - zx @ estimate
    ze2 = g2.sum(axis=0)
    one_step_cov = b1 @ total_zx.T @ a1 @ omega @ a1 @ total_zx @ b1
    columns = []
    for k in range(zx.shape[2]):
        gx = zx[:, :, k]
        derivative = -(gx.T @ g1 + g1.T @ gx)
        columns.append(-b2 @ total_zx.T @ a2 @ derivative @ a2 @ ze2)
    d = np.column_stack(columns)
    covariance = b2 + d @ b2 + b2 @ d.T + d @ one_step_cov @ d.T
    residual = np.r_[-estimate, 1.0]  # e = residual @ [x; y]
    products = np.einsum("i,gij,j->g", residual, back, residual)  # per text e_i' l_i
    lx = back.sum(axis=0)[: len(estimate)] @ residual
    zve = g2.T @ products
    variance = (
        products @ products - 2 * lx @ covariance @ total_zx.T @ a2 @ zve + lx @ covariance @ lx
    )
    ar2 = float(products.sum() / np.sqrt(variance)) if variance > 0 else float("nan")
    return GMMResult(
        estimate=estimate,
        covariance=covariance,
        one_step=one_step,
        hansen_j=float(ze2 @ a2 @ ze2),
        hansen_df=zx.shape[1] - zx.shape[2],
        ar2_statistic=ar2,
        n_instruments=zx.shape[1],
    )
