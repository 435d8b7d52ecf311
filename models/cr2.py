"""CR2, the Bell-McCaffrey bias-reduced cluster-robust covariance, with its Satterthwaite
degrees of freedom, from per-cluster cross products.

Holds:
- ``cr2_covariance``: the CR2 covariance of OLS or GLS fixed effects clustered by the design's
  groups (texts), and each coefficient's Bell-McCaffrey (Satterthwaite) degrees of freedom,
  as R's ``clubSandwich::vcovCR(fit, type = "CR2")`` and ``coef_test(..., test =
  "Satterthwaite")`` give them for ``lm`` and ``lmer`` fits;
- ``CR2_BELOW``: the number of texts below which the trend fits default to CR2, and
  ``trend_cov_type``, that default.

CR2 replaces each cluster's residuals e_g by A_g e_g, where A_g undoes the shrinking of
residuals by the fit (for OLS A_g = (I - H_gg)^-1/2, H_gg the cluster's block of the hat
matrix; for GLS, clubSandwich's form with the working covariance V_g as the target). Every
matrix involved maps the span of the cluster's columns ``[X_g | Z_g]`` into itself and is the
identity (or zero) on its complement, so it is computed in an orthonormal basis of that span,
found from the cluster's Gram matrix ``[X_g | Z_g]'[X_g | Z_g]``: at most (k_fe + k_re)
square matrices per cluster, whatever the cluster's length, and no row of the data.

The degrees of freedom of coefficient c are those of Bell and McCaffrey (2002) under the
working model: with P the clusters' matrix P_gh = c'M E_g (delta_gh V_g - X_g M X_h') E_h' M c
(M the bread, E_g = X_g' W_g A_g), df = tr(P)^2 / sum(P^2), clubSandwich's
``Satterthwaite``. Its G x G sum is computed as sums of k_fe x k_fe products.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from attnmag.models.mixed import GroupedDesign

__all__ = ["CR2_BELOW", "cr2_covariance", "trend_cov_type"]

#: Below this many texts the trend fits (``position_trend``'s ``ols`` and ``mixed``) use CR2
#: by default: from the coverage simulation of ``benchmarks/cr2.py``.
CR2_BELOW = 50
#: Eigenvalues of a cluster's Gram matrix below this times its largest span no dimension.
RANK_TOL = 1e-10
#: Eigenvalues below this are taken as zero in the matrix powers (clubSandwich's 1e-12).
POWER_TOL = 1e-12


def trend_cov_type(cov_type: str | None, n_groups: int) -> str:
    """``cov_type``, or where it is None the trend fits' default for ``n_groups`` texts:
    ``"cr2"`` below ``CR2_BELOW`` texts, ``"cluster"`` (CR1) from there.

    >>> trend_cov_type(None, 20), trend_cov_type(None, 500), trend_cov_type("model", 20)
    ('cr2', 'cluster', 'model')
    """
    if cov_type is not None:
        return cov_type
    return "cr2" if n_groups < CR2_BELOW else "cluster"


def _power(matrices: np.ndarray, exponent: float) -> np.ndarray:
    """Each symmetric matrix of a stack to ``exponent``; eigenvalues under ``POWER_TOL`` -> 0."""
    values, vectors = np.linalg.eigh(matrices)
    positive = values > POWER_TOL
    powered = np.where(positive, np.where(positive, values, 1.0) ** exponent, 0.0)
    return (vectors * powered[:, None, :]) @ vectors.transpose(0, 2, 1)


def cr2_covariance(
    design: GroupedDesign, cov_rel: np.ndarray, fe_params: np.ndarray, xwx_inv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CR2 covariance of the fixed effects clustered by the design's groups, and each
    coefficient's Bell-McCaffrey degrees of freedom.

    Parameters
    ----------
    design : GroupedDesign
        The model's per-group cross products.
    cov_rel : numpy.ndarray
        The random-effects covariance relative to the residual variance (zeros: OLS).
    fe_params : numpy.ndarray
        The fixed effects (GLS at ``cov_rel``).
    xwx_inv : numpy.ndarray
        (sum_g X_g' W_g X_g)^-1 at ``cov_rel``.

    Returns
    -------
    covariance : numpy.ndarray
        The (k_fe, k_fe) CR2 covariance.
    df : numpy.ndarray
        The (k_fe,) Satterthwaite degrees of freedom of each coefficient's t test.

    >>> point = design.gls(cov_rel)  # doctest: +SKIP
    >>> cr2_covariance(design, cov_rel, point.fe_params, point.xwx_inv)  # doctest: +SKIP
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
    return covariance, _satterthwaite(bread, estimating, target, x)


def _satterthwaite(
    bread: np.ndarray, estimating: np.ndarray, target: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Each coefficient's df = tr(P)^2 / sum(P^2), P_gh = d_g delta_gh - f_g' M f_h, with
    d_g = (M E_g V_g E_g' M)_cc and f_g the row c of M E_g X_g (see the module docstring)."""
    me = bread @ estimating  # (G, k, r)
    diagonal = np.einsum("gkr,grs,gks->gk", me, target, me)
    f = me @ x  # (G, k, k): row c is f_g for coefficient c
    own = np.einsum("gcl,lm,gcm->gc", f, bread, f)
    summed = np.einsum("gcl,gcm->clm", f, f)  # per coefficient: sum_g f_g f_g'
    squares = np.einsum("lm,cmn,no,col->c", bread, summed, bread, summed)
    trace = diagonal.sum(axis=0) - own.sum(axis=0)
    total = (diagonal**2).sum(axis=0) - 2 * (diagonal * own).sum(axis=0) + squares
    return trace**2 / total
