"""The standard fits: every requested method of ``position_trend`` and ``lag_effects``.

Holds ``fit_all`` (what ``attnmag fit`` writes and a report shows), ``write_fits`` and
``read_fits`` (CSV files and back) and ``TABLES`` (their names).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from attnmag.database import n_threads
from attnmag.errors import AttnmagError
from attnmag.models.checks import CONF_LEVEL, MAX_POSITION, METHODS
from attnmag.models.named import fit_requests, lag_request, trend_request
from attnmag.models.results import Fits
from attnmag.models.source import open_source

__all__ = ["TABLES", "fit_all", "read_fits", "write_fits"]

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
) -> dict[str, Fits]:
    """Fit every requested method of the position trend and the lag effects.

    Parameters
    ----------
    trend_methods, lag_methods : sequence of str, optional
        None: every method of ``METHODS``; empty: none (that fit is left out).
    frame, max_position, first_position, conf_level, n_jobs, progress
        As for ``position_trend``.

    Returns
    -------
    dict of str to Fits
        ``position_trend`` and ``lag_effects``, each its methods' ``Fits`` together.

    Examples
    --------
    >>> fits = fit_all(frame, trend_methods=["ols"], lag_methods=["gmm"], conf_level=0.9)
    >>> sorted(fits)
    ['lag_effects', 'position_trend']
    >>> fits["lag_effects"].glance[["method", "layer", "hansen_p"]].shape
    (12, 3)
    >>> fits = fit_all(shards, trend_methods=["aggregate"], lag_methods=["ols"], n_jobs=1)
    >>> fits["position_trend"].tidy["layer"].unique().tolist()
    [0, 1, 2]
    """
    n_threads(n_jobs)
    trend = METHODS["position_trend"] if trend_methods is None else trend_methods
    lags = METHODS["lag_effects"] if lag_methods is None else lag_methods
    options = {"first_position": first_position, "conf_level": conf_level}
    requests = {
        "position_trend": [
            trend_request(method=m, max_position=max_position, **options) for m in trend
        ],
        "lag_effects": [lag_request(method=m, **options) for m in lags],
    }
    every = [request for name in requests for request in requests[name]]
    source = open_source(frame)
    done = iter(fit_requests(source, every, n_jobs=n_jobs, progress=progress) if every else [])
    return {
        name: Fits.concat([next(done) for _ in chosen])
        for name, chosen in requests.items()
        if chosen
    }


def write_fits(fits: Mapping[str, Fits], folder: str | os.PathLike) -> dict[str, Path]:
    """``fit_all``'s fits as CSV files in the existing ``folder``: each tidy table as
    ``<name>.csv``, the glance rows of all as ``glance.csv``; file name -> path.

    >>> Path("tables").mkdir()
    >>> written = write_fits(fit_all(frame, lag_methods=["ols"]), "tables/")
    >>> sorted(written)
    ['glance.csv', 'lag_effects.csv', 'position_trend.csv']
    """
    tables = {name: item.tidy for name, item in fits.items()}
    glances = [item.glance for item in fits.values() if len(item.glance)]
    if glances:
        tables["glance"] = pd.concat(glances, ignore_index=True)
    written = {}
    for name, table in tables.items():
        path = Path(folder) / f"{name}.csv"
        table.to_csv(path, index=False)
        written[path.name] = path
    return written


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


def read_fits(folder: str | os.PathLike) -> dict[str, Fits]:
    """The fits ``write_fits`` wrote in ``folder``, with ``glance.csv``'s rows where it is
    there, without ``results`` (no rows to refit).

    >>> from attnmag.cli import main
    >>> main(["fit", str(shards), "--out", "tables", "--methods", "ols", "--lag-methods", "ols"])
    tables
    0
    >>> fits = read_fits("tables/")
    >>> sorted(fits), fits["lag_effects"].glance["layer"].tolist()
    (['lag_effects', 'position_trend'], [0, 1, 2])
    """
    path = Path(folder)
    missing = [f"{name}.csv" for name in TABLES[:2] if not (path / f"{name}.csv").is_file()]
    if missing:
        raise AttnmagError(f"{path} lacks {' and '.join(missing)} (written by `attnmag fit`)")
    tables = {name: _read_table(path / f"{name}.csv") for name in TABLES[:2]}
    glance = path / "glance.csv"
    records = _read_table(glance).to_dict("records") if glance.is_file() else []
    for name, table in tables.items():
        table.attrs["glance"] = [record for record in records if record["fit"] == name]
    return {name: Fits(table, []) for name, table in tables.items()}
