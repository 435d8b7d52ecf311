"""Tidy coefficient tables in the convention of R's broom, and their glance rows.

Holds ``Estimate`` (one group's fit), ``TIDY_COLUMNS`` and the glance columns (every fit's,
the mixed, ``initial_conditions``, GMM and leading-diagnostic ones), ``tidy_rows`` and
``glance_row`` (an ``Estimate`` -> its rows), ``fitted_rows`` and ``fits_of`` (groups' fits
-> a ``Fits``), ``failed_fit``, ``holm`` and ``glance``. The grouping columns stand in place
of ``layer``; intervals and p-values are Wald, on Student's t with ``df`` (normal: ``inf``).
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
    "FIT_STATS",
    "MIXED_STATS",
    "GMM_STATS",
    "Estimate",
    "failed_fit",
    "fit_stats",
    "fitted_rows",
    "fits_of",
    "holm",
    "tidy_rows",
    "glance_row",
    "glance",
]

TIDY_COLUMNS = (
    "fit method layer term estimate std_error statistic p_value conf_low conf_high df n_obs "
    "n_groups converged p_adjusted conf_level"
).split()
#: Every fit's glance statistics.
FIT_STATS = ["r2", "loglik", "aic", "bic", "sigma"]
#: The glance's last columns: a kind's stats (below) go before them.
TIMED = ["seconds", "warnings"]
GLANCE_COLUMNS = ["fit", "method", "layer", "n_obs", "n_groups", *FIT_STATS, "converged", *TIMED]
MIXED_STATS = "boundary var_intercept var_position cov_intercept_position".split()
MIXED_GLANCE_COLUMNS = [*GLANCE_COLUMNS[:-2], *MIXED_STATS, *TIMED]
#: A mixed fit's, with the likelihood-ratio test of a random slope on lag1.
LAG_GLANCE_COLUMNS = [*MIXED_GLANCE_COLUMNS[:-2], "lag1_slope_lr", "lag1_slope_p", *TIMED]
GMM_STATS = "hansen_j hansen_df hansen_p ar2_statistic ar2_p n_instruments".split()
GMM_GLANCE_COLUMNS = [*GLANCE_COLUMNS[:-2], *GMM_STATS, *TIMED]
#: Added before ``seconds`` where the stats hold them (``models.leading``).
LEADING_GLANCE_COLUMNS = [
    *(f"leading_t{k}" for k in range(4)),
    "leading_flagged",
    "suggested_first_position",
]


@dataclass
class Estimate:
    """One group's fit: estimates and errors by term, df (``inf``: normal; or by term), its
    glance ``stats`` and ``notes``, and ``result``, which builds statsmodels' result.

    >>> fitted = Estimate(pd.Series({"Intercept": 1.2}), pd.Series({"Intercept": 0.1}),
    ...                   df=15, n_obs=400, n_groups=16, converged=True, stats={})
    >>> tidy_rows(fitted, conf_level=0.95, fit="f", method="ols", layer=0)["statistic"].round(9)
    0    12.0
    Name: statistic, dtype: float64
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


def fit_stats(
    loglik: float, n_params: int, n_obs: int, scale: float, r2: float = np.nan
) -> dict[str, float]:
    """``FIT_STATS`` of a fit of ``n_params`` parameters, its residual variance ``scale``."""
    aic, bic = -2 * loglik + 2 * n_params, -2 * loglik + np.log(n_obs) * n_params
    return dict(zip(FIT_STATS, map(float, [r2, loglik, aic, bic, np.sqrt(scale)]), strict=True))


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
    """``run()``, one group's fit, timed, its warnings kept -> its rows, glance and ``GroupFit``.

    >>> fitted = Estimate(pd.Series({"Intercept": 1.2}), pd.Series({"Intercept": 0.1}), df=15,
    ...                   n_obs=400, n_groups=16, converged=True, stats=dict.fromkeys(FIT_STATS, 1))
    >>> rows, record, part = fitted_rows(lambda: fitted, fit="f", method="ols", conf_level=0.95,
    ...     groups={"layer": 0}, formula="log_norm ~ 1", rows=lambda: frame)
    >>> len(rows), record["n_groups"], record["layer"]
    (1, 16, 0)
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
    """The groups' ``fitted_rows`` as one ``Fits``, with Holm's adjustment across groups."""
    table = pd.concat([rows for rows, _, _ in fitted], ignore_index=True)
    by_term = table.groupby(["fit", "method", "term"], sort=False)["p_value"]
    adjusted = by_term.transform(lambda p_values: holm(p_values.to_numpy()))
    table.insert(table.columns.get_loc("conf_level"), "p_adjusted", adjusted)  # TIDY_COLUMNS'
    table.attrs["glance"] = [record for _, record, _ in fitted]
    return Fits(table, [part for _, _, part in fitted])


def failed_fit(
    terms: Sequence[str],
    *,
    n_obs: int,
    n_groups: int,
    message: str,
    stats: dict[str, float | bool] | None = None,
) -> Estimate:
    """A fit without estimates: NaN rows, not converged, the reason noted (mixed stats NaN).

    >>> failed_fit(["Intercept"], n_obs=10, n_groups=2, message="failed").converged
    False
    """
    if stats is None:
        stats = dict.fromkeys([*FIT_STATS, *MIXED_STATS], np.nan) | {"boundary": False}
    missing = pd.Series(np.nan, index=list(terms))
    return Estimate(missing, missing, np.inf, n_obs, n_groups, False, stats, [message])


def tidy_rows(
    fitted: Estimate, /, *, fit: str, method: str, conf_level: float, **groups: object
) -> pd.DataFrame:
    """One row per term of ``fitted``: estimate, Wald statistic, p-value and interval.

    >>> fitted = Estimate(pd.Series({"Intercept": 1.2}), pd.Series({"Intercept": 0.1}),
    ...                   df=15, n_obs=400, n_groups=16, converged=True, stats={})
    >>> rows = tidy_rows(fitted, fit="position_trend", method="ols", conf_level=0.95, layer=0)
    >>> rows.columns.tolist()[:6]
    ['fit', 'method', 'layer', 'term', 'estimate', 'std_error']
    """
    estimate = fitted.estimate.to_numpy(np.float64)
    std_error = fitted.std_error.reindex(fitted.estimate.index).to_numpy(np.float64)
    # scipy's functions, not a frozen distribution (far slower to build); t(inf) is normal.
    df = fitted.df.reindex(fitted.estimate.index) if isinstance(fitted.df, pd.Series) else fitted.df
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), estimate.shape)
    statistic = estimate / std_error
    quantile, p_value = stats.t.ppf(0.5 + conf_level / 2, df), 2 * stats.t.sf(abs(statistic), df)
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
    """The glance record of one group's fit, as Python values: ``GLANCE_COLUMNS`` with the
    fit's other stats (``MIXED_STATS``, ``GMM_STATS``, ...) before ``seconds``.

    >>> fitted = Estimate(pd.Series({"Intercept": 1.2}), pd.Series({"Intercept": 0.1}), df=15,
    ...                   n_obs=400, n_groups=16, converged=True, stats=dict.fromkeys(FIT_STATS, 1))
    >>> record = glance_row(
    ...     fitted, fit="position_trend", method="ols", seconds=0.1, warnings=[], layer=0
    ... )
    >>> record["layer"], record["n_groups"], record["converged"]
    (0, 16, True)
    """
    stats = {
        key: bool(value) if isinstance(value, bool | np.bool_) else float(value)
        for key, value in fitted.stats.items()
    }
    common = {key: stats.pop(key) for key in FIT_STATS}
    return {
        "fit": fit,
        "method": method,
        **groups,  # Python values (``groups.key_of``)
        "n_obs": int(fitted.n_obs),
        "n_groups": int(fitted.n_groups),
        **common,
        "converged": bool(fitted.converged),
        **stats,  # in the estimator's order: its kind's (``MIXED_STATS``, ...), the leading's
        "seconds": float(seconds),
        "warnings": "; ".join(dict.fromkeys([*warnings, *fitted.notes])),
    }


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of the p-values that are not NaN, as statsmodels'
    ``multipletests(method="holm")`` gives it (the tests compare them); written here because
    ``multipletests`` runs a full garbage collection on every call, once per term.

    >>> holm(np.array([0.01, 0.04, np.nan, 0.03]))
    array([0.03, 0.06,  nan, 0.06])
    """
    order = np.argsort(p_values, kind="stable")  # NaN last
    steps = (np.count_nonzero(~np.isnan(p_values)) - np.arange(len(p_values))) * p_values[order]
    adjusted = np.empty_like(steps)
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def glance(table: pd.DataFrame | Fits) -> pd.DataFrame:
    """One row per group and fit of a ``Fits``, its tidy table or a selection of its rows.

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
    keys = ["fit", "method", *table.columns[2 : table.columns.get_loc("term")]]  # the groups
    present = table[keys].drop_duplicates()
    summary = pd.DataFrame.from_records(records)
    return summary.merge(present, on=keys, how="inner").reset_index(drop=True)
