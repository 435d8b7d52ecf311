"""Least-squares fits per layer with statsmodels (OLS, and its formula API for ``ols``).

Holds:
- ``fit_aggregate``: the notebook's fit, log of the mean norm at each position on position,
  one point per position, classical OLS standard errors (t on n - 2 df);
- ``fit_cluster_ols``: token-level OLS with CR1 cluster-robust standard errors by sequence,
  t on G - 1 df (G sequences); the same covariance as R's
  ``sandwich::vcovCL(fit, cluster = ~sequence, type = "HC1")``;
- ``cluster_ols_result``: statsmodels' result of that fit (``summary()``, residuals).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.regression.linear_model import RegressionResults

from attnmag.models.tidy import Fit, term_names

__all__ = ["cluster_ols_result", "fit_aggregate", "fit_cluster_ols"]


def _ols_stats(result: RegressionResults) -> dict[str, float]:
    """The glance fields of a statsmodels OLS result."""
    return {
        "r2": float(result.rsquared),
        "loglik": float(result.llf),
        "aic": float(result.aic),
        "bic": float(result.bic),
        "sigma": float(np.sqrt(result.scale)),
    }


def _fit(result: RegressionResults, *, df: float, n_groups: int) -> Fit:
    """A statsmodels OLS result -> a ``Fit`` with inference on ``df`` degrees of freedom."""
    names = term_names(result.model.exog_names)
    return Fit(
        estimate=pd.Series(np.asarray(result.params), index=names),
        std_error=pd.Series(np.asarray(result.bse), index=names),
        df=df,
        n_obs=int(result.nobs),
        n_groups=n_groups,
        converged=True,
        stats=_ols_stats(result),
    )


def fit_aggregate(data: pd.DataFrame) -> Fit:
    """``log(mean norm at t) ~ t``, one point per position of ``data`` (the notebook's fit).

    It estimates the line through the log of the expected mean norm at each position, with
    the classical errors sigma^2 (X'X)^-1 of OLS on the position means (t on n - 2 df). Those
    treat the means as independent points: right when tokens are independent and every
    position has the same texts, too narrow when texts differ in level (the means then share
    the texts' levels).

    Parameters
    ----------
    data : pandas.DataFrame
        One layer's rows, with ``sequence``, ``position`` and ``norm``.

    Returns
    -------
    Fit
        ``n_obs`` is the number of positions, ``n_groups`` the sequences the means come from.

    >>> fit = fit_aggregate(layer_rows)  # doctest: +SKIP
    >>> fit.std_error["position"]  # doctest: +SKIP
    """
    means = data["norm"].astype(np.float64).groupby(data["position"]).mean()
    position = means.index.to_numpy(np.float64)
    # The design written directly: a formula's parsing would take most of this fit's time.
    design = pd.DataFrame({"Intercept": np.ones_like(position), "position": position})
    result = sm.OLS(np.log(means.to_numpy()), design).fit()
    return _fit(result, df=float(result.df_resid), n_groups=int(data["sequence"].nunique()))


def fit_cluster_ols(data: pd.DataFrame, formula: str) -> Fit:
    """Token-level OLS of ``formula`` with CR1 standard errors clustered by ``sequence``.

    CR1 scales the sandwich (X'X)^-1 (sum_g X_g' e_g e_g' X_g) (X'X)^-1 by
    G/(G-1) * (N-1)/(N-K); inference is t on G - 1 df. The errors hold whatever the
    dependence within a sequence, provided sequences are independent.

    Parameters
    ----------
    data : pandas.DataFrame
        One layer's rows, with ``sequence`` and the formula's columns.
    formula : str
        A statsmodels formula, e.g. ``"log_norm ~ position"``.

    Returns
    -------
    Fit
        ``n_obs`` rows, ``n_groups`` sequences, ``df`` = G - 1.

    >>> fit = fit_cluster_ols(layer_rows, "log_norm ~ lag1 + lag2")  # doctest: +SKIP
    """
    result = cluster_ols_result(data, formula)
    n_groups = int(data["sequence"].nunique())
    return _fit(result, df=float(n_groups - 1), n_groups=n_groups)


def cluster_ols_result(data: pd.DataFrame, formula: str) -> RegressionResults:
    """statsmodels' result of ``fit_cluster_ols``'s fit: OLS with CR1 errors by ``sequence``
    and t on G - 1 df, for its ``summary()``, residuals and the like.

    Parameters
    ----------
    data : pandas.DataFrame
        One group's rows, with ``sequence`` and the formula's columns.
    formula : str
        A statsmodels formula.

    Returns
    -------
    statsmodels.regression.linear_model.RegressionResults
        The fitted result.
    """
    groups = pd.factorize(data["sequence"])[0]
    return smf.ols(formula, data).fit(
        cov_type="cluster",
        cov_kwds={"groups": groups, "use_correction": True, "df_correction": True},
        use_t=True,
    )
