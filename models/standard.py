"""The standard fits: every requested method of ``position_trend`` and ``lag_effects``.

Holds ``fit_all``, what ``attnmag fit`` writes and what a report shows: the two tidy tables
(methods stacked) and the glance rows of every fit, as plain DataFrames that CSV keeps. It
takes the frame, or a shard folder's path, whose fits stream from the folder without
building the frame (see ``models.fits``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import (
    METHODS,
    check_options,
    fit_plans,
    frame_or_folder,
    lag_effects,
    lag_plan,
    position_trend,
    trend_plan,
)
from attnmag.models.tidy import glance

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
    """Each requested fit of a frame -> its tidy tables, one per method; the groups of every
    method share one pool of workers (``models.fits.fit_plans``)."""
    plans = [
        trend_plan(frame, method=m, max_position=max_position, conf_level=conf_level)
        for m in methods["position_trend"]
    ] + [lag_plan(frame, method=m, conf_level=conf_level) for m in methods["lag_effects"]]
    tables = [fits.tidy for fits in fit_plans(plans, n_jobs=n_jobs, progress=progress)]
    return {
        name: [t for plan, t in zip(plans, tables, strict=True) if plan.spec.fit == name]
        for name in methods
        if methods[name]
    }
