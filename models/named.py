"""The named fits, ``position_trend`` and ``lag_effects``, of a frame or a shard folder.

Holds ``position_trend``, ``lag_effects``, ``fit_design`` (the estimator they share with
``models.fit``), and ``Request``, ``trend_request``, ``lag_request`` and ``fit_requests``
(several fits on one ``Source``, summing shared rows once).

DuckDB sums per group and sequence the products of the base columns (``1``, ``position``,
``lag1``, ``lag2``, ``log_norm``; the trend's per position too; ``gmm``'s: of each row's
levels ``l0`` .. ``l7``, part by part), and every design column is a base column or, for
``y1`` and ``y2``, one times a per-sequence constant: each sequence's cross products follow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import duckdb
import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS
from threadpoolctl import threadpool_limits

from attnmag.errors import AttnmagError
from attnmag.models.checks import (
    CONF_LEVEL,
    MAX_POSITION,
    METHODS,
    check_columns,
    check_options,
    check_position,
    check_size,
    not_finite,
)
from attnmag.models.cr2 import CR2_BELOW
from attnmag.models.gmm import GMM_LAGS, GMM_LEVELS, gmm_fit, gmm_reduced
from attnmag.models.groups import by_group, describe, group_keys, key_values, sql_list, symmetric
from attnmag.models.leading import leading_query, leading_stats
from attnmag.models.mixed import GroupedDesign, mixed_fit, mixed_result, slope_test
from attnmag.models.ols import ols_fit
from attnmag.models.results import Fits, GroupFit
from attnmag.models.source import Source, open_source
from attnmag.models.tidy import Estimate, failed_fit, fits_of, fitted_rows
from attnmag.progress import progress_bar

__all__ = [
    "Request",
    "fit_design",
    "fit_requests",
    "lag_effects",
    "lag_request",
    "position_trend",
    "trend_request",
]

BATCH_ROWS = 1 << 14
#: Reads a group's fitted rows again, for statsmodels' results and ``Fits.augment``.
Rows = Callable[[], pd.DataFrame]
#: A group's per-sequence (or per-position) sums, by name.
Sums = dict[str, np.ndarray]
#: The base columns (``1`` is implied), as SQL.
BASE = {column: f'"{column}"::DOUBLE' for column in ("position", "lag1", "lag2", "log_norm")}
#: Per sequence: its rows and the range of its positions.
EXTENT = ["count(*) AS n", 'min("position") AS first_position', 'max("position") AS last_position']


@dataclass(frozen=True)
class Request:
    """One named fit: the rows to sum and how to fit a group from its sums.

    >>> request = lag_request(method="ols")
    >>> request.fit, request.terms, request.first, request.leading
    ('lag_effects', ('Intercept', 'lag1', 'lag2'), 3, 1)
    """

    fit: str
    method: str
    conf_level: float
    base: tuple[str, ...]  # base columns summed per sequence, besides 1
    checked: tuple[str, ...]  # columns that must be finite
    first: int  # the first fitted position
    leading: int  # the first used position (the first fitted, or its lags')
    layers: Iterable[int] | None
    terms: tuple[str, ...]
    n_positions: int
    formula: str  # as statsmodels writes it, for ``Fits.results`` and ``augment``
    design: Callable[[Sums], GroupedDesign] | None = None
    cov_type: str | None = "cluster"  # None: by the number of texts (``CR2_BELOW``)
    random_slope: bool = False
    last: int | None = None  # the trend's, whose sums are per position too


def position_trend(
    frame: pd.DataFrame | str | os.PathLike | Source,
    *,
    method: str = "ols",
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    layers: Iterable[int] | None = None,
    random_slope: bool = False,
    cov_type: str | None = None,
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> Fits:
    """Fit ``log_norm ~ position`` per group (docs/guide-models.md: each method's assumptions).

    Parameters
    ----------
    frame : pandas.DataFrame, str, os.PathLike or Source
        The tidy frame (``norm`` too for ``"aggregate"``), or a shard folder's or Parquet
        file's path.
    method : {"ols", "aggregate", "mixed"}
        Token-level OLS clustered by sequence; the notebook's OLS of the log of each
        position's mean norm; or REML's global maximum of a random intercept per sequence.
    max_position, first_position : int
        The last and first position fitted (1 leaves out the attention sink).
    layers : iterable of int, optional
        The layers to fit; every layer by default.
    random_slope : bool
        For ``"mixed"``: a random slope on position too.
    cov_type : {None, "cluster", "cr2", "model"}
        CR1 by sequence (t on G - 1 df), CR2 with Bell-McCaffrey df, or lme4's (``"mixed"``);
        None: CR2 below ``models.cr2.CR2_BELOW`` texts, CR1 from there.
    conf_level : float
        The intervals' level.
    n_jobs : int, optional
        DuckDB's threads (``None`` or -1: one per core).
    progress : bool, optional
        A progress bar over the groups (None: where someone watches, after a second).

    Returns
    -------
    Fits
        Terms ``Intercept`` and ``position``; the leading-position diagnostic in the glance.

    Examples
    --------
    >>> trend = position_trend(frame, method="mixed", layers=[0, 5], n_jobs=1)
    >>> models.glance(trend)[["layer", "n_groups", "converged"]]
       layer  n_groups  converged
    0      0        16       True
    1      5        16       True
    >>> trend = position_trend(shards, method="mixed", n_jobs=1)
    >>> models.glance(trend)["layer"].tolist()
    [0, 1, 2]
    """
    request = trend_request(
        method=method,
        max_position=max_position,
        first_position=first_position,
        layers=layers,
        random_slope=random_slope,
        cov_type=cov_type,
        conf_level=conf_level,
    )
    return fit_requests(open_source(frame), [request], n_jobs=n_jobs, progress=progress)[0]


def lag_effects(
    frame: pd.DataFrame | str | os.PathLike | Source,
    *,
    method: str = "initial_conditions",
    first_position: int = 1,
    layers: Iterable[int] | None = None,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> Fits:
    """The lag-1 and lag-2 effects on ``log_norm`` per group (docs/guide-models.md: each
    method's assumptions); outcome rows start two positions after ``first_position``.

    Parameters
    ----------
    frame : pandas.DataFrame, str, os.PathLike or Source
        As for ``position_trend``, with ``lag1`` and ``lag2``.
    method : {"initial_conditions", "gmm", "ols"}
        Within-text persistence by ML with a random intercept and the text's first two
        levels ``y1``, ``y2`` (Wooldridge 2005; the test of a random lag1 slope in the
        glance); the same by Arellano-Bond GMM (Hansen's J and AR(2)); or the notebook's
        pooled ``log_norm ~ lag1 + lag2``.
    first_position, layers, conf_level, n_jobs, progress
        As for ``position_trend``.
    cov_type : {"cluster", "cr2", "model"}
        For ``initial_conditions``: the sandwich over the fixed effects and variance
        components by sequence (``models.mixed.stacked_covariance``), CR2 or lme4's;
        ``ols``: ``"cluster"`` or ``"cr2"``; ``gmm`` (Windmeijer): ``"cluster"``.

    Returns
    -------
    Fits
        No ``results`` for ``gmm``.

    >>> lags = lag_effects(frame, n_jobs=1)
    >>> models.glance(lags)["method"].unique().tolist()
    ['initial_conditions']
    >>> check = lag_effects(frame, method="gmm", n_jobs=1)
    >>> models.glance(check)[["layer", "n_groups", "hansen_p", "ar2_p"]].shape
    (12, 4)
    >>> lags = lag_effects(shards, n_jobs=1)
    >>> models.glance(lags)["layer"].tolist()
    [0, 1, 2]
    """
    request = lag_request(
        method=method,
        first_position=first_position,
        layers=layers,
        cov_type=cov_type,
        conf_level=conf_level,
    )
    return fit_requests(open_source(frame), [request], n_jobs=n_jobs, progress=progress)[0]


def trend_request(
    *,
    method: str,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    layers: Iterable[int] | None = None,
    random_slope: bool = False,
    cov_type: str | None = None,
    conf_level: float = CONF_LEVEL,
) -> Request:
    """``position_trend``'s fit by ``method`` (its options checked), for ``fit_requests``.

    >>> request = trend_request(method="mixed", max_position=20)
    >>> request.fit, request.method, request.first, request.last
    ('position_trend', 'mixed', 1, 20)
    """
    checked = "cluster" if cov_type is None else cov_type
    check_options("position_trend", method, METHODS["position_trend"], conf_level, checked)
    check_position("max_position", max_position)
    check_position("first_position", first_position, max_position - 1)
    if random_slope and method != "mixed":
        raise AttnmagError(f"random_slope needs method='mixed', not method={method!r}")
    # [1, position | 1 (, position) | log_norm] from [1, position, log_norm]
    mapping = np.eye(3)[[0, 1, 0, *[1] * random_slope, 2]]
    return Request(
        fit="position_trend",
        method=method,
        conf_level=conf_level,
        base=("position", "log_norm"),
        checked=("log_norm", "norm") if method == "aggregate" else ("log_norm",),
        first=first_position,
        leading=first_position,
        last=max_position,
        layers=None if layers is None else tuple(layers),
        terms=("Intercept", "position"),
        n_positions=3,
        formula="log_norm ~ position",
        design=partial(_mapped, base=("position", "log_norm"), mapping=mapping, k_fe=2),
        cov_type=cov_type,
        random_slope=random_slope,
    )


def lag_request(
    *,
    method: str,
    first_position: int = 1,
    layers: Iterable[int] | None = None,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
) -> Request:
    """``lag_effects``' fit by ``method`` (its options checked), for ``fit_requests``.

    >>> request = lag_request(method="gmm")
    >>> request.fit, request.method, request.terms
    ('lag_effects', 'gmm', ('lag1', 'lag2', 'position'))
    """
    check_options("lag_effects", method, METHODS["lag_effects"], conf_level, cov_type)
    check_position("first_position", first_position)
    if method == "gmm":
        terms, base = ("lag1", "lag2", "position"), ()
        formula, design = "log_norm ~ 0 + lag1 + lag2 + position", None
    elif method == "ols":  # [1, lag1, lag2 | 1 | log_norm]
        terms, formula = ("Intercept", "lag1", "lag2"), "log_norm ~ lag1 + lag2"
        base = ("lag1", "lag2", "log_norm")
        design = partial(_mapped, base=base, mapping=np.eye(4)[[0, 1, 2, 0, 3]], k_fe=3)
    else:
        terms = ("Intercept", "lag1", "lag2", "position", "y1", "y2")
        formula = "log_norm ~ lag1 + lag2 + position + y1 + y2"
        base = ("lag1", "lag2", "position", "log_norm")
        design = partial(_initial_conditions_design, slope=False)
    return Request(
        fit="lag_effects",
        method=method,
        conf_level=conf_level,
        base=base,
        checked=("log_norm", "lag1", "lag2"),
        first=first_position + 2,
        leading=first_position,
        layers=None if layers is None else tuple(layers),
        terms=terms,
        n_positions=2 if method == "initial_conditions" else 1,
        formula=formula,
        design=design,
        cov_type=cov_type,
    )


def fit_requests(
    source: Source, requests: list[Request], *, n_jobs: int | None, progress: bool | None
) -> list[Fits]:
    """The ``Fits`` of each of ``requests`` on ``source``, each group fitted as its sums
    arrive, summed once where requests share rows.

    >>> from attnmag.models.source import open_source
    >>> asked = [trend_request(method="ols"), lag_request(method="gmm")]
    >>> trend, lags = fit_requests(open_source(frame), asked, n_jobs=1, progress=False)
    >>> len(models.glance(trend)), len(models.glance(lags))
    (12, 12)
    """
    found: dict[int, dict[Hashable, tuple]] = {id(request): {} for request in requests}
    # One BLAS thread: OpenBLAS's threads wait on each other longer than the small products take.
    with source.connected(n_jobs) as connection, threadpool_limits(1, user_api="blas"):
        columns = [row[0] for row in connection.execute("DESCRIBE frame").fetchall()]
        needed = ["layer", "sequence", "position", *(c for r in requests for c in r.checked)]
        check_columns(source.name, columns, needed)
        groups, expected = group_keys(connection, columns, requests[0].layers)
        leading = {}
        for first in {request.leading for request in requests}:
            query = leading_query(sql_list(groups), first, _in_layers(requests[0].layers))
            reader = connection.sql(query).to_arrow_reader(BATCH_ROWS)
            leading[first] = {k: leading_stats(s, first) for k, s in by_group(reader, groups)}
        for shared in _shared(requests):
            if shared[0].method == "gmm":
                chunks = _gmm_by_group(connection, source, groups, shared[0])
            else:
                query = _sums_query(groups, shared)
                chunks = by_group(connection.sql(query).to_arrow_reader(BATCH_ROWS), groups)
            label = ", ".join(f"{r.fit} {r.method}" for r in shared)
            total = len(expected) * len(shared)
            with progress_bar(progress, total=total, unit="fit", desc=label, delay=1.0) as bar:
                for key, sums in chunks:
                    for request in shared:
                        diagnostic = leading[request.leading].get(key, {})
                        found[id(request)][key] = _fit_group(
                            source, request, groups, key, dict(sums), diagnostic
                        )
                        bar.update(1)
    for request in requests:
        for key in [key for key in expected if key not in found[id(request)]]:
            _check_size(request, groups, key, n_rows=0, n_sequences=0, n_covered=0)
    return [fits_of([found[id(request)][key] for key in expected]) for request in requests]


def _shared(requests: list[Request]) -> list[list[Request]]:
    """``requests`` in sets that one query sums (the same rows); each ``gmm`` alone."""
    sets: dict[tuple, list[Request]] = {}
    for request in requests:
        alone = id(request) if request.method == "gmm" else None
        key = (alone, request.fit, request.first, request.last, request.layers)
        sets.setdefault(key, []).append(request)
    return list(sets.values())


def _sums_query(groups: list[str], requests: list[Request]) -> str:
    """The SQL of the per-(group, sequence) (and per position) sums of ``requests``."""
    keys = sql_list(groups)
    names = [column for column in BASE if any(column in r.base for r in requests)]
    base = ["", *names]
    pairs = [(a, b) for i, a in enumerate(base) for b in base[i:] if b]  # 1 x 1 is the count
    sums = [f"sum({' * '.join(BASE[c] for c in (a, b) if c)}) AS {_pair(a, b)}" for a, b in pairs]
    checked = list(dict.fromkeys(c for r in requests for c in r.checked))
    finite = " AND ".join(f"isfinite({column})" for column in checked)
    first = requests[0].first
    aggregates = [*EXTENT, *sums, f"count(*) FILTER (WHERE NOT coalesce({finite}, false)) AS n_bad"]
    if any(r.method == "initial_conditions" for r in requests):
        aggregates += [
            f'max(lag2) FILTER (WHERE "position" = {first}) AS y1',
            f'max(lag1) FILTER (WHERE "position" = {first}) AS y2',
        ]
    if "norm" in checked:
        aggregates.append("sum(norm::DOUBLE) AS norm_sum")
    where = _where(requests[0], first)
    select = ", ".join(aggregates)
    if requests[0].last is not None:
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


def _where(request: Request, first: int) -> list[str]:
    """The SQL conditions on the rows: positions ``first``..``request.last``, the layers."""
    where = [f'"position" >= {int(first)}']
    if request.last is not None:
        where.append(f'"position" <= {int(request.last)}')
    return where + _in_layers(request.layers)


def _in_layers(layers: Iterable[int] | None) -> list[str]:
    """The SQL condition on the rows' layers (none where every layer is fitted)."""
    if layers is None:
        return []
    return [f"layer IN ({', '.join(map(str, sorted({int(layer) for layer in layers})))})"]


def _gmm_by_group(
    connection: duckdb.DuckDBPyConnection,
    source: Source,
    groups: list[str],
    request: Request,
) -> Iterator[tuple[Hashable, Sums]]:
    """Per group, its texts' ``gmm_reduced`` sums, queried part by part (``Source.parts``)."""
    parts: dict[Hashable, list[Sums]] = {}
    query = f"{_gmm_query(groups, request)} ORDER BY {sql_list(groups)}, sequence"
    for part in source.parts():
        source.part_view(connection, part, "part")
        reader = connection.sql(query).to_arrow_reader(BATCH_ROWS)
        for key, sums in by_group(reader, groups):
            _check_consecutive(sums, request.first)
            parts.setdefault(key, []).append(gmm_reduced(sums))
    for key in sorted(parts):
        chunks = parts.pop(key)
        yield key, {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _gmm_query(groups: list[str], request: Request) -> str:
    """The SQL of the per-(group, sequence) sums of the products of ``[1, l0, ..., l7]``
    (``lk``: ``log_norm`` k positions back) over a text's equations (``all_i_j``), and that
    vector at its first two (``at3_i``, ``at4_i``), of the view ``part``; 0/1 factors
    select rows (DuckDB sums them faster than filters)."""
    keys, first = sql_list(groups), request.first - 2
    lags = ", ".join(f"lag(log_norm, {k}, 0) OVER w AS l{k}" for k in range(1, GMM_LEVELS))
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
        *EXTENT,
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
        f"({offset} = 4)::DOUBLE AS at4, log_norm AS l0, {lags}, lag1, lag2 FROM part "
        f"WHERE {' AND '.join(_where(request, first))} "
        f'WINDOW w AS (PARTITION BY {keys}, sequence ORDER BY "position")) '
        f"SELECT {keys}, sequence, {', '.join(checks + sums)} FROM levels WHERE t >= 2 "
        f"GROUP BY {keys}, sequence"
    )


def _pair(a: str, b: str) -> str:
    """The name of the sum of ``a`` times ``b`` (``""``: the constant 1), in either order."""
    names = sorted((c for c in (a, b) if c), key=list(BASE).index)
    return "sum_" + "__".join(names) if names else "n"


def _fit_group(
    source: Source,
    request: Request,
    groups: list[str],
    key: Hashable,
    sums: Sums,
    diagnostic: dict[str, float | bool],
) -> tuple[pd.DataFrame, dict[str, object], GroupFit]:
    """One group's sums checked and fitted (a ``failed_fit`` where the linear algebra fails)."""
    positions, n_covered = None, int(sums["last_position"].max()) - request.first + 1
    if request.last is not None:  # the trend's: per position too
        per_position = sums.pop("per_position").astype(bool)
        positions = {name: values[per_position] for name, values in sums.items()}
        sums = {name: values[~per_position] for name, values in sums.items()}
        n_covered = int(per_position.sum())
    if sums["n_bad"].any():
        raise not_finite(list(request.checked), request.first)
    n_rows, n_sequences = int(sums["n"].sum()), len(sums["n"])
    _check_size(request, groups, key, n_rows=n_rows, n_sequences=n_sequences, n_covered=n_covered)
    if request.method == "initial_conditions":  # gmm's: in _gmm_by_group
        _check_consecutive(sums, request.first)
    n_instruments = GMM_LAGS[1] - GMM_LAGS[0] + 2
    if request.method == "gmm" and (n_texts := int((sums["all_0_0"] > 0).sum())) <= n_instruments:
        raise AttnmagError(
            f"{describe(groups, key)} has {n_texts} texts of at least {request.first + 2} tokens; "
            f"method 'gmm' needs at least {n_instruments + 1} (more than its {n_instruments} "
            "instruments)"
        )

    values = key_values(groups, key)
    rows = partial(_group_rows, source, request, values)

    def run() -> Estimate:
        try:
            fitted = _estimate(request, sums, positions, rows)
        except (np.linalg.LinAlgError, ValueError) as error:
            message = f"{request.method} fit failed: {type(error).__name__}: {error}"
            fitted = failed_fit(request.terms, n_obs=n_rows, n_groups=n_sequences, message=message)
        fitted.stats |= diagnostic
        return fitted

    names = {"fit": request.fit, "method": request.method, "conf_level": request.conf_level}
    return fitted_rows(run, groups=values, formula=request.formula, rows=rows, **names)


def _group_rows(source: Source, request: Request, values: dict[str, object]) -> pd.DataFrame:
    """One group's fitted rows, read again from ``source`` (with ``y1``, ``y2``)."""
    select = sql_list(["sequence", "position", *dict.fromkeys(["log_norm", *request.checked])])
    if request.method == "initial_conditions":
        select += "".join(
            f', max({lag}) FILTER (WHERE "position" = {request.first}) OVER (PARTITION BY '
            f"sequence) AS {name}"
            for lag, name in (("lag2", "y1"), ("lag1", "y2"))
        )
    return source.rows(select, _where(request, request.first), values)


def _check_size(request: Request, groups: list[str], key: Hashable, **counts: int) -> None:
    """``check_size`` of a group of ``request``'s fit."""
    n_terms, n_positions = len(request.terms), request.n_positions
    limits = {"first": request.first, "last": request.last}
    check_size(describe(groups, key), n_terms=n_terms, n_positions=n_positions, **limits, **counts)


def _check_consecutive(sums: Sums, initial: int) -> None:
    """Require each text's positions consecutive from ``initial`` (count, range, sums)."""
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


def _mapped(
    sums: Sums,
    base: tuple[str, ...],
    mapping: np.ndarray,
    k_fe: int,
    *,
    ml: bool = False,
) -> GroupedDesign:
    """The design ``[X | Z | y]`` = ``mapping @ [1, *base]`` (one, or one per sequence)."""
    names = ["", *base]
    cross = symmetric(sums, lambda i, j: _pair(names[i], names[j]), len(names))
    design = mapping @ cross @ np.swapaxes(mapping, -1, -2)
    return GroupedDesign(design, int(sums["n"].sum()), k_fe, design.shape[1] - k_fe - 1, ml)


def _initial_conditions_design(sums: Sums, *, slope: bool) -> GroupedDesign:
    """``[1, lag1, lag2, position, y1, y2 | 1 (, lag1) | log_norm]``, by ML."""
    rows = np.eye(5)[[0, 1, 2, 3, 0, 0, 0, *[1] * slope, 4]]
    mapping = np.broadcast_to(rows, (len(sums["n"]), *rows.shape)).copy()
    mapping[:, 4, 0], mapping[:, 5, 0] = sums["y1"], sums["y2"]
    return _mapped(sums, ("lag1", "lag2", "position", "log_norm"), mapping, 6, ml=True)


def fit_design(
    design: GroupedDesign,
    method: str,
    terms: Sequence[str],
    n_groups: int,
    *,
    cov_type: str,
    random_slope: bool,
    rows: Rows,
    formula: str,
) -> Estimate:
    """OLS (``method="ols"``) or the mixed fit of ``design`` (a random slope fitted
    standardised), its statsmodels result refitting ``rows()`` by ``formula``: the named
    fits' and ``models.fit``'s estimator.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> fit = fit_design(design, "mixed", ["Intercept", "position"], 16, cov_type="cluster",
    ...                  random_slope=False, rows=lambda: rows, formula="log_norm ~ position")
    >>> fit.estimate.size, fit.result().fe_params.size
    (2, 2)
    """
    if method == "ols":
        return ols_fit(design, terms, n_groups, cov_type=cov_type, rows=rows, formula=formula)
    design, scales = design.standardised() if random_slope else (design, np.ones(1))

    def result(cov_rel: np.ndarray) -> object:
        return mixed_result(rows(), formula, random_slope, cov_rel, reml=not design.ml)

    return mixed_fit(design, scales, terms, n_groups, cov_type=cov_type, result=result)


def _estimate(request: Request, sums: Sums, positions: Sums | None, rows: Rows) -> Estimate:
    """A group's fit by ``request.method``; ``initial_conditions`` with the lag1 slope's test."""
    if request.method == "aggregate":
        return _aggregate(sums, positions)
    if request.method == "gmm":
        return gmm_fit(sums)
    n_groups = len(sums["n"])
    cov_type = request.cov_type or ("cr2" if n_groups < CR2_BELOW else "cluster")
    options = {"random_slope": request.random_slope, "rows": rows, "formula": request.formula}
    design, terms = request.design(sums), request.terms
    fitted = fit_design(design, request.method, terms, n_groups, cov_type=cov_type, **options)
    if request.method == "initial_conditions":
        slope = _initial_conditions_design(sums, slope=True).standardised()[0]
        lr, p_value = slope_test(slope)
        fitted.stats |= {"lag1_slope_lr": lr, "lag1_slope_p": p_value}
    return fitted


def _aggregate(sums: Sums, positions: Sums) -> Estimate:
    """OLS of the log of each position's mean norm on position (``n_obs``: the positions)."""
    ones, position = np.ones(len(positions["n"])), positions["position"].astype(np.float64)
    row = np.column_stack([ones, position, ones, np.log(positions["norm_sum"] / positions["n"])])
    design = GroupedDesign(row[:, :, None] * row[:, None, :], len(row), 2, 1)
    fitted = ols_fit(design, ("Intercept", "position"), len(sums["n"]), cov_type="model")
    exog = pd.DataFrame({"Intercept": ones, "position": position})
    fitted.result = lambda: OLS(row[:, -1], exog).fit()
    return fitted
