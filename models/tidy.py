"""Tidy coefficient tables in the convention of R's broom, and their glance rows.

Holds:
- ``Fit``: what one group's fit returns (estimates, standard errors, reference df, fit stats,
  and the statsmodels result where one is kept);
- ``term_names``: statsmodels' parameter names -> attnmag's (``Intercept`` -> ``intercept``);
- ``TIDY_COLUMNS``, ``GLANCE_COLUMNS``, ``MIXED_GLANCE_COLUMNS``, ``LAG_GLANCE_COLUMNS``,
  ``GMM_GLANCE_COLUMNS``: the tables' columns in order (glance: every fit's, a mixed fit's,
  ``initial_conditions``', an Arellano-Bond fit's);
- ``tidy_columns``: the table's columns for given grouping columns;
- ``glance_columns``: a fit's stats -> the glance columns its kind of fit has;
- ``tidy_rows`` / ``glance_row``: one group's ``Fit`` -> its table rows / its glance record;
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
from attnmag.models.results import Fits

__all__ = [
    "TIDY_COLUMNS",
    "GLANCE_COLUMNS",
    "MIXED_GLANCE_COLUMNS",
    "LAG_GLANCE_COLUMNS",
    "GMM_GLANCE_COLUMNS",
    "Fit",
    "failed_fit",
    "fitted_rows",
    "holm",
    "term_names",
    "tidy_columns",
    "glance_columns",
    "tidy_rows",
    "glance_row",
    "build_table",
    "glance",
]

TIDY_COLUMNS = [
    "fit",
    "method",
    "layer",
    "term",
    "estimate",
    "std_error",
    "statistic",
    "p_value",
    "conf_low",
    "conf_high",
    "df",
    "n_obs",
    "n_groups",
    "converged",
    "p_adjusted",
    "conf_level",
]
GLANCE_COLUMNS = [
    "fit",
    "method",
    "layer",
    "n_obs",
    "n_groups",
    "r2",
    "loglik",
    "aic",
    "bic",
    "sigma",
    "converged",
    "seconds",
    "warnings",
]
MIXED_GLANCE_COLUMNS = [
    *GLANCE_COLUMNS[:-2],
    "boundary",
    "var_intercept",
    "var_position",
    "cov_intercept_position",
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
GMM_GLANCE_COLUMNS = [
    *GLANCE_COLUMNS[:-2],
    "hansen_j",
    "hansen_df",
    "hansen_p",
    "ar2_statistic",
    "ar2_p",
    "n_instruments",
    *GLANCE_COLUMNS[-2:],
]


@dataclass
class Fit:
    """One group's fit: estimates and standard errors by term, and the fit's summary stats.

    ``df`` is the reference distribution's degrees of freedom (``inf`` for the normal);
    ``stats`` holds the glance fields the method defines (r2, loglik, aic, bic, sigma; for
    mixed models boundary and the variance components; for Arellano-Bond GMM Hansen's J and
    the AR(2) test, ``GMM_GLANCE_COLUMNS``); ``notes`` are messages about
    the fit that are not Python warnings; ``result`` is the statsmodels results object the
    estimates are, or the function that builds it on first use (OLS, and mixed fits that
    statsmodels confirmed), where the fit has one (else ``None``).
    """

    estimate: pd.Series
    std_error: pd.Series
    df: float
    n_obs: int
    n_groups: int
    converged: bool
    stats: dict[str, float | bool]
    notes: list[str] = field(default_factory=list)
    result: object | None = None


def fitted_rows(
    run: Callable[[], Fit],
    *,
    fit: str,
    method: str,
    conf_level: float,
    groups: dict[str, object],
) -> tuple[pd.DataFrame, dict[str, object], Fit]:
    """``run()``, one group's fit, timed with its warnings captured -> its table rows,
    glance record and ``Fit``.

    >>> rows, record, result = fitted_rows(run, fit="f", method="ols", conf_level=0.95,
    ...                                    groups={"layer": 0})  # doctest: +SKIP
    """
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = run()
    seconds = time.perf_counter() - start
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    names = {"fit": fit, "method": method}
    rows = tidy_rows(fitted, conf_level=conf_level, **names, **groups)
    record = glance_row(fitted, seconds=seconds, warnings=messages, **names, **groups)
    return rows, record, fitted


def failed_fit(terms: Sequence[str], *, n_obs: int, n_groups: int, message: str) -> Fit:
    """A least-squares or mixed fit that produced no estimates: NaN rows, ``converged=False``,
    the reason noted.

    >>> failed_fit(["intercept"], n_obs=10, n_groups=2, message="failed").converged
    False
    """
    missing = pd.Series(np.nan, index=list(terms))
    stats = dict.fromkeys(["r2", "loglik", "aic", "bic", "sigma"], np.nan)
    stats |= {"boundary": False}
    stats |= dict.fromkeys(["var_intercept", "var_position", "cov_intercept_position"], np.nan)
    return Fit(
        estimate=missing,
        std_error=missing,
        df=np.inf,
        n_obs=n_obs,
        n_groups=n_groups,
        converged=False,
        stats=stats,
        notes=[message],
    )


def term_names(names: Sequence[str]) -> list[str]:
    """statsmodels' parameter names with its ``Intercept`` renamed ``intercept``."""
    return ["intercept" if name == "Intercept" else name for name in names]


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
    """The glance columns of a fit whose ``Fit.stats`` are ``stats``: mixed, GMM or the common.

    >>> glance_columns({"r2": 0.5}) == GLANCE_COLUMNS
    True
    """
    if "hansen_j" in stats:
        return _grouped(GMM_GLANCE_COLUMNS, groups)
    if "lag1_slope_lr" in stats:
        return _grouped(LAG_GLANCE_COLUMNS, groups)
    if "var_intercept" in stats:
        return _grouped(MIXED_GLANCE_COLUMNS, groups)
    return _grouped(GLANCE_COLUMNS, groups)


def tidy_rows(
    fitted: Fit, /, *, fit: str, method: str, conf_level: float, **groups: object
) -> pd.DataFrame:
    """One row per term of ``fitted``: estimate, Wald statistic, p-value and interval.

    ``fit`` names the fit (``position_trend``, ``lag_effects``, a formula); ``groups`` are the
    group's values by grouping column, e.g. ``layer=5`` (or ``model="gpt2"``).
    """
    estimate = fitted.estimate.to_numpy(np.float64)
    std_error = fitted.std_error.reindex(fitted.estimate.index).to_numpy(np.float64)
    # The distributions' functions called directly: a frozen scipy distribution takes far
    # longer to build than these few values take to compute.
    df = float(fitted.df)
    statistic = estimate / std_error
    if np.isinf(df):
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
    fitted: Fit,
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
    """One row per group and fit of a table from ``position_trend`` or ``lag_effects``.

    Parameters
    ----------
    table : pandas.DataFrame or Fits
        A table from ``position_trend`` or ``lag_effects`` (or a selection of its rows),
        whose per-fit details travel in ``table.attrs["glance"]`` (kept by
        ``to_parquet``/``read_parquet`` and by row selections, dropped by ``pd.concat``);
        or the ``Fits`` that ``fit`` returns, which keeps them itself.

    Returns
    -------
    pandas.DataFrame
        The glance rows of the fits still present in ``table``.

    >>> trend = position_trend(frame)  # doctest: +SKIP
    >>> glance(trend)[["layer", "r2", "sigma", "seconds"]]  # doctest: +SKIP
    """
    if isinstance(table, Fits):
        return table.glance
    records = table.attrs.get("glance")
    if not records:
        raise AttnmagError(
            "this table carries no fit details (table.attrs['glance']); glance needs a table "
            "returned by position_trend or lag_effects, or a selection of its rows"
        )
    summary = pd.DataFrame.from_records(records)
    keys = ["fit", "method", *table.columns[2 : table.columns.get_loc("term")]]
    present = table[keys].drop_duplicates()
    return summary.merge(present, on=keys, how="inner").reset_index(drop=True)
