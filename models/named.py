"""The named fits, ``position_trend`` and ``lag_effects``, of a frame or a shard folder.

Holds:
- ``position_trend``: ``log_norm ~ position`` per group (``aggregate``, ``ols``, ``mixed``);
- ``lag_effects``: the lag-1 and lag-2 effects per group (``ols``, ``initial_conditions``,
  ``gmm``);
- ``Request``, ``trend_request``, ``lag_request``: one named fit, its options checked;
  ``fit_requests`` runs several on one ``Source``, summing rows once where they share them.

The rows are a ``models.source.Source``, of which DuckDB sums, per group and sequence, the
products of a few base columns (``1``, ``position``, ``lag1``, ``lag2``, ``log_norm``, as
doubles), with the rows, the positions' range and a count of missing or infinite values;
for the position trend also per group and position. Python receives these sums one group at
a time: arrays of sequences x m x m, whatever the number of rows. Every column of a design
``[X | Z | y]`` is a base column or, for the initial conditions ``y1`` and ``y2``, a base
column times a per-sequence constant, so each sequence's cross products follow from its base
sums (``models.mixed.GroupedDesign``): ``ols`` (``models.ols``), ``mixed`` (REML) and
``initial_conditions`` (maximum likelihood, and again with a random slope on lag1 for the
likelihood-ratio test, ``models.mixed.slope_test``) are fitted from them; ``aggregate`` from the
per-position sums; ``gmm`` (``models.gmm``) from per-text sums of the products of each row's
levels ``l0`` .. ``l7`` (a DuckDB window), summed one shard at a time.

Each group's glance also carries the leading-position diagnostic (``models.leading``),
from one more query of per-sequence sums.

A group without enough rows, a missing or infinite value, or (for ``initial_conditions`` and
``gmm``) a text whose positions are not consecutive is an ``AttnmagError`` naming the group
or the sequence.

Usage::

    from attnmag import models

    trend = models.position_trend(frame, method="mixed")
    lags = models.lag_effects("norms/", method="initial_conditions")
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from queue import Empty, Queue
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS
from threadpoolctl import threadpool_limits

from attnmag.errors import AttnmagError
from attnmag.extract.frame import GROUP_COLUMNS
from attnmag.models.checks import (
    METHODS,
    check_first_position,
    check_options,
    check_size,
    not_finite,
)
from attnmag.models.cr2 import trend_cov_type
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.gmm import GMM_LAGS, GMM_LEVELS, gmm_fit, gmm_reduced
from attnmag.models.groups import by_group, describe, key_of, key_values, sql_list
from attnmag.models.leading import leading_query, leading_stats
from attnmag.models.mixed import GroupedDesign, mixed_fit, mixed_result, slope_test
from attnmag.models.ols import cluster_ols_result, ols_fit, statsmodels_fit
from attnmag.models.results import Fits, GroupFit
from attnmag.models.source import Source, open_source
from attnmag.models.tidy import Estimate, failed_fit, fits_of, fitted_rows
from attnmag.progress import progress_bar

__all__ = [
    "Request",
    "fit_requests",
    "lag_effects",
    "lag_request",
    "position_trend",
    "trend_request",
]

#: Rows of the per-sequence sums handed to Python per batch.
BATCH_ROWS = 1 << 14
#: Groups' sums a thread of their own queries ahead of the fits (``_ahead``).
SUMS_AHEAD = 4
_Item = TypeVar("_Item")
#: Reads a group's fitted rows again, for statsmodels' results and ``Fits.augment``.
Rows = Callable[[], pd.DataFrame]
#: The base columns a design is built from (``1`` is implied), as SQL expressions.
BASE = {
    "position": '"position"::DOUBLE',
    "lag1": "lag1::DOUBLE",
    "lag2": "lag2::DOUBLE",
    "log_norm": "log_norm::DOUBLE",
}


@dataclass(frozen=True)
class Request:
    """One named fit: the rows to sum and how to fit one group from its sums
    (``trend_request``, ``lag_request``; ``fit_requests`` runs them).

    Examples
    --------
    >>> request = lag_request(method="ols")
    >>> request.fit, request.terms, request.first, request.leading
    ('lag_effects', ('Intercept', 'lag1', 'lag2'), 3, 1)
    """

    fit: str
    method: str
    conf_level: float
    base: tuple[str, ...]  # base columns summed per sequence, besides the constant 1
    checked: tuple[str, ...]  # columns that must be finite in the fitted rows
    first: int  # the first fitted position
    leading: int  # the first used position (the first fitted, or its lags')
    last: int | None
    layers: Iterable[int] | None
    terms: tuple[str, ...]
    n_positions: int
    by_position: bool  # also sum per group and position (position_trend)
    consecutive: bool  # each text's positions must run consecutively from ``first``
    formula: str  # the model as statsmodels writes it, for ``Fits.results`` and ``augment``
    fitter: Callable[[dict[str, np.ndarray], dict[str, np.ndarray] | None, Rows], Estimate]


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
    """Fit ``log_norm ~ position`` per group.

    Parameters
    ----------
    frame : pandas.DataFrame, str, os.PathLike or Source
        The tidy frame (``sequence``, ``layer``, ``position``, ``log_norm``; ``norm`` for
        ``"aggregate"``); fitted once per layer, or per (model, site, layer, head) where
        present. Or a path: a shard folder of ``extract.write_shards``, fitted without
        building the frame, or a Parquet file, read as the frame. Either way the fit is
        made from per-sequence sums computed by DuckDB (see the module docstring).
    method : {"ols", "aggregate", "mixed"}
        ``"ols"`` (the default): token-level OLS, errors clustered by sequence (see
        ``cov_type``); ``"aggregate"``: the log of the mean norm per position on position, the
        notebook's fit, classical errors; ``"mixed"``: the GLS values at REML's global
        maximum of a random intercept per sequence (``random_slope=True`` adds a random
        slope on position).
    max_position : int
        The last position fitted.
    first_position : int
        The first position fitted: 1 (the default) leaves out position 0, the attention
        sink; 0 keeps it; a larger value leaves out more leading positions.
    layers : iterable of int, optional
        The layers to fit; every layer by default.
    random_slope : bool
        For ``"mixed"``: a random slope on position besides the intercept.
    cov_type : {None, "cluster", "cr2", "model"}
        For ``"ols"`` and ``"mixed"``: ``"cluster"``, the CR1 sandwich by sequence (t on
        G - 1 df); ``"cr2"``, the CR2 sandwich by sequence with each coefficient's
        Bell-McCaffrey df, whose intervals hold with few texts; ``"model"`` (``"mixed"``
        only), lme4's model-based covariance (Wald z), which assumes no serial correlation
        within a text beyond the random effects'. None (the default): ``"cr2"`` for a group
        of fewer than 50 texts (``models.cr2.CR2_BELOW``), ``"cluster"`` from there.
    conf_level : float
        The intervals' level.
    n_jobs : int, optional
        DuckDB's threads for the sums (``None`` or -1: one per core).
    progress : bool, optional
        A progress bar on stderr over the groups: True, False, or None (shown where
        someone watches, once the fits take more than a second).

    Returns
    -------
    Fits
        ``.tidy`` one row per group and term (``Intercept``, ``position``), ``.glance`` one
        row per group (with the leading-position diagnostic, ``models.leading``),
        ``.results`` statsmodels' fit of a group when asked for (``ols``, ``mixed``:
        refitted on its rows, none for ``ols`` under CR2; ``aggregate``: the OLS on the
        position means).

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
    """The lag-1 and lag-2 effects on ``log_norm`` per layer.

    The first used position is ``first_position``; outcome rows are those two positions
    later and beyond, so that both lags are used positions.

    Parameters
    ----------
    frame : pandas.DataFrame, str or os.PathLike
        The tidy frame (``sequence``, ``layer``, ``position``, ``log_norm``, ``lag1``,
        ``lag2``); each text's positions must be consecutive. Or a path, as for
        ``position_trend``: a shard folder, fitted without building the frame, or a
        Parquet file.
    method : {"initial_conditions", "gmm", "ols"}
        What to estimate:

        - ``"initial_conditions"`` (the default): within-text persistence, by a random
          intercept per text with initial conditions (Wooldridge 2005), maximum likelihood
          (REML's lag estimates are biased down more in few texts):
          ``log_norm ~ lag1 + lag2 + position + y1 + y2 + (1 | sequence)``, where ``y1`` and
          ``y2`` are the text's ``log_norm`` at the first two used positions. Conditioning
          on them is what makes the text's level independent of the random intercept.
          ``glance`` adds the likelihood-ratio test of a random lag1 slope
          (``lag1_slope_lr``, ``lag1_slope_p``; 50:50 chi-square(1)/chi-square(2)): both
          within-text methods assume one lag coefficient for every text;
        - ``"gmm"``: the same persistence by Arellano-Bond difference GMM (two-step,
          Windmeijer standard errors, collapsed instruments from the levels 2-6 positions
          back, a position trend that is a constant in differences; terms ``lag1``,
          ``lag2``, ``position``), with fewer assumptions and wider intervals; texts with
          fewer than ``first_position + 4`` tokens have no differenced equation and drop
          out. ``glance`` gives Hansen's J and the AR(2) test;
        - ``"ols"``: the notebook's pooled ``log_norm ~ lag1 + lag2`` (CR1 errors by
          sequence, t on G - 1 df): a description of how tokens' magnitudes co-vary across
          the corpus, not within-text persistence (texts that differ in level make it
          larger than that).
    first_position : int
        The first position used, as for ``position_trend`` (1: the attention sink, position
        0, is left out).
    layers : iterable of int, optional
        The layers to fit; every layer by default.
    cov_type : {"cluster", "cr2", "model"}
        For ``initial_conditions``: ``"cluster"``, the sandwich by sequence over the
        fixed effects and the variance components together, each text's scores corrected
        for its leverage (``models.mixed.stacked_covariance``: the components' estimation
        feeds into the lag coefficients), t on G - 1 df; ``"cr2"``, the CR2 sandwich of
        the fixed effects alone at the fitted variance components, with each
        coefficient's Bell-McCaffrey df (for few texts); or ``"model"``, lme4's
        model-based covariance (Wald z), which assumes no serial correlation within a text
        beyond the random intercept's. ``ols`` takes
        ``"cluster"`` or ``"cr2"``; ``gmm`` (Windmeijer) only ``"cluster"``.
    conf_level : float
        The intervals' level.
    n_jobs : int, optional
        DuckDB's threads for the sums (``None`` or -1: one per core).
    progress : bool, optional
        A progress bar over the groups, as for ``position_trend``.

    Returns
    -------
    Fits
        ``.tidy`` one row per group and term, ``.glance`` each fit's details, including the
        rows (``n_obs``) and texts (``n_groups``) it used and the leading-position
        diagnostic, ``.results`` statsmodels' fit of a group when asked for (``ols`` under
        CR1, ``initial_conditions``; none for ``gmm``).

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

    Examples
    --------
    >>> request = trend_request(method="mixed", max_position=20)
    >>> request.fit, request.method, request.first, request.last
    ('position_trend', 'mixed', 1, 20)
    """
    checked = "cluster" if cov_type is None else cov_type
    check_options("position_trend", method, METHODS["position_trend"], conf_level, checked)
    check_first_position(first_position, max_position)
    if random_slope and method != "mixed":
        raise AttnmagError(f"random_slope needs method='mixed', not method={method!r}")
    terms, formula = ("Intercept", "position"), "log_norm ~ position"
    if method == "aggregate":
        fitter = _aggregate
    elif method == "ols":
        fitter = _per_sequence(_trend_design, _ols(terms, formula, cov_type))
    else:
        design = _trend_slope_design if random_slope else _trend_design
        fitter = _per_sequence(design, _mixed(terms, formula, random_slope, cov_type))
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
        terms=terms,
        n_positions=3,
        by_position=True,
        consecutive=False,
        formula=formula,
        fitter=fitter,
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

    Examples
    --------
    >>> request = lag_request(method="gmm")
    >>> request.fit, request.method, request.terms
    ('lag_effects', 'gmm', ('lag1', 'lag2', 'position'))
    """
    check_options("lag_effects", method, METHODS["lag_effects"], conf_level, cov_type)
    check_first_position(first_position)
    if method == "gmm":
        terms, base = ("lag1", "lag2", "position"), ()
        formula = "log_norm ~ 0 + lag1 + lag2 + position"
        fitter = gmm_fit
    elif method == "ols":
        terms, formula = ("Intercept", "lag1", "lag2"), "log_norm ~ lag1 + lag2"
        base = ("lag1", "lag2", "log_norm")
        fitter = _per_sequence(_lag_design, _ols(terms, formula, cov_type))
    else:
        terms = ("Intercept", "lag1", "lag2", "position", "y1", "y2")
        formula = "log_norm ~ lag1 + lag2 + position + y1 + y2"
        base = ("lag1", "lag2", "position", "log_norm")
        fitter = _initial_conditions_fitter(terms, formula, cov_type)
    return Request(
        fit="lag_effects",
        method=method,
        conf_level=conf_level,
        base=base,
        checked=("log_norm", "lag1", "lag2"),
        first=first_position + 2,
        leading=first_position,
        last=None,
        layers=None if layers is None else tuple(layers),
        terms=terms,
        n_positions=2 if method == "initial_conditions" else 1,
        by_position=False,
        consecutive=method == "initial_conditions",  # gmm's: in _gmm_by_group
        formula=formula,
        fitter=fitter,
    )


def fit_requests(
    source: Source, requests: list[Request], *, n_jobs: int | None, progress: bool | None
) -> list[Fits]:
    """The ``Fits`` of each of ``requests`` on ``source``: DuckDB sums the rows, once for
    the requests that sum the same rows (``position_trend``'s methods; ``lag_effects``'
    ``ols`` and ``initial_conditions``), and each group is fitted as its sums arrive. A
    thread of its own runs the queries (``_ahead``), so DuckDB sums the next rows while
    Python fits.

    >>> from attnmag.models.source import open_source
    >>> asked = [trend_request(method="ols"), lag_request(method="gmm")]
    >>> trend, lags = fit_requests(open_source(frame), asked, n_jobs=1, progress=False)
    >>> len(models.glance(trend)), len(models.glance(lags))
    (12, 12)
    """
    found: dict[int, dict[Hashable, tuple]] = {id(request): {} for request in requests}
    # One BLAS thread: the fits' products are small, and OpenBLAS's threads, splitting them,
    # wait on each other far longer than the products take.
    with source.connected(n_jobs) as connection, threadpool_limits(1, user_api="blas"):
        columns = [row[0] for row in connection.execute("DESCRIBE frame").fetchall()]
        needed = ["layer", "sequence", "position", *(c for r in requests for c in r.checked)]
        missing = [column for column in dict.fromkeys(needed) if column not in columns]
        if missing:
            raise AttnmagError(
                f"{source.name} lacks the columns {missing} that the models stage needs"
            )
        groups, expected = _groups(connection, columns, requests[0].layers)
        sets = _shared(requests)
        with _ahead(_sums(source, n_jobs, groups, sets), SUMS_AHEAD) as chunks:
            leading = {
                first: _leading(connection, groups, first, requests[0])
                for first in {r.leading for r in requests}
            }
            for shared in sets:
                label = ", ".join(f"{r.fit} {r.method}" for r in shared)
                total = len(expected) * len(shared)
                with progress_bar(progress, total=total, unit="fit", desc=label, delay=1.0) as bar:
                    for key, sums in iter(partial(next, chunks), None):
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


def _sums(
    source: Source, n_jobs: int | None, groups: list[str], sets: list[list[Request]]
) -> Iterator[tuple[Hashable, dict[str, np.ndarray]] | None]:
    """Per set of requests that share their sums (``_shared``), each group's sums in key
    order, then ``None``; on a connection of their own."""
    with source.connected(n_jobs) as connection:
        for shared in sets:
            if shared[0].method == "gmm":
                yield from _gmm_by_group(connection, source, groups, shared[0])
            else:
                query = _sums_query(groups, shared)
                yield from by_group(connection.sql(query).to_arrow_reader(BATCH_ROWS), groups)
            yield None


@contextmanager
def _ahead(items: Iterator[_Item], depth: int) -> Iterator[Iterator[_Item]]:
    """``items`` in order, made from now on by a thread of their own, at most ``depth``
    ahead of their use (DuckDB's queries release the GIL); an error there is raised here, in
    its place; on exit that thread stops."""
    made: Queue[tuple[bool, object]] = Queue(depth)
    stop = threading.Event()

    def make() -> None:
        try:
            for item in items:
                made.put((True, item))
                if stop.is_set():
                    return
            made.put((False, None))
        except BaseException as error:  # raised where the item would have been
            made.put((False, error))
        finally:
            items.close()

    def taken() -> Iterator[_Item]:
        while True:
            more, item = made.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item

    thread = threading.Thread(target=make, name="attnmag-ahead", daemon=True)
    thread.start()
    try:
        yield taken()
    finally:
        stop.set()
        while thread.is_alive():  # unblock a waiting put
            with suppress(Empty):
                made.get(timeout=0.05)
        thread.join()


def _leading(
    connection: duckdb.DuckDBPyConnection, groups: list[str], first: int, request: Request
) -> dict[Hashable, dict[str, float | bool]]:
    """Per group, the leading-position diagnostic (``models.leading``) of the fits whose
    first used position is ``first``, in ``request``'s layers."""
    query = leading_query(sql_list(groups), first, _in_layers(request.layers))
    reader = connection.sql(query).to_arrow_reader(BATCH_ROWS)
    return {key: leading_stats(sums, first) for key, sums in by_group(reader, groups)}


def _shared(requests: list[Request]) -> list[list[Request]]:
    """``requests`` in sets that one query sums (the same rows); each ``gmm`` alone."""
    sets: dict[tuple, list[Request]] = {}
    for request in requests:
        alone = id(request) if request.method == "gmm" else None
        key = (alone, request.fit, request.first, request.last, request.layers)
        sets.setdefault(key, []).append(request)
    return list(sets.values())


def _groups(
    connection: duckdb.DuckDBPyConnection, columns: list[str], layers: Iterable[int] | None
) -> tuple[list[str], list[Hashable]]:
    """The grouping columns, and the keys of the groups in the requested layers, sorted."""
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


def _sums_query(groups: list[str], requests: list[Request]) -> str:
    """The SQL of the per-(group, sequence) sums (and per-(group, position) sums) that
    ``requests``, fits of the same rows, need; ordered by group."""
    keys = sql_list(groups)
    names = [column for column in BASE if any(column in r.base for r in requests)]
    base = ["", *names]
    sums = [
        f"sum({_product(a, b)}) AS {_pair(a, b)}"
        for i, a in enumerate(base)
        for b in base[i + 1 :]
        if b
    ] + [f"sum({_product(b, b)}) AS {_pair(b, b)}" for b in names]
    checked = list(dict.fromkeys(c for r in requests for c in r.checked))
    finite = " AND ".join(f"isfinite({column})" for column in checked)
    first = requests[0].first
    aggregates = [
        "count(*) AS n",
        *sums,
        'min("position") AS first_position',
        'max("position") AS last_position',
        f"count(*) FILTER (WHERE NOT coalesce({finite}, false)) AS n_bad",
    ]
    if any(r.method == "initial_conditions" for r in requests):
        aggregates += [
            f'max(lag2) FILTER (WHERE "position" = {first}) AS y1',
            f'max(lag1) FILTER (WHERE "position" = {first}) AS y2',
        ]
    if "norm" in checked:
        aggregates.append("sum(norm::DOUBLE) AS norm_sum")
    where = _where(requests[0], first)
    select = ", ".join(aggregates)
    if requests[0].by_position:
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
    """The SQL conditions on the rows to sum: positions ``first``..``request.last``, the
    requested layers."""
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
) -> Iterator[tuple[Hashable, dict[str, np.ndarray]]]:
    """Per group, in key order, its texts' Arellano-Bond cross products (``gmm_reduced``),
    summed by DuckDB shard by shard.

    A shard holds whole texts, so each text's sums are complete within its shard, and the
    window holds one shard's rows at a time (over the whole folder it would hold every row;
    a frame, already in memory, is one part).
    Each shard's sums are checked (consecutive positions, the frame's lags) and reduced to
    the few arrays the estimator needs as they arrive.
    """
    parts: dict[Hashable, list[dict[str, np.ndarray]]] = {}
    query = f"{_gmm_query(groups, request)} ORDER BY {sql_list(groups)}, sequence"
    for part in source.parts():
        source.part_view(connection, part, "shard")
        reader = connection.sql(query).to_arrow_reader(BATCH_ROWS)
        for key, sums in by_group(reader, groups):
            _check_consecutive(sums, request.first)
            parts.setdefault(key, []).append(gmm_reduced(sums))
    for key in sorted(parts):
        chunks = parts.pop(key)
        yield key, {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _gmm_query(groups: list[str], request: Request) -> str:
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
        f"({offset} = 4)::DOUBLE AS at4, log_norm AS l0, {lags}, lag1, lag2 FROM shard "
        f"WHERE {' AND '.join(_where(request, first))} "
        f'WINDOW w AS (PARTITION BY {keys}, sequence ORDER BY "position")) '
        f"SELECT {keys}, sequence, {', '.join(checks + sums)} FROM levels WHERE t >= 2 "
        f"GROUP BY {keys}, sequence"
    )


def _product(a: str, b: str) -> str:
    """The SQL of the product of base columns ``a`` and ``b`` (``""`` is the constant 1)."""
    return " * ".join(BASE[c] for c in (a, b) if c) or "1"


def _pair(a: str, b: str) -> str:
    """The name of the sum of ``a`` times ``b`` (``""`` is the constant 1: ``n`` for both),
    whichever comes first."""
    names = sorted((c for c in (a, b) if c), key=list(BASE).index)
    return "sum_" + "__".join(names) if names else "n"


def _fit_group(
    source: Source,
    request: Request,
    groups: list[str],
    key: Hashable,
    sums: dict[str, np.ndarray],
    diagnostic: dict[str, float | bool],
) -> tuple[pd.DataFrame, dict[str, object], GroupFit]:
    """Check one group's sums, then fit it: its table rows, glance record and ``GroupFit``,
    with the leading-position ``diagnostic`` among its stats; a fit whose linear algebra
    fails is a failed ``Estimate``, its reason in the glance ``warnings``."""
    if request.by_position:
        per_position = sums.pop("per_position").astype(bool)
        positions = {name: values[per_position] for name, values in sums.items()}
        sums = {name: values[~per_position] for name, values in sums.items()}
        n_covered = int(per_position.sum())
    else:
        positions = None
        n_covered = int(sums["last_position"].max()) - request.first + 1
    if sums["n_bad"].any():
        raise not_finite(list(request.checked), request.first)
    n_rows, n_sequences = int(sums["n"].sum()), len(sums["n"])
    _check_size(request, groups, key, n_rows=n_rows, n_sequences=n_sequences, n_covered=n_covered)
    if request.consecutive:
        _check_consecutive(sums, request.first)
    if request.method == "gmm":
        _check_gmm_texts(groups, key, sums, request.first)

    values = key_values(groups, key)
    rows = partial(_group_rows, source, request, values)

    def run() -> Estimate:
        try:
            fitted = request.fitter(sums, positions, rows)
        except (np.linalg.LinAlgError, ValueError) as error:
            message = f"{request.method} fit failed: {type(error).__name__}: {error}"
            fitted = failed_fit(request.terms, n_obs=n_rows, n_groups=n_sequences, message=message)
        fitted.stats |= diagnostic
        return fitted

    names = {"fit": request.fit, "method": request.method, "conf_level": request.conf_level}
    return fitted_rows(run, groups=values, formula=request.formula, rows=rows, **names)


def _group_rows(source: Source, request: Request, values: dict[str, object]) -> pd.DataFrame:
    """One group's fitted rows, read again from ``source``; for the initial conditions with
    each text's ``y1`` and ``y2``."""
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
    span = f"positions >= {request.first}"
    if request.last is not None:
        span = f"positions {request.first}..{request.last}"
    needed, n_positions = len(request.terms) + 2, request.n_positions
    check_size(describe(groups, key), span=span, needed=needed, n_positions=n_positions, **counts)


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
    """Each text's positions run consecutively from ``initial``:
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
    sums: dict[str, np.ndarray],
    base: tuple[str, ...],
    mapping: np.ndarray,
    k_fe: int,
    *,
    ml: bool = False,
) -> GroupedDesign:
    """The design whose columns ``[X | Z | y]`` are ``mapping @ [1, *base]`` (a matrix, or
    one per sequence), with ``k_fe`` fixed effects and ``y`` last; fitted by ML where
    ``ml``, else REML."""
    design = mapping @ _base_cross(sums, base) @ np.swapaxes(mapping, -1, -2)
    k_re = design.shape[1] - k_fe - 1
    return GroupedDesign(design, int(sums["n"].sum()), k_fe, k_re, ml)


def _selection(*rows: int, width: int) -> np.ndarray:
    """The matrix that picks ``rows`` of a vector of ``width`` entries."""
    return np.eye(width)[list(rows)]


def _trend_design(sums: dict[str, np.ndarray]) -> tuple[GroupedDesign, np.ndarray]:
    """``[1, position | 1 | log_norm]``; the random intercept's unit scale."""
    mapping = _selection(0, 1, 0, 2, width=3)
    return _mapped(sums, ("position", "log_norm"), mapping, 2), np.ones(1)


def _trend_slope_design(sums: dict[str, np.ndarray]) -> tuple[GroupedDesign, np.ndarray]:
    """``[1, position | 1, position / sd(position) | log_norm]``, as ``mixed_result`` scales
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


def _initial_conditions_design(sums: dict[str, np.ndarray], *, slope: bool) -> GroupedDesign:
    """``[1, lag1, lag2, position, y1, y2 | 1 | log_norm]`` for maximum likelihood: ``y1`` and
    ``y2`` are each text's constants, its first two levels; with ``slope``, a random slope
    on lag1 / sd(lag1) besides the intercept (scaled as ``_trend_slope_design`` scales
    position)."""
    random = (0, 1) if slope else (0,)
    rows = _selection(0, 1, 2, 3, 0, 0, *random, 4, width=5)
    mapping = np.broadcast_to(rows, (len(sums["n"]), *rows.shape)).copy()
    mapping[:, 4, 0], mapping[:, 5, 0] = sums["y1"], sums["y2"]
    if slope:
        n, total = sums["n"].sum(), sums[_pair("", "lag1")].sum()
        spread = np.sqrt((sums[_pair("lag1", "lag1")].sum() - total**2 / n) / (n - 1))
        mapping[:, 7] /= spread
    base = ("lag1", "lag2", "position", "log_norm")
    return _mapped(sums, base, mapping, 6, ml=True)


def _initial_conditions_fitter(
    terms: tuple[str, ...], formula: str, cov_type: str
) -> Callable[[dict[str, np.ndarray], object, Rows], Estimate]:
    """The ``initial_conditions`` fitter: the ML fit of a random intercept (``_mixed``),
    its glance fields with the likelihood-ratio test of a random slope on lag1
    (``slope_test``: ``lag1_slope_lr``, ``lag1_slope_p``)."""
    mixed = _mixed(terms, formula, False, cov_type)

    def fitter(sums: dict[str, np.ndarray], _: object, rows: Rows) -> Estimate:
        design = _initial_conditions_design(sums, slope=False)
        fitted = mixed(design, np.ones(1), len(sums["n"]), rows)
        lr, p_value = slope_test(_initial_conditions_design(sums, slope=True))
        fitted.stats |= {"lag1_slope_lr": lr, "lag1_slope_p": p_value}
        return fitted

    return fitter


def _per_sequence(
    builder: Callable[[dict[str, np.ndarray]], tuple[GroupedDesign, np.ndarray]],
    fit: Callable[[GroupedDesign, np.ndarray, int, Rows], Estimate],
) -> Callable[[dict[str, np.ndarray], dict[str, np.ndarray] | None, Rows], Estimate]:
    """A group's fitter: its per-sequence sums -> ``builder``'s design -> ``fit``."""

    def fitter(sums: dict[str, np.ndarray], _: object, rows: Rows) -> Estimate:
        design, scales = builder(sums)
        return fit(design, scales, len(sums["n"]), rows)

    return fitter


def _ols(
    terms: tuple[str, ...], formula: str, cov_type: str | None
) -> Callable[[GroupedDesign, np.ndarray, int, Rows], Estimate]:
    """OLS with errors clustered by sequence (``cov_type``; None: the trend's default for
    the group's number of texts, ``trend_cov_type``); under CR1 its result refits the rows
    with statsmodels (which has no CR2: none under CR2)."""

    def fit(design: GroupedDesign, _: np.ndarray, n_groups: int, rows: Rows) -> Estimate:
        chosen = trend_cov_type(cov_type, n_groups)
        fitted = ols_fit(design, terms, n_groups, cov_type=chosen)
        if chosen == "cluster":
            fitted.result = lambda: cluster_ols_result(rows(), formula)
        return fitted

    return fit


def _mixed(
    terms: tuple[str, ...], formula: str, random_slope: bool, cov_type: str | None
) -> Callable[[GroupedDesign, np.ndarray, int, Rows], Estimate]:
    """REML's (an ML design's: the likelihood's) maximum, its errors by ``cov_type`` (None:
    as ``_ols``); its result refits the rows with statsmodels from there."""

    def fit(design: GroupedDesign, scales: np.ndarray, n_groups: int, rows: Rows) -> Estimate:
        def result(cov_rel: np.ndarray) -> object:
            return mixed_result(rows(), formula, random_slope, cov_rel, reml=not design.ml)

        chosen = trend_cov_type(cov_type, n_groups)
        return mixed_fit(design, scales, terms, n_groups, cov_type=chosen, result=result)

    return fit


def _aggregate(sums: dict[str, np.ndarray], positions: dict[str, np.ndarray], _: Rows) -> Estimate:
    """The notebook's fit, from the per-position sums: the log of each position's mean norm
    on position, one point per position, classical OLS errors sigma^2 (X'X)^-1 (t on n - 2
    df). Those treat the means as independent points: right when tokens are independent and
    every position has the same texts, too narrow when texts differ in level. ``n_obs`` is
    the number of positions, ``n_groups`` the sequences the means come from."""
    position = positions["position"].astype(np.float64)
    means = positions["norm_sum"] / positions["n"]
    design = pd.DataFrame({"Intercept": np.ones_like(position), "position": position})
    result = OLS(np.log(means), design).fit()
    fitted = statsmodels_fit(result, df=float(result.df_resid), n_groups=len(sums["n"]))
    fitted.result = lambda: result
    return fitted
