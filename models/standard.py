"""The standard fits: every requested method of ``position_trend`` and ``lag_effects``.

Holds ``fit_all``, what ``attnmag fit`` writes and what a report shows: the two tidy tables
(methods stacked) and the glance rows of every fit, as plain DataFrames that CSV keeps;
``read_fits``, those tables read back from their CSV files; ``TABLES``, their names. It
takes the frame, or a shard folder's path (verified once for all the fits), whose fits are
made without building the frame (see ``models.named``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from attnmag.database import n_threads
from attnmag.errors import AttnmagError
from attnmag.models.checks import METHODS
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.named import fit_requests, lag_request, trend_request
from attnmag.models.source import open_source
from attnmag.models.tidy import glance

__all__ = ["TABLES", "fit_all", "read_fits"]

#: The tables ``fit_all`` gives and ``attnmag fit`` writes as ``<name>.csv``.
TABLES = ("position_trend", "lag_effects", "glance")


def fit_all(
    frame: pd.DataFrame | str | os.PathLike,
    *,
    trend_methods: Sequence[str] | None = None,
    lag_methods: Sequence[str] | None = None,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, pd.DataFrame]:
    """Fit every requested method of the position trend and the lag effects.

    Parameters
    ----------
    frame : pandas.DataFrame, str, os.PathLike or Source
        The tidy frame of ``extract``; or the path of a shard folder (``attnmag extract
        --out``), fitted without building the frame, or of a Parquet file, read once as
        the frame.
    trend_methods, lag_methods : sequence of str, optional
        Methods to fit; None means every method of ``METHODS``, an empty sequence none
        (that model's table is then left out).
    max_position : int
        Last position of the trend fits.
    first_position : int
        The first position every fit uses (1: the attention sink, position 0, is left out).
    conf_level : float
        Level of the tables' intervals (carried in their ``conf_level`` column).
    n_jobs : int, optional
        DuckDB's threads for the sums (``None`` or -1: one per core).
    progress : bool, optional
        A progress bar over the groups of each fit, once it takes more than a second (None:
        where someone watches).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``position_trend`` and ``lag_effects``, each the tidy tables of its methods stacked
        (their glance rows in ``attrs["glance"]``), and ``glance``, one row per fit of both;
        empty where nothing was asked for.

    Examples
    --------
    >>> tables = fit_all(frame, trend_methods=["ols"], lag_methods=["gmm"], conf_level=0.9)
    >>> sorted(tables)
    ['glance', 'lag_effects', 'position_trend']
    >>> tables["glance"][["method", "layer", "hansen_p"]].shape
    (24, 3)
    >>> tables = fit_all(shards, trend_methods=["aggregate"], lag_methods=["ols"], n_jobs=1)
    >>> tables["position_trend"]["layer"].unique().tolist()
    [0, 1, 2]
    """
    n_threads(n_jobs)
    methods = {
        "position_trend": METHODS["position_trend"] if trend_methods is None else trend_methods,
        "lag_effects": METHODS["lag_effects"] if lag_methods is None else lag_methods,
    }
    requests = {
        "position_trend": [
            trend_request(
                method=m,
                max_position=max_position,
                first_position=first_position,
                conf_level=conf_level,
            )
            for m in methods["position_trend"]
        ],
        "lag_effects": [
            lag_request(method=m, first_position=first_position, conf_level=conf_level)
            for m in methods["lag_effects"]
        ],
    }
    every = [request for name in requests for request in requests[name]]
    source = open_source(frame)
    done = iter(fit_requests(source, every, n_jobs=n_jobs, progress=progress) if every else [])
    fitted = {name: [next(done) for _ in chosen] for name, chosen in requests.items() if chosen}
    out: dict[str, pd.DataFrame] = {}
    for name, tables in fitted.items():
        out[name] = pd.concat(tables, ignore_index=True)
        out[name].attrs["glance"] = [row for t in tables for row in t.attrs["glance"]]
    if fitted:
        out["glance"] = pd.concat([glance(out[name]) for name in fitted], ignore_index=True)
    return out


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV table of ``attnmag fit``, or a one-line refusal naming the file."""
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise AttnmagError(
            f"{path} is not a table of `attnmag fit` ({reason}); rerun `attnmag fit`"
        ) from None
    if table.empty:
        raise AttnmagError(f"{path} holds no rows; rerun `attnmag fit` to write the tables again")
    return table


def read_fits(folder: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables of ``fit_all`` written as CSV (``attnmag fit``), read back.

    Parameters
    ----------
    folder : str or os.PathLike
        Holds ``position_trend.csv`` and ``lag_effects.csv``, and ``glance.csv`` where the
        fits' details were written.

    Returns
    -------
    dict of str to pandas.DataFrame
        As ``fit_all`` gives them: each tidy table carries its fits' glance rows in
        ``attrs["glance"]`` (so ``glance(table)`` works), and ``glance`` is there where
        ``glance.csv`` is.

    Examples
    --------
    >>> from attnmag.cli import main
    >>> main(["fit", str(shards), "--out", "tables", "--methods", "ols", "--lag-methods", "ols"])
    tables
    0
    >>> tables = read_fits("tables/")
    >>> sorted(tables), glance(tables["lag_effects"])["layer"].tolist()
    (['glance', 'lag_effects', 'position_trend'], [0, 1, 2])
    """
    path = Path(folder)
    missing = [f"{name}.csv" for name in TABLES[:2] if not (path / f"{name}.csv").is_file()]
    if missing:
        raise AttnmagError(f"{path} lacks {' and '.join(missing)} (written by `attnmag fit`)")
    out = {
        name: _read_table(path / f"{name}.csv")
        for name in TABLES
        if (path / f"{name}.csv").is_file()
    }
    if "glance" in out:
        glance_rows = out["glance"]
        for name in TABLES[:2]:
            mine = glance_rows[glance_rows["fit"].isin(out[name]["fit"].unique())]
            out[name].attrs["glance"] = mine.to_dict("records")
    return out
