"""Tidy coefficient tables in the convention of R's broom, and their glance rows.

Holds:
- ``Estimate``: what one group's fit returns (estimates, standard errors, reference df, fit stats,
  and the statsmodels result where one is kept);
- ``TIDY_COLUMNS``, ``GLANCE_COLUMNS``, ``MIXED_GLANCE_COLUMNS``, ``LAG_GLANCE_COLUMNS``,
  ``GMM_GLANCE_COLUMNS``: the tables' columns in order (glance: every fit's, a mixed fit's,
  ``initial_conditions``', an Arellano-Bond fit's); ``LEADING_GLANCE_COLUMNS``, those the
  named fits add before ``seconds`` (the leading-position diagnostic of ``models.leading``);
- ``tidy_columns``: the table's columns for given grouping columns;
- ``glance_columns``: a fit's stats -> the glance columns its kind of fit has;
- ``tidy_rows`` / ``glance_row``: one group's ``Estimate`` -> its table rows / its glance record;
- ``build_table``: all groups' rows -> the table, with Holm-adjusted p-values across groups
  and the glance records kept in ``table.attrs["glance"]``;
- ``glance``: a table (or a ``Fits``) -> one row per group and fit.

The tables carry the grouping columns the fits ran by (``model``, ``site``, ``layer``,
``head``, see ``attnmag.models.groups``) in place of ``layer``, after the ``fit`` (the fit's
name) and ``method`` columns; a frame with ``layer`` alone gives
``TIDY_COLUMNS`` and ``GLANCE_COLUMNS`` exactly.

Intervals and p-values are Wald: ``estimate ± q * std_error`` with q from Student's t on
``df`` degrees of freedom, or from the normal distribution where ``df`` is infinite. Each
row carries its interval's level in ``conf_level``, so that the level survives ``pd.concat``
and CSV files, and whatever shows the interval can say which it is.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from attnmag.errors import AttnmagError
from attnmag.models.results import Fits, GroupFit

__all__ = [
    "TIDY_COLUMNS",
    "GLANCE_COLUMNS",
    "MIXED_GLANCE_COLUMNS",
    "LAG_GLANCE_COLUMNS",
    "GMM_GLANCE_COLUMNS",
    "LEADING_GLANCE_COLUMNS",
    "Estimate",
    "failed_fit",
    "fitted_rows",
    "fits_of",
    "holm",
    "tidy_columns",
    "glance_columns",
    "tidy_rows",
    "glance_row",
    "build_table",
    "glance",
]

TIDY_COLUMNS = (
    "fit method layer term estimate std_error statistic p_value conf_low conf_high df n_obs "
    "n_groups converged p_adjusted conf_level"
).split()
GLANCE_COLUMNS = (
    "fit method layer n_obs n_groups r2 loglik aic bic sigma converged seconds warnings".split()
)
#: A mixed fit's: the common ones, with ``boundary`` and the variance components.
MIXED_GLANCE_COLUMNS = [
    *GLANCE_COLUMNS[:-2],
    *"boundary var_intercept var_position cov_intercept_position".split(),
    *GLANCE_COLUMNS[-2:],
]
#: ``initial_conditions``' glance: a mixed fit's, with the likelihood-ratio test of a random
#: slope on lag1 (its statistic and p-value).
LAG_GLANCE_COLUMNS = [
    *MIXED_GLANCE_COLUMNS[:-2],
    "lag1_slope_lr",
    "lag1_slope_p",
    *MIXED_GLANCE_COLUMNS[-2:],
]
#: An Arellano-Bond fit's: the common ones, with Hansen's J and the AR(2) test.
GMM_GLANCE_COLUMNS = [
    *GLANCE_COLUMNS[:-2],
    *"hansen_j hansen_df hansen_p ar2_statistic ar2_p n_instruments".split(),
    *GLANCE_COLUMNS[-2:],
]

LEADING_GLANCE_COLUMNS = [
    *(f"leading_t{k}" for k in range(4)),
    "leading_flagged",
    "suggested_first_position",
]


@dataclass
class Estimate:
    """One group's fit: estimates and standard errors by term, and the fit's summary stats.

    ``df`` is the reference distribution's degrees of freedom (``inf`` for the normal), one for
    all terms or a Series by term (CR2's Bell-McCaffrey df);
    ``stats`` holds the glance fields the method defines (r2, loglik, aic, bic, sigma; for
    mixed models boundary and the variance components; for Arellano-Bond GMM Hansen's J and
    the AR(2) test, ``GMM_GLANCE_COLUMNS``); ``notes`` are messages about
    the fit that are not Python warnings; ``result`` is the function that builds the
    statsmodels results object of the estimates on first use, where the fit has one (else
    ``None``: GMM, a mixed maximum on the boundary).

    Examples
    --------
    >>> fitted = Estimate(
    ...     estimate=pd.Series({"Intercept": 1.2, "position": -0.02}),
    ...     std_error=pd.Series({"Intercept": 0.1, "position": 0.005}),
    ...     df=15, n_obs=400, n_groups=16, converged=True, stats={"r2": 0.1})
    >>> rows = tidy_rows(fitted, conf_level=0.95, fit="f", method="ols", layer=0)
    >>> rows["statistic"].round(9).tolist()
    [12.0, -4.0]
    """

    estimate: pd.Series
    std_error: pd.Series
    df: float | pd.Series
    n_obs: int
    n_groups: int
    converged: bool
    stats: dict[str, float | bool]
    notes: list[str] = field(default_factory=list)
    result: Callable[[], object] | None = None


def fitted_rows(
    run: Callable[[], Estimate],
    *,
    fit: str,
    method: str,
    conf_level: float,
    groups: dict[str, object],
    formula: str,
    rows: Callable[[], pd.DataFrame],
) -> tuple[pd.DataFrame, dict[str, object], GroupFit]:
    """``run()``, one group's fit, timed with its warnings captured -> its table rows,
    glance record and ``GroupFit`` (``formula`` and ``rows`` for its results and augment).

    >>> from attnmag.models.ols import cluster_ols_result, statsmodels_fit
    >>> layer0 = frame.query("layer == 0 and position >= 1")
    >>> ols = lambda: cluster_ols_result(layer0, "log_norm ~ position")  # noqa: E731
    >>> run = lambda: statsmodels_fit(ols(), df=15, n_groups=16)  # noqa: E731
    >>> rows, record, part = fitted_rows(run, fit="f", method="ols", conf_level=0.95,
    ...     groups={"layer": 0}, formula="log_norm ~ position", rows=lambda: layer0)
    >>> len(rows), record["n_groups"], record["layer"]
    (2, 16, 0)
    """
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = run()
    seconds = time.perf_counter() - start
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    names = {"fit": fit, "method": method}
    table = tidy_rows(fitted, conf_level=conf_level, **names, **groups)
    record = glance_row(fitted, seconds=seconds, warnings=messages, **names, **groups)
    part = GroupFit((fit, method), groups, formula, rows, fitted.estimate, fitted.result)
    return table, record, part


def fits_of(fitted: Sequence[tuple[pd.DataFrame, dict[str, object], GroupFit]]) -> Fits:
    """The groups' ``fitted_rows`` as one ``Fits`` (``build_table``: Holm across groups)."""
    table = build_table([rows for rows, _, _ in fitted], [record for _, record, _ in fitted])
    return Fits(table, [part for _, _, part in fitted])


def failed_fit(terms: Sequence[str], *, n_obs: int, n_groups: int, message: str) -> Estimate:
    """A least-squares or mixed fit that produced no estimates: NaN rows, ``converged=False``,
    the reason noted.

    >>> failed_fit(["Intercept"], n_obs=10, n_groups=2, message="failed").converged
    False
    """
    missing = pd.Series(np.nan, index=list(terms))
    stats = dict.fromkeys(["r2", "loglik", "aic", "bic", "sigma"], np.nan)
    stats |= {"boundary": False}
    stats |= dict.fromkeys(["var_intercept", "var_position", "cov_intercept_position"], np.nan)
    return Estimate(
        estimate=missing,
        std_error=missing,
        df=np.inf,
        n_obs=n_obs,
        n_groups=n_groups,
        converged=False,
        stats=stats,
        notes=[message],
    )


def _grouped(columns: list[str], groups: Sequence[str]) -> list[str]:
    """``columns`` with ``layer`` replaced by the grouping columns ``groups``."""
    at = columns.index("layer")
    return [*columns[:at], *groups, *columns[at + 1 :]]


def tidy_columns(groups: Sequence[str] = ("layer",)) -> list[str]:
    """The tidy table's columns for the grouping columns ``groups``.

    >>> tidy_columns(["site", "layer"])[:5]
    ['fit', 'method', 'site', 'layer', 'term']
    """
    return _grouped(TIDY_COLUMNS, groups)


def glance_columns(stats: dict[str, float | bool], groups: Sequence[str] = ("layer",)) -> list[str]:
    """The glance columns of a fit whose ``Estimate.stats`` are ``stats``: mixed, GMM or the
    common, and the leading-position diagnostic (``models.leading``) where the stats hold it.

    >>> glance_columns({"r2": 0.5}) == GLANCE_COLUMNS
    True
    """
    if "hansen_j" in stats:
        columns = _grouped(GMM_GLANCE_COLUMNS, groups)
    elif "lag1_slope_lr" in stats:
        columns = _grouped(LAG_GLANCE_COLUMNS, groups)
    elif "var_intercept" in stats:
        columns = _grouped(MIXED_GLANCE_COLUMNS, groups)
    else:
        columns = _grouped(GLANCE_COLUMNS, groups)
    leading = [column for column in LEADING_GLANCE_COLUMNS if column in stats]
    return [*columns[:-2], *leading, *columns[-2:]]


def tidy_rows(
    fitted: Estimate, /, *, fit: str, method: str, conf_level: float, **groups: object
) -> pd.DataFrame:
    """One row per term of ``fitted``: estimate, Wald statistic, p-value and interval.

    ``fit`` names the fit (``position_trend``, ``lag_effects``, a formula); ``groups`` are the
    group's values by grouping column, e.g. ``layer=5`` (or ``model="gpt2"``).

    Examples
    --------
    >>> from attnmag.models.ols import cluster_ols_result, statsmodels_fit
    >>> ols = cluster_ols_result(frame.query("layer == 0 and position >= 1"), "log_norm ~ position")
    >>> fitted = statsmodels_fit(ols, df=15, n_groups=16)
    >>> rows = tidy_rows(fitted, fit="position_trend", method="ols", conf_level=0.95, layer=0)
    >>> rows.columns.tolist()[:6]
    ['fit', 'method', 'layer', 'term', 'estimate', 'std_error']
    """
    estimate = fitted.estimate.to_numpy(np.float64)
    std_error = fitted.std_error.reindex(fitted.estimate.index).to_numpy(np.float64)
    # The distributions' functions called directly: a frozen scipy distribution takes far
    # longer to build than these few values take to compute.
    df = fitted.df.reindex(fitted.estimate.index) if isinstance(fitted.df, pd.Series) else fitted.df
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), estimate.shape)
    statistic = estimate / std_error
    if np.isinf(df).all():
        quantile, p_value = stats.norm.ppf(0.5 + conf_level / 2), 2 * stats.norm.sf(abs(statistic))
    else:
        quantile, p_value = (
            stats.t.ppf(0.5 + conf_level / 2, df),
            2 * stats.t.sf(abs(statistic), df),
        )
    return pd.DataFrame(
        {
            "fit": fit,
            "method": method,
            **groups,
            "term": list(fitted.estimate.index),
            "estimate": estimate,
            "std_error": std_error,
            "statistic": statistic,
            "p_value": p_value,
            "conf_low": estimate - quantile * std_error,
            "conf_high": estimate + quantile * std_error,
            "df": df,
            "n_obs": fitted.n_obs,
            "n_groups": fitted.n_groups,
            "converged": fitted.converged,
            "conf_level": float(conf_level),
        }
    )


def glance_row(
    fitted: Estimate,
    /,
    *,
    fit: str,
    method: str,
    seconds: float,
    warnings: Sequence[str],
    **groups: object,
) -> dict[str, object]:
    """The glance record of one group's fit, as plain Python values (JSON-safe for Parquet).

    ``fit`` names the fit; ``groups`` are the group's values by grouping column, e.g.
    ``layer=5``.

    Examples
    --------
    >>> from attnmag.models.ols import cluster_ols_result, statsmodels_fit
    >>> ols = cluster_ols_result(frame.query("layer == 0 and position >= 1"), "log_norm ~ position")
    >>> fitted = statsmodels_fit(ols, df=15, n_groups=16)
    >>> record = glance_row(
    ...     fitted, fit="position_trend", method="ols", seconds=0.1, warnings=[], layer=0
    ... )
    >>> record["layer"], record["n_groups"], record["converged"]
    (0, 16, True)
    """
    row: dict[str, object] = {
        "fit": fit,
        "method": method,
        **{column: _plain(value) for column, value in groups.items()},
        "n_obs": int(fitted.n_obs),
        "n_groups": int(fitted.n_groups),
        "converged": bool(fitted.converged),
    }
    for key, value in fitted.stats.items():
        row[key] = bool(value) if isinstance(value, bool | np.bool_) else float(value)
    row["seconds"] = float(seconds)
    row["warnings"] = "; ".join(dict.fromkeys([*warnings, *fitted.notes]))
    return {column: row[column] for column in glance_columns(fitted.stats, list(groups))}


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds (ints stay ints, strings strings)."""
    return value.item() if isinstance(value, np.generic) else value


def build_table(rows: Sequence[pd.DataFrame], glances: Sequence[dict[str, object]]) -> pd.DataFrame:
    """Stack per-group rows, add Holm-adjusted p-values per (fit, method, term) across groups.

    Rows whose p-value is missing (a failed fit) are left out of the adjustment.

    Examples
    --------
    >>> from attnmag.models.ols import cluster_ols_result, statsmodels_fit
    >>> results = [cluster_ols_result(frame.query(f"layer == {k}"), "log_norm ~ position")
    ...            for k in (0, 1)]
    >>> parts = [statsmodels_fit(result, df=15, n_groups=16) for result in results]
    >>> rows = [tidy_rows(part, fit="f", method="ols", conf_level=0.95, layer=k)
    ...         for k, part in enumerate(parts)]
    >>> table = build_table(rows, [])
    >>> len(table), "p_adjusted" in table.columns
    (4, True)
    """
    table = pd.concat(rows, ignore_index=True)
    table["p_adjusted"] = np.nan
    for _, index in table.groupby(["fit", "method", "term"], sort=False).groups.items():
        p_values = table.loc[index, "p_value"].dropna()
        if len(p_values):
            table.loc[p_values.index, "p_adjusted"] = holm(p_values.to_numpy())
    groups = [column for column in table.columns[2 : table.columns.get_loc("term")]]
    table = table[tidy_columns(groups)]
    table.attrs["glance"] = list(glances)
    return table


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values``, as ``statsmodels.stats.multitest.
    multipletests(..., method="holm")`` gives it (which runs a full garbage collection on
    every call, whose time grows with the objects alive in the process).

    >>> holm(np.array([0.01, 0.04, 0.03]))
    array([0.03, 0.06, 0.06])
    """
    order = np.argsort(p_values, kind="stable")
    steps = (len(p_values) - np.arange(len(p_values))) * p_values[order]
    adjusted = np.empty_like(steps)
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def glance(table: pd.DataFrame | Fits) -> pd.DataFrame:
    """One row per group and fit of a ``Fits`` or of its tidy table.

    Parameters
    ----------
    table : Fits or pandas.DataFrame
        What a fit returned (``fit``, ``position_trend``, ``lag_effects``, ``read_fits``), or
        its ``.tidy`` table (or a selection of its rows), whose per-fit details travel in
        ``table.attrs["glance"]`` (kept by ``to_parquet``/``read_parquet`` and by row
        selections, dropped by ``pd.concat``).

    Returns
    -------
    pandas.DataFrame
        The glance rows of the fits still present in ``table``.

    >>> trend = models.position_trend(frame, n_jobs=1)
    >>> glance(trend)[["layer", "r2", "sigma", "seconds"]].shape
    (12, 4)
    """
    records = table.glance if isinstance(table, Fits) else table.attrs.get("glance")
    if records is None or not len(records):
        raise AttnmagError(
            "these fits carry no glance rows (the fits' details); glance needs the Fits a fit "
            "returned, its tidy table or a selection of its rows, or read_fits of a folder "
            "with glance.csv"
        )
    if isinstance(table, Fits):
        return table.glance
    summary = pd.DataFrame.from_records(records)
    keys = ["fit", "method", *table.columns[2 : table.columns.get_loc("term")]]
    present = table[keys].drop_duplicates()
    return summary.merge(present, on=keys, how="inner").reset_index(drop=True)
