"""Arellano-Bond difference GMM for the lag model, vectorised over texts.

Holds ``GMM_LAGS`` (the collapsed instruments' lags) and ``GMM_LEVELS`` (the levels a row's
sums need), ``gmm_reduced`` (per-text level sums -> cross products), ``gmm_fit`` (-> an
``Estimate``, Hansen's J and AR(2) in its stats), its estimator ``arellano_bond`` and
``AR2_UNDEFINED``.
The model and its conventions (R's ``plm::pgmm``) are in docs/guide-models.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from attnmag.errors import AttnmagError
from attnmag.models.groups import symmetric
from attnmag.models.tidy import FIT_STATS, GMM_STATS, Estimate, failed_fit

__all__ = ["AR2_UNDEFINED", "GMM_LAGS", "GMM_LEVELS", "arellano_bond", "gmm_fit", "gmm_reduced"]

GMM_LAGS = (2, 6)
GMM_LEVELS = GMM_LAGS[1] + 2
TERMS = ("lag1", "lag2", "position")
AR2_UNDEFINED = (
    "AR(2) test not computed: its variance estimate is not positive in this sample "
    "(R's plm::mtest gives NaN there too)"
)


def _levels(*terms: tuple[int | None, float]) -> np.ndarray:
    """A row over ``[1, l0, ..., l7]``: ``(k, c)`` adds c times level k (``None``: the 1)."""
    row = np.zeros(GMM_LEVELS + 1)
    for k, c in terms:
        row[0 if k is None else k + 1] += c
    return row


def gmm_reduced(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Texts' level sums -> their Arellano-Bond cross products: the differenced equations'
    ``x``, ``y`` and instruments ``z`` are linear in a row's levels, so each text's ``Z'X``
    (``zx``), ``Z'y`` (``zy``) and ``sum v[t] v[t-2]'``, v = [x; y] (``back``) are maps of
    its sums; ``Z'Z`` (``zz``) and ``sum z[t] z[t-1]'`` (``adjacent``) are kept summed."""
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
    every = symmetric(sums, "all_{}_{}".format, GMM_LEVELS + 1)
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


def gmm_fit(sums: dict[str, np.ndarray]) -> Estimate:
    """The two-step fit of a group's ``gmm_reduced`` sums, Windmeijer errors (normal)."""
    counts = {"n_obs": int(sums["all_0_0"].sum()), "n_groups": int((sums["all_0_0"] > 0).sum())}
    try:
        estimate, covariance, tests = arellano_bond(sums)
    except np.linalg.LinAlgError as error:
        message = f"GMM failed: {type(error).__name__}: {error}"
        nothing = dict.fromkeys([*FIT_STATS, *GMM_STATS], np.nan)
        return failed_fit(TERMS, message=message, stats=nothing, **counts)
    std_error = np.sqrt(np.diag(covariance))
    return Estimate(
        estimate=pd.Series(estimate, index=TERMS),
        std_error=pd.Series(std_error, index=TERMS),
        df=np.inf,
        **counts,
        converged=bool(np.all(np.isfinite(estimate)) and np.all(np.isfinite(std_error))),
        stats=dict.fromkeys(FIT_STATS, np.nan) | tests,
        notes=[AR2_UNDEFINED] if np.isnan(tests["ar2_statistic"]) else [],
    )


def arellano_bond(sums: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Two-step difference GMM from ``gmm_reduced``'s sums: ``zz`` (sum_i Z_i'Z_i),
    ``adjacent`` (sum_t z_t z_{t-1}'), and per text ``zx`` (Z_i'X_i), ``zy`` (Z_i'y_i) and
    ``back`` (sum_t v_t v_{t-2}', v = [x; y]) -> the estimates, Windmeijer's covariance and
    the tests (Hansen's J, AR(2)), by name."""
    zz, adjacent = sums["zz"].sum(axis=0), sums["adjacent"].sum(axis=0)
    zx, zy, back = sums["zx"], sums["zy"], sums["back"]
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
    # Windmeijer: omega's derivative in regressor k is -(S_k + S_k'), S_k = sum_i Z_i'x_ik g_i'.
    s_k = np.einsum("gik,gj->kij", zx, g1)
    d = (b2 @ total_zx.T @ a2 @ (s_k + s_k.transpose(0, 2, 1)) @ a2 @ ze2).T
    covariance = b2 + d @ b2 + b2 @ d.T + d @ one_step_cov @ d.T
    residual = np.r_[-estimate, 1.0]  # e = residual @ [x; y]
    products = np.einsum("i,gij,j->g", residual, back, residual)  # per text e_i' l_i
    lx = back.sum(axis=0)[: len(estimate)] @ residual
    ar2 = _ar2(products, lx, g2, total_zx, a2, covariance)
    hansen_j, hansen_df = float(ze2 @ a2 @ ze2), zx.shape[1] - zx.shape[2]
    return (
        estimate,
        covariance,
        {
            "hansen_j": hansen_j,
            "hansen_df": float(hansen_df),
            "hansen_p": float(stats.chi2.sf(hansen_j, hansen_df)),
            "ar2_statistic": ar2,
            "ar2_p": float(2 * stats.norm.sf(abs(ar2))),
            "n_instruments": float(zx.shape[1]),
        },
    )


def _ar2(
    products: np.ndarray,
    lx: np.ndarray,
    g2: np.ndarray,
    zx: np.ndarray,
    a2: np.ndarray,
    covariance: np.ndarray,
) -> float:
    """Arellano and Bond's m2, as plm's ``mtest(order = 2, vcov = vcovHC)``; NaN where its
    variance is not positive (``products``: each text's e_i'l_i, l two equations back)."""
    zve = g2.T @ products
    variance = products @ products - 2 * lx @ covariance @ zx.T @ a2 @ zve + lx @ covariance @ lx
    if not variance > 0:
        return float("nan")
    return float(products.sum() / np.sqrt(variance))
