"""CR2, the Bell-McCaffrey bias-reduced cluster-robust covariance, with its Satterthwaite
degrees of freedom, from per-cluster cross products (docs/guide-models.md, "Small samples").

Holds ``cr2_covariance`` (R's ``clubSandwich::vcovCR(fit, type = "CR2")`` and
``coef_test(..., test = "Satterthwaite")`` for ``lm`` and ``lmer`` fits) and ``CR2_BELOW``
(below it many texts, the trend fits' default). Every matrix maps the span of a cluster's
columns ``[X_g | Z_g]`` into itself, so it is computed in an orthonormal basis of that span,
from the cluster's Gram matrix: no row of the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from attnmag.models.mixed import GroupedDesign

__all__ = ["CR2_BELOW", "cr2_covariance"]

#: Below this many texts the trend fits (``position_trend``'s ``ols`` and ``mixed``) use CR2
#: by default: from the coverage simulation of ``benchmarks/cr2.py``.
CR2_BELOW = 50
#: Eigenvalues of a cluster's Gram matrix below this times its largest span no dimension.
RANK_TOL = 1e-10
#: Eigenvalues below this are taken as zero in the matrix powers (clubSandwich's 1e-12).
POWER_TOL = 1e-12


def _power(matrices: np.ndarray, exponent: float) -> np.ndarray:
    """Each symmetric matrix of a stack to ``exponent``; eigenvalues under ``POWER_TOL`` -> 0."""
    values, vectors = np.linalg.eigh(matrices)
    positive = values > POWER_TOL
    powered = np.where(positive, np.where(positive, values, 1.0) ** exponent, 0.0)
    return (vectors * powered[:, None, :]) @ vectors.transpose(0, 2, 1)


def cr2_covariance(
    design: GroupedDesign, cov_rel: np.ndarray, fe_params: np.ndarray, xwx_inv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CR2 covariance of the GLS fixed effects ``fe_params`` at ``cov_rel`` (zeros: OLS)
    clustered by the design's groups, and each coefficient's Bell-McCaffrey df;
    ``xwx_inv``: (sum_g X_g'W_gX_g)^-1.

    >>> from attnmag.models.mixed import GroupedDesign
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> zero = np.zeros((1, 1))
    >>> point = design.gls(zero)
    >>> covariance, df = cr2_covariance(design, zero, point.fe_params, point.xwx_inv)
    >>> covariance.shape, df.shape
    ((2, 2), (2,))
    """
    p, r = design.k_fe, design.k_fe + design.k_re
    cross, bread = design.cross, xwx_inv
    # An orthonormal basis Q_g = [X_g | Z_g] T_g of the span; coordinates in it.
    values, vectors = np.linalg.eigh(cross[:, :r, :r])
    kept = values > RANK_TOL * values.max(axis=1, keepdims=True)
    scale = np.where(kept, 1 / np.sqrt(np.where(kept, values, 1.0)), 0.0)
    coords = (vectors * scale[:, None, :]).transpose(0, 2, 1) @ cross[:, :r, :]
    x, z = coords[:, :, :p], coords[:, :, p:r]
    residuals = coords[:, :, r] - x @ fe_params
    eye = np.eye(r)
    target = eye + z @ cov_rel @ z.transpose(0, 2, 1)  # V_g / scale
    weight = _power(target, -1.0)
    root = _power(target, 0.5)
    residual_maker = eye - x @ bread @ x.transpose(0, 2, 1) @ weight
    adjustment = root @ _power(root @ residual_maker @ target @ root, -0.5) @ root
    estimating = x.transpose(0, 2, 1) @ weight @ adjustment  # E_g = X_g' W_g A_g
    scores = np.einsum("gkr,gr->gk", estimating, residuals)
    covariance = bread @ (scores.T @ scores) @ bread
    # Each coefficient's df = tr(P)^2 / sum(P^2), P_gh = d_g delta_gh - f_g' M f_h (d_g = (M
    # E_g V_g E_g' M)_cc, f_g: row c of M E_g X_g; M the bread).
    me = bread @ estimating  # (G, k, r)
    diagonal = np.einsum("gkr,grs,gks->gk", me, target, me)
    f = me @ x  # (G, k, k): row c is f_g for coefficient c
    own = np.einsum("gcl,lm,gcm->gc", f, bread, f)
    summed = np.einsum("gcl,gcm->clm", f, f)  # per coefficient: sum_g f_g f_g'
    squares = np.einsum("lm,cmn,no,col->c", bread, summed, bread, summed)
    trace = diagonal.sum(axis=0) - own.sum(axis=0)
    total = (diagonal**2).sum(axis=0) - 2 * (diagonal * own).sum(axis=0) + squares
    return covariance, trace**2 / total
