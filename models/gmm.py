"""Arellano-Bond difference GMM for the lag model, vectorised over texts.

Holds:
- ``GMMResult``: two-step estimates, Windmeijer-corrected covariance, Hansen's J and the
  Arellano-Bond AR(2) test;
- ``GMM_LAGS``: the collapsed instruments' lags of the level; ``GMM_LEVELS``: the levels
  per row the sums need (``l0``, its own, to ``l7``);
- ``gmm_reduced``: a group's per-text level sums (``models.named``'s SQL) -> the per-text
  cross products the estimator needs;
- ``gmm_fit``: those -> an ``Estimate`` (terms ``lag1``, ``lag2``, ``position``); ``arellano_bond``,
  its estimator; ``gmm_stats``, its glance fields.

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

Every per-text quantity is a cross product of that text's rows; the differenced equations'
``x``, ``y`` and instruments ``z`` are linear maps of the row's levels, so each text's
``Z'X``, ``Z'y`` and the rest are maps of its sums of the levels' products: no loop over
texts, and no rows in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from attnmag.errors import AttnmagError
from attnmag.models.tidy import Estimate

__all__ = [
    "AR2_UNDEFINED",
    "GMMResult",
    "GMM_LAGS",
    "GMM_LEVELS",
    "arellano_bond",
    "gmm_fit",
    "gmm_reduced",
    "gmm_stats",
]

#: The collapsed instruments' lags of the level (lags 2 to 6).
GMM_LAGS = (2, 6)
#: The levels the Arellano-Bond sums need: ``l0`` to one lag beyond the last instrument's.
GMM_LEVELS = GMM_LAGS[1] + 2

#: The glance note of a fit whose AR(2) statistic could not be computed.
AR2_UNDEFINED = (
    "AR(2) test not computed: its variance estimate is not positive in this sample "
    "(R's plm::mtest gives NaN there too)"
)


@dataclass(frozen=True)
class GMMResult:
    """Two-step difference-GMM estimates and their tests.

    Examples
    --------
    >>> result = GMMResult(
    ...     estimate=np.array([0.3, 0.1, -0.01]), covariance=np.diag([4e-4, 3e-4, 1e-6]),
    ...     one_step=np.array([0.29, 0.11, -0.01]), hansen_j=3.2, hansen_df=8,
    ...     ar2_statistic=-0.5, n_instruments=11)
    >>> round(result.hansen_p, 3), round(result.ar2_p, 3)
    (0.921, 0.617)
    """

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


def _levels(*terms: tuple[int | None, float]) -> np.ndarray:
    """A row over ``[1, l0, ..., l7]``: ``(k, c)`` adds c times level k (``None``: the 1)."""
    row = np.zeros(GMM_LEVELS + 1)
    for k, c in terms:
        row[0 if k is None else k + 1] += c
    return row


def _level_sums(sums: dict[str, np.ndarray]) -> np.ndarray:
    """Per text, the sums ``all_i_j`` as symmetric matrices."""
    size = GMM_LEVELS + 1
    out = np.empty((len(sums["n"]), size, size))
    for i in range(size):
        for j in range(i, size):
            out[:, i, j] = out[:, j, i] = sums[f"all_{i}_{j}"]
    return out


def gmm_reduced(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Texts' level sums (``_gmm_query``) -> their Arellano-Bond cross products.

    The differenced equations' ``x = [Δy[t-1], Δy[t-2], 1]``, ``y = Δy[t]`` and instruments
    ``z = [y[t-2..t-6], 1]`` are linear in the levels, so each text's ``Z'X`` (``zx``),
    ``Z'y`` (``zy``), ``sum v[t] v[t-2]'`` of ``v = [x; y]`` two equations apart (``back``),
    ``Z'Z`` and ``sum z[t] z[t-1]'`` over consecutive equations are maps of its sums; the last
    two enter the estimator only summed, so they are kept summed (``zz``, ``adjacent``: one
    row for these texts). Texts without an equation have zero arrays, which add nothing.
    ``n``, ``last_position``, ``n_bad`` and ``all_0_0`` (its equations) are kept per text.
    """
    if sums["n_off"].any():
        sequence = sums["sequence"][np.argmax(sums["n_off"] > 0)]
        raise AttnmagError(
            f"sequence {sequence}'s lag1 and lag2 are not its log_norm one and two positions "
            "earlier: the lag models need each text's tokens consecutive from its first used "
            "position"
        )
    low, high = GMM_LAGS
    one = (None, 1.0)
    x = np.array([_levels((1, 1), (2, -1)), _levels((2, 1), (3, -1)), _levels(one)])
    y = _levels((0, 1), (1, -1))
    z = np.array([*(_levels((k, 1)) for k in range(low, high + 1)), _levels(one)])
    z_previous = np.array([*(_levels((k + 1, 1)) for k in range(low, high + 1)), _levels(one)])
    v = np.vstack([x, y])
    v_back = np.array(
        [_levels((3, 1), (4, -1)), _levels((4, 1), (5, -1)), _levels(one), _levels((2, 1), (3, -1))]
    )
    every = _level_sums(sums)
    at3, at4 = (
        np.column_stack([sums[f"{at}_{i}"] for i in range(GMM_LEVELS + 1)]) for at in ("at3", "at4")
    )
    following = every - at3[:, :, None] * at3[:, None, :]  # equations after the first
    after = following - at4[:, :, None] * at4[:, None, :]  # equations after the second
    zm = z @ every
    # Copies: a view would keep the whole record batch it came from alive.
    kept = {name: sums[name].copy() for name in ("n", "last_position", "n_bad", "all_0_0")}
    return kept | {
        "zx": zm @ x.T,
        "zy": zm @ y,
        "back": v @ after @ v_back.T,
        "zz": (z @ every.sum(axis=0) @ z.T)[None],
        "adjacent": (z @ following.sum(axis=0) @ z_previous.T)[None],
    }


def gmm_fit(sums: dict[str, np.ndarray], *_: object) -> Estimate:
    """The two-step fit from a group's reduced sums (``gmm_reduced``): ``lag1``, ``lag2``
    and ``position`` with Windmeijer standard errors (normal reference); ``n_obs`` and
    ``n_groups`` count the differenced equations and the texts that have one; other
    arguments (a named fit's per-position sums and rows) are not needed."""
    texts = sums["all_0_0"] > 0  # texts with an equation
    try:
        result = arellano_bond(
            zz=sums["zz"].sum(axis=0),
            zx=sums["zx"],
            zy=sums["zy"],
            adjacent=sums["adjacent"].sum(axis=0),
            back=sums["back"],
        )
    except np.linalg.LinAlgError as error:
        return _failed_gmm(sums, texts, f"GMM failed: {type(error).__name__}: {error}")
    std_error = np.sqrt(np.diag(result.covariance))
    terms = ["lag1", "lag2", "position"]
    return Estimate(
        estimate=pd.Series(result.estimate, index=terms),
        std_error=pd.Series(std_error, index=terms),
        df=np.inf,
        n_obs=int(sums["all_0_0"].sum()),
        n_groups=int(texts.sum()),
        converged=bool(np.all(np.isfinite(result.estimate)) and np.all(np.isfinite(std_error))),
        stats=gmm_stats(result),
        notes=[AR2_UNDEFINED] if np.isnan(result.ar2_statistic) else [],
    )


def _failed_gmm(sums: dict[str, np.ndarray], texts: np.ndarray, message: str) -> Estimate:
    """A GMM fit whose linear algebra failed: NaN estimates, ``converged=False``."""
    missing = pd.Series(np.nan, index=["lag1", "lag2", "position"])
    return Estimate(
        estimate=missing,
        std_error=missing,
        df=np.inf,
        n_obs=int(sums["all_0_0"].sum()),
        n_groups=int(texts.sum()),
        converged=False,
        stats=gmm_stats(None),
        notes=[message],
    )


def arellano_bond(
    *, zz: np.ndarray, zx: np.ndarray, zy: np.ndarray, adjacent: np.ndarray, back: np.ndarray
) -> GMMResult:
    """Two-step difference GMM from sums: ``zz`` sum_i Z_i'Z_i, ``adjacent``
    sum_t z_t z_{t-1}' over consecutive equations of a text; per text ``zx`` Z_i'X_i,
    ``zy`` Z_i'y_i and ``back`` sum_t v_t v_{t-2}' with v = [x; y] (equations two apart):
    the two-step estimates, Windmeijer's covariance, Hansen's J and AR(2) (module
    docstring)."""
    total_zx, total_zy = zx.sum(axis=0), zy.sum(axis=0)
    a1 = np.linalg.inv(2 * zz - adjacent - adjacent.T)
    b1 = np.linalg.inv(total_zx.T @ a1 @ total_zx)
    one_step = b1 @ total_zx.T @ a1 @ total_zy
    g1 = zy - zx @ one_step  # per text Z_i' e_i
    omega = g1.T @ g1
    a2 = np.linalg.inv(omega)
    b2 = np.linalg.inv(total_zx.T @ a2 @ total_zx)
    estimate = b2 @ total_zx.T @ a2 @ total_zy
    g2 = zy - zx @ estimate
    ze2 = g2.sum(axis=0)
    one_step_cov = b1 @ total_zx.T @ a1 @ omega @ a1 @ total_zx @ b1
    columns = []
    for k in range(zx.shape[2]):
        gx = zx[:, :, k]
        derivative = -(gx.T @ g1 + g1.T @ gx)
        columns.append(-b2 @ total_zx.T @ a2 @ derivative @ a2 @ ze2)
    d = np.column_stack(columns)
    covariance = b2 + d @ b2 + b2 @ d.T + d @ one_step_cov @ d.T
    residual = np.r_[-estimate, 1.0]  # e = residual @ [x; y]
    products = np.einsum("i,gij,j->g", residual, back, residual)  # per text e_i' l_i
    lx = back.sum(axis=0)[: len(estimate)] @ residual
    ar2 = _ar2(products, lx, g2, total_zx, a2, covariance)
    return GMMResult(
        estimate=estimate,
        covariance=covariance,
        one_step=one_step,
        hansen_j=float(ze2 @ a2 @ ze2),
        hansen_df=zx.shape[1] - zx.shape[2],
        ar2_statistic=ar2,
        n_instruments=zx.shape[1],
    )


def _ar2(
    products: np.ndarray,
    lx: np.ndarray,
    g2: np.ndarray,
    zx: np.ndarray,
    a2: np.ndarray,
    covariance: np.ndarray,
) -> float:
    """Arellano and Bond's m2: second-order correlation of the differenced residuals.

    m2 = sum_i e_i' l_i / sqrt(sum_i (e_i' l_i)^2 - 2 l'X V X'Z A2 sum_i Z_i' e_i e_i' l_i
    + l'X V X' l), l the residuals two positions back within the text (0 for its first two
    equations) and V the estimates' corrected covariance in both places, as in plm's
    ``mtest(fit, order = 2, vcov = vcovHC)``; ``products`` holds each text's e_i' l_i,
    ``lx`` is l'X, ``g2`` each text's Z_i' e_i. The variance estimate can come out negative
    in a finite sample (plm's ``sqrt`` then gives NaN with a warning); m2 is NaN there too.
    """
    zve = g2.T @ products
    variance = products @ products - 2 * lx @ covariance @ zx.T @ a2 @ zve + lx @ covariance @ lx
    if not variance > 0:
        return float("nan")
    return float(products.sum() / np.sqrt(variance))


def gmm_stats(result: GMMResult | None) -> dict[str, float]:
    """The glance fields of a GMM fit (all NaN for a fit that failed, ``None``).

    Examples
    --------
    >>> stats = gmm_stats(None)  # a fit that failed
    >>> stats["hansen_j"], stats["ar2_p"], all(np.isnan(v) for v in stats.values())
    (nan, nan, True)
    """
    keys = ["hansen_j", "hansen_df", "hansen_p", "ar2_statistic", "ar2_p", "n_instruments"]
    base = {"r2": np.nan, "loglik": np.nan, "aic": np.nan, "bic": np.nan, "sigma": np.nan}
    if result is None:
        return base | dict.fromkeys(keys, np.nan)
    return base | {key: float(getattr(result, key)) for key in keys}
