"""Arellano-Bond difference GMM for the lag model, vectorised over texts.

Holds:
- ``GMMResult``: two-step estimates, Windmeijer-corrected covariance, Hansen's J and the
  Arellano-Bond AR(2) test;
- ``arellano_bond``: the estimator on ``models.lags.GMMData``;
- ``fit_gmm``: one layer's outcome rows -> a ``Fit`` (terms ``lag1``, ``lag2``, ``position``).

The model is ``log_norm[t] = a1 lag1 + a2 lag2 + b position + u_text + e[t]``; first
differences remove ``u_text`` and turn the position term into a constant. The lagged
differences are correlated with ``Δe[t]``, so they are instrumented by the levels two to six
positions back, collapsed (one instrument per lag, not per position), with the constant as
its own instrument. The one-step weight is (sum_i Z_i' H Z_i)^-1, H the MA(1) structure of
differenced white noise (2 on the diagonal, -1 beside it); the two-step weight is
(sum_i Z_i' e_i e_i' Z_i)^-1 from the one-step residuals. Standard errors are Windmeijer's
(2005) finite-sample correction of the two-step covariance; Hansen's J uses the two-step
weight; AR(2) is Arellano and Bond's (1991) test of second-order correlation in the
differenced residuals, with the corrected covariance. These are the conventions of R's
``plm::pgmm(..., model = "twosteps", collapse = TRUE)`` with ``vcovHC``, ``sargan`` and
``mtest(order = 2, vcov = vcovHC)``, against which the tests check them.

Every per-text quantity is a cross product of that text's rows, so each is one sparse
(texts x rows) product: no loop over texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from attnmag.models.lags import GMMData, difference_equations, levels
from attnmag.models.tidy import Fit

__all__ = ["GMMResult", "AR2_UNDEFINED", "arellano_bond", "fit_gmm", "gmm_stats"]

#: The glance note of a fit whose AR(2) statistic could not be computed.
AR2_UNDEFINED = (
    "AR(2) test not computed: its variance estimate is not positive in this sample "
    "(R's plm::mtest gives NaN there too)"
)


@dataclass(frozen=True)
class GMMResult:
    """Two-step difference-GMM estimates and their tests."""

    estimate: np.ndarray
    covariance: np.ndarray  # Windmeijer-corrected
    one_step: np.ndarray
    hansen_j: float
    hansen_df: int
    ar2_statistic: float
    n_instruments: int

    @property
    def hansen_p(self) -> float:
        """Hansen's J p-value (chi-squared on ``hansen_df``)."""
        return float(stats.chi2.sf(self.hansen_j, self.hansen_df))

    @property
    def ar2_p(self) -> float:
        """The AR(2) test's two-sided normal p-value."""
        return float(2 * stats.norm.sf(abs(self.ar2_statistic)))


def arellano_bond(data: GMMData) -> GMMResult:
    """Two-step difference GMM with Windmeijer standard errors, Hansen's J and AR(2).

    Parameters
    ----------
    data : GMMData
        The differenced equations (``models.lags.difference_equations``).

    Returns
    -------
    GMMResult
        Estimates in the order of ``data.terms``, their corrected covariance, the tests.

    >>> result = arellano_bond(difference_equations(*levels(layer_rows, first=1)))  # doctest: +SKIP
    """
    y, x, z, groups = data.y, data.x, data.z, data.groups
    n = len(y)
    by_text = sp.csr_matrix((np.ones(n), (groups, np.arange(n))), shape=(data.n_groups, n))
    zx, zy = z.T @ x, z.T @ y
    # sum_i Z_i' H Z_i: consecutive rows of a text are consecutive positions.
    same = np.flatnonzero(groups[1:] == groups[:-1])
    adjacent = z[same + 1].T @ z[same]
    a1 = np.linalg.inv(2 * z.T @ z - adjacent - adjacent.T)
    b1 = np.linalg.inv(zx.T @ a1 @ zx)
    one_step = b1 @ zx.T @ a1 @ zy
    e1 = y - x @ one_step
    g1 = by_text @ (z * e1[:, None])  # per text Z_i' e_i, (texts, instruments)
    omega = g1.T @ g1
    a2 = np.linalg.inv(omega)
    b2 = np.linalg.inv(zx.T @ a2 @ zx)
    estimate = b2 @ zx.T @ a2 @ zy
    e2 = y - x @ estimate
    g2 = by_text @ (z * e2[:, None])
    ze2 = g2.sum(axis=0)
    covariance = _windmeijer(x, z, by_text, g1, ze2, zx, a1, a2, b1, b2, omega)
    ar2 = _ar2(e2, x, groups, by_text, g2, zx, a2, covariance)
    return GMMResult(
        estimate=estimate,
        covariance=covariance,
        one_step=one_step,
        hansen_j=float(ze2 @ a2 @ ze2),
        hansen_df=z.shape[1] - x.shape[1],
        ar2_statistic=ar2,
        n_instruments=z.shape[1],
    )


def _windmeijer(
    x: np.ndarray,
    z: np.ndarray,
    by_text: sp.csr_matrix,
    g1: np.ndarray,
    ze2: np.ndarray,
    zx: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    b1: np.ndarray,
    b2: np.ndarray,
    omega: np.ndarray,
) -> np.ndarray:
    """Windmeijer's (2005) corrected covariance of the two-step estimates.

    The two-step weight depends on the one-step estimates; D holds the derivative of the
    two-step estimates through it, column k being
    -B2 X'Z A2 (sum_i Z_i' dOmega_i/db_k Z_i) A2 Z'e2, with dOmega_i/db_k
    = -(x_ik e1_i' + e1_i x_ik').
    """
    one_step_cov = b1 @ zx.T @ a1 @ omega @ a1 @ zx @ b1
    columns = []
    for k in range(x.shape[1]):
        gx = by_text @ (z * x[:, [k]])  # per text Z_i' x_ik
        derivative = -(gx.T @ g1 + g1.T @ gx)
        columns.append(-b2 @ zx.T @ a2 @ derivative @ a2 @ ze2)
    d = np.column_stack(columns)
    return b2 + d @ b2 + b2 @ d.T + d @ one_step_cov @ d.T


def _ar2(
    e: np.ndarray,
    x: np.ndarray,
    groups: np.ndarray,
    by_text: sp.csr_matrix,
    g2: np.ndarray,
    zx: np.ndarray,
    a2: np.ndarray,
    covariance: np.ndarray,
) -> float:
    """Arellano and Bond's m2: second-order correlation of the differenced residuals.

    m2 = sum_i e_i' l_i / sqrt(sum_i (e_i' l_i)^2 - 2 l'X V X'Z A2 sum_i Z_i' e_i e_i' l_i
    + l'X V X' l), l the residuals two positions back within the text (0 for its first two
    equations) and V the estimates' corrected covariance in both places, as in plm's
    ``mtest(fit, order = 2, vcov = vcovHC)``. The variance estimate can come out negative in
    a finite sample (plm's ``sqrt`` then gives NaN with a warning); m2 is NaN there too.
    """
    lagged = np.zeros_like(e)
    same = np.flatnonzero(groups[2:] == groups[:-2])
    lagged[same + 2] = e[same]
    products = by_text @ (e * lagged)  # per text e_i' l_i
    lx = lagged @ x
    zve = g2.T @ products
    variance = products @ products - 2 * lx @ covariance @ zx.T @ a2 @ zve + lx @ covariance @ lx
    if not variance > 0:
        return float("nan")
    return float(products.sum() / np.sqrt(variance))


def fit_gmm(data: pd.DataFrame, *, first: int) -> Fit:
    """Arellano-Bond difference GMM of one layer's lag model.

    Parameters
    ----------
    data : pandas.DataFrame
        One layer's outcome rows (``sequence``, ``position``, ``log_norm``, ``lag1``,
        ``lag2``) at positions ``first + 2`` and beyond.
    first : int
        The first used position (1 when the first token is excluded, else 0).

    Returns
    -------
    Fit
        ``lag1``, ``lag2`` and ``position`` with Windmeijer standard errors (normal
        reference); ``n_obs``/``n_groups`` count the differenced equations and the texts
        that have one (texts with fewer than ``first + 4`` tokens have none); ``stats`` holds
        Hansen's J and the AR(2) test.

    >>> fit = fit_gmm(layer_rows, first=1)  # doctest: +SKIP
    """
    equations = difference_equations(*levels(data, first=first))
    result = arellano_bond(equations)
    std_error = np.sqrt(np.diag(result.covariance))
    terms = list(equations.terms)
    return Fit(
        estimate=pd.Series(result.estimate, index=terms),
        std_error=pd.Series(std_error, index=terms),
        df=np.inf,
        n_obs=len(equations.y),
        n_groups=equations.n_groups,
        converged=bool(np.all(np.isfinite(result.estimate)) and np.all(np.isfinite(std_error))),
        stats=gmm_stats(result),
        notes=[AR2_UNDEFINED] if np.isnan(result.ar2_statistic) else [],
    )


def gmm_stats(result: GMMResult | None) -> dict[str, float]:
    """The glance fields of a GMM fit (all NaN for a fit that failed, ``None``)."""
    keys = ["hansen_j", "hansen_df", "hansen_p", "ar2_statistic", "ar2_p", "n_instruments"]
    base = {"r2": np.nan, "loglik": np.nan, "aic": np.nan, "bic": np.nan, "sigma": np.nan}
    if result is None:
        return base | dict.fromkeys(keys, np.nan)
    return base | {key: float(getattr(result, key)) for key in keys}
