"""The standard fits: every requested method of ``position_trend`` and ``lag_effects``.

Holds ``fit_all``, what ``attnmag fit`` writes and what a report shows: the two tidy tables
(methods stacked) and the glance rows of every fit, as plain DataFrames that CSV keeps. It
takes the frame, or a shard folder's path, whose fits stream from the folder without
building the frame (see ``models.fits``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial

import pandas as pd

from attnmag.extract.norms import progress_bar
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import (
    METHODS,
    PARALLEL_METHODS,
    Plan,
    check_options,
    fit_group,
    fit_plans,
    frame_or_folder,
    gathered,
    lag_effects,
    lag_plan,
    position_trend,
    trend_plan,
)
from attnmag.models.tidy import glance
from attnmag.workers import fork_map, n_workers

__all__ = ["fit_all"]


def fit_all(
    frame: pd.DataFrame | str | os.PathLike,
    *,
    trend_methods: Sequence[str] | None = None,
    lag_methods: Sequence[str] | None = None,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, pd.DataFrame]:
    """Fit every requested method of the position trend and the lag effects.

    Parameters
    ----------
    frame : pandas.DataFrame, str or os.PathLike
        The tidy frame of ``extract``; or the path of a shard folder (``attnmag extract
        --out``), each fit streamed from it without building the frame, or of a Parquet
        file, read once as the frame.
    trend_methods, lag_methods : sequence of str, optional
        Methods to fit; None means every method of ``METHODS``, an empty sequence none
        (that model's table is then left out).
    max_position : int
        Last position of the trend fits.
    conf_level : float
        Level of the tables' intervals (carried in their ``conf_level`` column).
    n_jobs : int, optional
        Worker processes for a frame's fits, shared by the groups of every method, where a
        mixed method is among them (``None`` or -1: one per core); not used for a folder.
    progress : bool, optional
        One progress bar over the groups of every fit of a frame, once they take more than
        a second (None: where someone watches).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``position_trend`` and ``lag_effects``, each the tidy tables of its methods stacked
        (their glance rows in ``attrs["glance"]``), and ``glance``, one row per fit of both;
        empty where nothing was asked for.

    Examples
    --------
    >>> tables = fit_all(frame, lag_methods=["gmm"], conf_level=0.9)  # doctest: +SKIP
    >>> tables["glance"][["method", "layer", "hansen_p"]]  # doctest: +SKIP
    >>> tables = fit_all("norms/")  # doctest: +SKIP
    """
    frame = frame_or_folder(frame)
    methods = {
        "position_trend": METHODS["position_trend"] if trend_methods is None else trend_methods,
        "lag_effects": METHODS["lag_effects"] if lag_methods is None else lag_methods,
    }
    for name, chosen in methods.items():
        for method in chosen:
            check_options(name, method, METHODS[name], conf_level, "cluster")
    if isinstance(frame, pd.DataFrame):
        fitted = _fitted_frame(frame, methods, max_position, conf_level, n_jobs, progress)
    else:
        fits = {
            "position_trend": lambda m: position_trend(
                frame, method=m, max_position=max_position, conf_level=conf_level
            ),
            "lag_effects": lambda m: lag_effects(frame, method=m, conf_level=conf_level),
        }
        fitted = {name: [fits[name](m) for m in methods[name]] for name in fits if methods[name]}
    out: dict[str, pd.DataFrame] = {}
    for name, tables in fitted.items():
        out[name] = pd.concat(tables, ignore_index=True)
        out[name].attrs["glance"] = [row for t in tables for row in t.attrs["glance"]]
    if fitted:
        out["glance"] = pd.concat([glance(out[name]) for name in fitted], ignore_index=True)
    return out


def _fitted_frame(
    frame: pd.DataFrame,
    methods: dict[str, Sequence[str]],
    max_position: int,
    conf_level: float,
    n_jobs: int | None,
    progress: bool | None,
) -> dict[str, list[pd.DataFrame]]:
    """Each requested fit of a frame -> its tidy tables, one per method, in one pool.

    A mixed method's rows are selected here and its groups handed out one by one (each
    takes long); every other method is one task, its rows selected and fitted in the worker
    and only its table coming back. Without a mixed method, or with one worker, the methods
    are fitted here one after another, one method's rows in memory at a time.
    """
    requested = [(name, m) for name in ("position_trend", "lag_effects") for m in methods[name]]
    options = {"max_position": max_position, "conf_level": conf_level}

    def plan(at: int) -> Plan:
        name, method = requested[at]
        if name == "position_trend":
            return trend_plan(frame, method=method, **options)
        return lag_plan(frame, method=method, conf_level=conf_level)

    costly = [at for at, (_, m) in enumerate(requested) if m in PARALLEL_METHODS]
    workers = n_workers(n_jobs)
    if costly and workers > 1:
        tables = _pooled(plan, costly, len(requested), workers=workers, progress=progress)
    else:  # one method at a time: one method's rows in memory at once
        tables = {at: _table(plan, at, progress) for at in range(len(requested))}
    return {
        name: [tables[at] for at, (fit, _) in enumerate(requested) if fit == name]
        for name in methods
        if methods[name]
    }


def _pooled(
    plan: Callable[[int], Plan],
    costly: list[int],
    count: int,
    *,
    workers: int,
    progress: bool | None,
) -> dict[int, pd.DataFrame]:
    """``_fitted_frame``'s pool: the groups of the ``costly`` plans (built here) and each
    other plan whole (built in the worker) -> the tidy table of each plan, by number."""
    plans = {at: plan(at) for at in costly}
    groups = [(at, index) for at in costly for index in range(len(plans[at].parts))]
    whole = [at for at in range(count) if at not in plans]
    # The whole plans first: the small groups then even out the workers' ends.
    tasks = [partial(_table, plan, at) for at in whole]
    tasks += [partial(fit_group, plans[at], index) for at, index in groups]
    bar = progress_bar(progress, total=len(tasks), unit="fit", desc=f"{count} fits", delay=1.0)
    done = []
    with bar:
        for result in fork_map(lambda at: tasks[at](), len(tasks), workers=workers):
            done.append(result)
            bar.update(1)
    tables = {at: table for at, table in zip(whole, done[: len(whole)], strict=True)}
    owners = [owner for owner, _ in groups]
    for at in costly:
        results = [r for owner, r in zip(owners, done[len(whole) :], strict=True) if owner == at]
        tables[at] = gathered(plans[at], results).tidy
    return tables


def _table(plan: Callable[[int], Plan], at: int, progress: bool | None = False) -> pd.DataFrame:
    """The tidy table of plan number ``at``, built and fitted in this process."""
    return fit_plans([plan(at)], n_jobs=1, progress=progress)[0].tidy
