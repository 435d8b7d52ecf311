"""Linear mixed models per group from per-sequence cross products: REML's (or ML's) global
maximum, the GLS values there, and their standard errors.

Holds:
- ``GroupedDesign``: per-sequence cross products of ``[X | Z | y]``, with the GLS algebra at
  given relative variance components (``GLS``), vectorised over sequences;
- ``mixed_fit``: REML's global maximum (``reml_maximum``) and the GLS values there ->
  an ``Estimate``, errors by ``COV_TYPES``: CR1 by sequence (``cluster_covariance``; an ML
  design's ``stacked_covariance``), CR2 (``models.cr2``) or lme4's model-based covariance;
- ``mixed_result``: statsmodels' ``MixedLM`` result, started at that maximum;
- ``ml_scores``, ``ml_information``, ``ml_hessian``, ``stacked_covariance``: a
  random-intercept model's per-group likelihood scores and information, the likelihood's
  Hessian, and the sandwich over its fixed effects and variance components with Mancl and
  DeRouen's bias-corrected scores;
- ``slope_test``: the likelihood-ratio test of a random slope (50:50 chi-square mixture);
- ``is_boundary``: lme4's ``isSingular`` rule, with a looser tolerance.

How the maximum is found, and why statsmodels' optimiser is not used to find it, is in
docs/guide-models.md ("Mixed fits report REML's global maximum"). At a maximum on the
boundary (zero variance, or a singular covariance) statsmodels' ``fe_params`` are the limit
of an infinite variance (statsmodels issue #10239): there is no ``MixedLM`` result there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.stats import chi2
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMResults
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from attnmag.models.cr2 import cr2_covariance
from attnmag.models.tidy import Estimate

__all__ = [
    "COV_TYPES",
    "STATSMODELS_SINGULAR_TOL",
    "BOUNDARY_TOL",
    "GLS",
    "GroupedDesign",
    "is_boundary",
    "mixed_fit",
    "mixed_result",
    "reml_maximum",
    "cluster_covariance",
    "ml_scores",
    "ml_information",
    "ml_hessian",
    "stacked_covariance",
    "slope_test",
]

#: statsmodels pseudo-inverts a relative covariance below this eigenvalue.
STATSMODELS_SINGULAR_TOL = 1e-10
#: ``is_boundary``'s tolerance.
BOUNDARY_TOL = 1e-2
COV_TYPES = ("cluster", "cr2", "model")
#: statsmodels' optimisers, tried in turn.
OPTIMIZERS = ["lbfgs", "bfgs", "cg"]
#: The profile's grid of a random intercept's relative sd: zero and this many log-spaced
#: points from ``PROFILE_LOWEST`` up, extended to ``PROFILE_HIGHEST`` while the top is best.
PROFILE_POINTS = 80
PROFILE_LOWEST = 1e-4
PROFILE_HIGHEST = 1e6
#: The refinement's points between the best point's neighbours, and its relative end.
ZOOM_POINTS = 17
ZOOM_TOL = 1e-9
#: OLS's residual share below which the outcome is exact (REML is rounding noise).
EXACT_TOL = 1e-12
#: Zero variance is reported where REML there is within this of the profile's maximum.
ZERO_TOL = 1e-9
#: A random-slope search converged where its gradient is under this times 1 + |REML|.
SEARCH_GTOL = 1e-5
START_FLOOR = 0.05
#: The slope test's climb starts at the null's intercept sd, at least this, and this slope sd.
SLOPE_START = 0.1


@dataclass(frozen=True)
class GLS:
    """GLS quantities at given relative variance components (``GroupedDesign.gls``)."""

    fe_params: np.ndarray
    xwx_inv: np.ndarray  # (sum_i X_i' W_i X_i)^-1
    scale: float
    llf_reml: float


@dataclass(frozen=True)
class GroupedDesign:
    """Per-group cross products of ``[X | Z | y]`` (fitted by ML where ``ml``, else REML).

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> at = design.gls(np.array([[0.5]]))  # random-intercept variance 0.5 x the residual's
    >>> at.fe_params.shape, at.xwx_inv.shape, at.scale > 0
    ((2,), (2, 2), True)
    """

    cross: np.ndarray  # (groups, m, m), m = k_fe + k_re + 1
    n_obs: int
    k_fe: int
    k_re: int
    ml: bool = False

    @classmethod
    def of(
        cls, exog: np.ndarray, exog_re: np.ndarray, endog: np.ndarray, groups: np.ndarray
    ) -> GroupedDesign:
        """The cross products of each group's rows (``groups`` labels the rows)."""
        data = np.column_stack([exog, exog_re, endog])
        n, m = data.shape
        labels, codes = np.unique(groups, return_inverse=True)
        n_groups = len(labels)
        indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
        cross = np.asarray(indicator @ (data[:, :, None] * data[:, None, :]).reshape(n, m * m))
        return cls(cross.reshape(n_groups, m, m), n, exog.shape[1], exog_re.shape[1])

    def gls(self, cov_rel: np.ndarray) -> GLS:
        """GLS with V_i = scale * (I + Z_i P Z_i') per group, P = ``cov_rel``.

        ``cov_rel`` is the random-effects covariance relative to the residual variance
        (statsmodels' ``cov_re_unscaled``); it may be singular. With W_i = (I + Z_i P Z_i')^-1
        = I - Z_i (I + P Z_i'Z_i)^-1 P Z_i', only per-group cross products are needed.
        Where ``ml``, the scale and ``llf_reml`` are maximum likelihood's (scale = the
        weighted residual sum of squares / N, no log det(X'WX) term).
        """
        p = self.k_fe
        logdet_inner, xwxy_groups, ywy = self._weighted(cov_rel)
        xwxy = xwxy_groups.sum(axis=0)  # [X'WX | X'Wy]
        xwx, xwy = xwxy[:, :p], xwxy[:, p]
        fe_params = np.linalg.solve(xwx, xwy)
        dof = self.n_obs if self.ml else self.n_obs - p
        scale = float((ywy - xwy @ fe_params) / dof)
        logdets = logdet_inner + (0.0 if self.ml else np.linalg.slogdet(xwx)[1])
        llf = -0.5 * (dof * np.log(2 * np.pi * scale) + logdets + dof)
        return GLS(fe_params, np.linalg.inv(xwx), scale, float(llf))

    def scores(self, cov_rel: np.ndarray, fe_params: np.ndarray) -> np.ndarray:
        """Per-group X_i' W_i e_i, e_i = y_i - X_i b the GLS residuals: shape (groups, k_fe)."""
        p = self.k_fe
        xwxy_groups = self._weighted(cov_rel)[1]
        return xwxy_groups[:, :, p] - xwxy_groups[:, :, :p] @ fe_params

    def _weighted(self, cov_rel: np.ndarray) -> tuple[float, np.ndarray, float]:
        """sum_i log det(I + P Z_i'Z_i), per-group [X_i'W_i X_i | X_i'W_i y_i], sum y_i'W_i y_i."""
        p, q, cross = self.k_fe, self.k_re, self.cross
        x, z, y = slice(0, p), slice(p, p + q), p + q
        xy = np.r_[x, y]
        inner = np.eye(q) + cov_rel @ cross[:, z, z]
        k = np.linalg.solve(inner, cov_rel @ cross[:, z][:, :, xy])  # (G, q, p + 1)
        xwxy_groups = cross[:, x][:, :, xy] - cross[:, x, z] @ k
        ywy = (cross[:, y, y] - np.einsum("gq,gq->g", cross[:, z, y], k[:, :, p])).sum()
        return float(np.linalg.slogdet(inner)[1].sum()), xwxy_groups, float(ywy)

    def intercept_only(self) -> GroupedDesign:
        """The same design with the first random effect (the intercept) alone."""
        keep = np.r_[0 : self.k_fe + 1, self.k_fe + self.k_re]
        return replace(self, cross=self.cross[:, keep][:, :, keep], k_re=1)

    def standardised(self) -> tuple[GroupedDesign, np.ndarray]:
        """The design with its random slope (after an intercept) divided by its standard
        deviation over the rows, which L-BFGS climbs better; the random effects' scales."""
        p, total, n = self.k_fe, self.cross.sum(axis=0), self.n_obs
        spread = np.sqrt((total[p + 1, p + 1] - total[p, p + 1] ** 2 / n) / (n - 1))
        cross = self.cross.copy()
        cross[:, p + 1, :] /= spread
        cross[:, :, p + 1] /= spread
        return replace(self, cross=cross), np.array([1.0, 1.0 / spread])

    def intercept_profile(self, sds: np.ndarray) -> np.ndarray:
        """REML (the likelihood where ``ml``) at each relative standard deviation in ``sds`` of
        a random intercept alone (``_intercept_profiler``)."""
        return _intercept_profiler(self)(sds)


def _intercept_profiler(design: GroupedDesign) -> Callable[[np.ndarray], np.ndarray]:
    """``design.intercept_profile``, its per-group sums made once for many calls.

    ``gls`` at cov_rel = t^2 for every t at once: with one random effect, W_i's correction
    is c_i(t) Z_i Z_i' with c_i(t) = t^2 / (1 + t^2 Z_i'Z_i). c_i depends on the group only
    through Z_i'Z_i (its rows, for an intercept), so the groups' Z_i'[X_i y_i] outer products
    are summed once per value of Z_i'Z_i, and the sums over groups are one matrix product of
    the (t, value) array c with those sums.
    """
    if design.k_re != 1:
        raise ValueError("intercept_profile needs a random intercept alone")
    p, cross = design.k_fe, design.cross
    xy = np.r_[0:p, p + 1]
    zxy = cross[:, p, xy]  # (G, p + 1)
    sizes, index, counts = np.unique(cross[:, p, p], return_inverse=True, return_counts=True)
    outer = np.zeros((len(sizes), (p + 1) ** 2))
    np.add.at(outer, index, (zxy[:, :, None] * zxy[:, None, :]).reshape(len(zxy), -1))
    total = cross[:, xy][:, :, xy].sum(axis=0)
    dof = design.n_obs if design.ml else design.n_obs - p

    def profile(sds: np.ndarray) -> np.ndarray:
        variance = np.asarray(sds, dtype=np.float64)[:, None] ** 2
        c = variance / (1 + variance * sizes)  # (T, sizes)
        xwxy = total - (c @ outer).reshape(-1, p + 1, p + 1)
        xwx, xwy, ywy = xwxy[:, :p, :p], xwxy[:, :p, p], xwxy[:, p, p]
        fe_params = np.linalg.solve(xwx, xwy[:, :, None])[:, :, 0]
        scale = (ywy - (xwy * fe_params).sum(axis=1)) / dof
        logdets = np.log1p(variance * sizes) @ counts
        if not design.ml:
            logdets = logdets + np.linalg.slogdet(xwx)[1]
        return -0.5 * (dof * np.log(2 * np.pi * scale) + logdets + dof)

    return profile


def is_boundary(cov_rel: np.ndarray, *, tol: float = BOUNDARY_TOL) -> bool:
    """Whether a diagonal element of the relative Cholesky factor is below ``tol``: lme4's
    ``isSingular`` rule (its tolerance is 1e-4; this one allows an optimiser that stops
    short of the boundary). Perfectly correlated random effects count too.

    >>> is_boundary(np.array([[1e-10]])), is_boundary(np.array([[0.25]]))
    (True, False)
    """
    try:
        factor = np.linalg.cholesky(cov_rel)
    except np.linalg.LinAlgError:
        return True
    return bool(np.min(np.diag(factor)) < tol)


def _search(design: GroupedDesign) -> tuple[np.ndarray, bool]:
    """REML's global maximum over the relative random-effects covariance, on ``design.gls``
    (see the module docstring): the covariance and whether the search converged.
    """
    theta = _moment_start(design)
    if design.k_re == 1:
        return np.array([[_intercept_maximum(design, theta) ** 2]]), True
    starts = [
        [_intercept_maximum(design.intercept_only(), theta), 0.0, 0.0],
        [theta, 0.0, 0.1],
        [theta, 0.0, 1.0],
        [3 * theta, 0.5, 0.3],
        [theta / 3, -0.5, 0.3],
    ]
    best = min((_climb(design, start) for start in starts), key=lambda result: result.fun)
    # L-BFGS-B often ends its line search in rounding noise ("abnormal termination") at the
    # maximum: converged is judged from the gradient there instead.
    return _covariance(best.x), bool(np.abs(best.jac).max() <= SEARCH_GTOL * (1 + abs(best.fun)))


def _climb(design: GroupedDesign, start: list[float]):
    """L-BFGS-B on minus REML (the likelihood where ``ml``) over the packed relative Cholesky
    factor L of two random effects, with ``_two_effects``' exact gradient.

    L is not bounded: LL' is a covariance whatever the signs of L's diagonal. Bounds at zero
    would trap the climb: on a bound the gradient in that element vanishes, so a climb that
    steps onto one stays there, short of an interior maximum.
    """
    return minimize(
        _two_effects(design),
        np.asarray(start, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 1e-12, "gtol": 1e-6},
    )


def _two_effects(design: GroupedDesign) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Minus ``design.gls(P).llf_reml`` and its gradient in the packed relative Cholesky
    factor L (L00, L10, L11) of P = LL', for two random effects, in closed form.

    With N = Z_i'Z_i and D = det(I + PN), the 2 x 2 inverses are elementwise over groups:
    (I + PN)^-1 P = (P + det(P) adj(N)) / D and Z_i'W_i = adj(I + NP) / D Z_i'. The
    gradient in P is -(sum_i Z_i'W_iZ_i - sum_i Z_i'W_iX_i (X'WX)^-1 X_i'W_iZ_i - sum_i
    u_i u_i' / s2) / 2, u_i = Z_i'W_i e_i (ML's lacks the (X'WX)^-1 term); in L, 2 G L.
    """
    p, cross = design.k_fe, design.cross
    xy = np.r_[0:p, p + 2]
    n00, n01, n11 = cross[:, p, p], cross[:, p, p + 1], cross[:, p + 1, p + 1]
    det_n = n00 * n11 - n01**2
    zxy = cross[:, p : p + 2][:, :, xy]  # (G, 2, p + 1): Z_i'[X_i y_i]
    z0, z1 = zxy[:, 0, :, None], zxy[:, 1, :, None]
    zt0, zt1 = zxy[:, 0, None, :], zxy[:, 1, None, :]
    outer = np.stack([z0 * zt0, z0 * zt1 + z1 * zt0, z1 * zt1], axis=1).reshape(len(n00), 3, -1)
    total = cross[:, xy][:, :, xy].sum(axis=0)
    dof = design.n_obs if design.ml else design.n_obs - p

    def objective(packed: np.ndarray) -> tuple[float, np.ndarray]:
        factor = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
        (p00, p01), (_, p11) = factor @ factor.T
        det_p = (packed[0] * packed[2]) ** 2
        np00, np01 = n00 * p00 + n01 * p01, n00 * p01 + n01 * p11  # N P
        np10, np11 = n01 * p00 + n11 * p01, n01 * p01 + n11 * p11
        d = 1 + np00 + np11 + det_p * det_n
        k = np.stack([p00 + det_p * n11, p01 - det_p * n01, p11 + det_p * n00], axis=1) / d[:, None]
        xwxy = total - (k.reshape(-1) @ outer.reshape(-1, (p + 1) ** 2)).reshape(p + 1, p + 1)
        xwx, xwy = xwxy[:p, :p], xwxy[:p, p]
        fe_params = np.linalg.solve(xwx, xwy)
        scale = (xwxy[p, p] - xwy @ fe_params) / dof
        logdets = np.log(d).sum() + (0.0 if design.ml else np.linalg.slogdet(xwx)[1])
        llf = -0.5 * (dof * np.log(2 * np.pi * scale) + logdets + dof)
        # (I + NP)^-1 = adj(I + NP) / D, rows of Z_i'W_i = (I + NP)^-1 Z_i'
        r = zxy @ np.r_[-fe_params, 1.0]  # Z_i'(y_i - X_i b)
        u0 = ((1 + np11) * r[:, 0] - np01 * r[:, 1]) / d
        u1 = ((1 + np00) * r[:, 1] - np10 * r[:, 0]) / d
        zwz = np.array(
            [
                [((n00 + det_n * p11) / d).sum(), ((n01 - det_n * p01) / d).sum()],
                [0.0, ((n11 + det_n * p00) / d).sum()],
            ]
        )
        zwz[1, 0] = zwz[0, 1]
        uu = np.array([[u0 @ u0, u0 @ u1], [u0 @ u1, u1 @ u1]])
        gradient = zwz - uu / scale
        if not design.ml:
            zx = zxy[:, :, :p]
            zwx = (
                np.stack(
                    [
                        (1 + np11)[:, None] * zx[:, 0] - np01[:, None] * zx[:, 1],
                        (1 + np00)[:, None] * zx[:, 1] - np10[:, None] * zx[:, 0],
                    ],
                    axis=1,
                )
                / d[:, None, None]
            )
            fixed = np.tensordot(zwx @ np.linalg.inv(xwx), zwx, axes=([0, 2], [0, 2]))
            gradient = gradient - fixed
        by_factor = -gradient @ factor  # the gradient of REML in L, 2 G L, is -(...) L
        return -float(llf), -by_factor[np.tril_indices(2)]

    return objective


def _covariance(packed: np.ndarray) -> np.ndarray:
    """A 2 x 2 covariance from its Cholesky factor packed by rows (L00, L10, L11)."""
    factor = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
    return factor @ factor.T


def _intercept_maximum(design: GroupedDesign, theta: float) -> float:
    """The random intercept's relative standard deviation at REML's global maximum."""
    upper = max(10.0, 10 * theta)
    sds = np.r_[0.0, np.geomspace(PROFILE_LOWEST, upper, PROFILE_POINTS)]
    profile_at = _intercept_profiler(design)
    profile = profile_at(sds)
    while profile.argmax() == len(sds) - 1 and sds[-1] < PROFILE_HIGHEST:
        more = sds[-1] * np.geomspace(1.2, 100.0, PROFILE_POINTS // 2)
        sds, profile = np.r_[sds, more], np.r_[profile, profile_at(more)]
    best = int(profile.argmax())
    low, high = sds[max(best - 1, 0)], sds[min(best + 1, len(sds) - 1)]
    sd, llf, width = sds[best], profile[best], ZOOM_TOL * high
    while high - low > width:
        points = np.linspace(low, high, ZOOM_POINTS)
        values = profile_at(points)
        at = int(values.argmax())
        if values[at] > llf:
            sd, llf = points[at], values[at]
        low, high = points[max(at - 1, 0)], points[min(at + 1, ZOOM_POINTS - 1)]
    # Near zero REML is flat to rounding; zero is the maximum unless clearly beaten.
    return 0.0 if profile[0] >= llf - ZERO_TOL else float(sd)


def _ols(design: GroupedDesign) -> tuple[np.ndarray, float, float]:
    """OLS from the cross products (the first random effect is the intercept):
    coefficients, residual and total sum of squares."""
    p = design.k_fe
    total = design.cross.sum(axis=0)
    x, z, y = slice(0, p), p, p + design.k_re
    beta = np.linalg.solve(total[x, x], total[x, y])
    rss = total[y, y] - total[x, y] @ beta
    return beta, float(rss), float(total[y, y] - total[z, y] ** 2 / design.n_obs)


def _exact(design: GroupedDesign) -> bool:
    """Whether OLS leaves a residual sum of squares under ``EXACT_TOL`` of the total."""
    _, rss, tss = _ols(design)
    return rss <= EXACT_TOL * tss


def _moment_start(design: GroupedDesign) -> float:
    """The random intercept's relative standard deviation by moments on OLS residuals."""
    p, cross = design.k_fe, design.cross
    x, z, y = slice(0, p), p, p + design.k_re
    beta = _ols(design)[0]
    sizes = cross[:, z, z]
    sums = cross[:, z, y] - cross[:, z, x] @ beta
    squares = (
        cross[:, y, y]
        - 2 * cross[:, x, y] @ beta
        + np.einsum("j,gjk,k->g", beta, cross[:, x, x], beta)
    )
    n_groups = len(sizes)
    within = np.sum(squares - sums**2 / sizes) / max(design.n_obs - n_groups, 1)
    between = max(np.var(sums / sizes) - within * np.mean(1 / sizes), 0.0)
    return max(np.sqrt(between / within), 0.05)


def mixed_fit(
    design: GroupedDesign,
    scales: np.ndarray,
    terms: tuple[str, ...],
    n_groups: int,
    *,
    cov_type: str,
    result: Callable[[np.ndarray], object] | None = None,
) -> Estimate:
    """REML's global maximum (``reml_maximum``) and the GLS values there, with their
    standard errors (``cov_type``) and glance fields, from per-sequence cross products;
    ``scales`` unscale the random effects (a random slope fitted on position /
    sd(position)). ``result(cov_rel)``, where given, builds statsmodels' results object at
    the maximum: the ``Estimate``'s ``result`` calls it, except at a boundary maximum (noted).

    >>> import statsmodels.formula.api as smf
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> mixedlm = smf.mixedlm("log_norm ~ position", rows, groups=rows["sequence"])
    >>> design = GroupedDesign.of(mixedlm.exog, mixedlm.exog_re, mixedlm.endog, mixedlm.groups)
    >>> terms = list(mixedlm.exog_names)
    >>> fit = mixed_fit(design, np.ones(1), terms, 16, cov_type="cluster")
    >>> fit.estimate.size, fit.df
    (2, 15.0)
    """
    cov_rel, converged, notes = reml_maximum(design)
    point = design.gls(cov_rel)
    cov_re = point.scale * np.outer(scales, scales) * cov_rel
    n_params = design.k_fe + design.k_re * (design.k_re + 1) // 2 + 1
    df: float | pd.Series = np.inf
    if cov_type == "cluster":
        if design.ml:
            covariance = stacked_covariance(design, cov_rel, point)
        else:
            covariance = cluster_covariance(design, cov_rel, point.fe_params, point.xwx_inv)
        df = float(n_groups - 1)
    elif cov_type == "cr2":
        covariance, df_terms = cr2_covariance(design, cov_rel, point.fe_params, point.xwx_inv)
        df = pd.Series(df_terms, index=list(terms))
    else:
        covariance = point.scale * point.xwx_inv
    std_errors = np.sqrt(np.diag(covariance))
    finite = np.all(np.isfinite(point.fe_params)) and np.all(np.isfinite(std_errors))
    llf = point.llf_reml
    slope = design.k_re == 2
    return Estimate(
        estimate=pd.Series(point.fe_params, index=list(terms)),
        std_error=pd.Series(std_errors, index=list(terms)),
        df=df,
        n_obs=design.n_obs,
        n_groups=n_groups,
        converged=converged and bool(finite),
        stats={
            "r2": np.nan,
            "loglik": llf,
            "aic": -2 * llf + 2 * n_params,
            "bic": -2 * llf + np.log(design.n_obs) * n_params,
            "sigma": float(np.sqrt(point.scale)),
            "boundary": is_boundary(cov_rel),
            "var_intercept": float(cov_re[0, 0]),
            "var_position": float(cov_re[1, 1]) if slope else np.nan,
            "cov_intercept_position": float(cov_re[0, 1]) if slope else np.nan,
        },
        notes=notes,
        result=None if result is None or notes else partial(result, cov_rel),
    )


def mixed_result(
    data: pd.DataFrame,
    formula: str,
    random_slope: bool,
    cov_rel: np.ndarray,
    *,
    reml: bool = True,
) -> MixedLMResults:
    """statsmodels' REML (ML where not ``reml``) fit of ``formula`` on ``data``, a random
    intercept (and a slope on position / sd(position), which L-BFGS climbs better) per
    sequence, started at ``cov_rel``: its ``fe_params`` equal the estimates to rounding.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> result = mixed_result(rows, "log_norm ~ position", False, np.array([[0.5]]))
    >>> result.fe_params.size, result.fe_params.index[-1]
    (2, 'position')
    """
    if random_slope:
        data = data.assign(position_sd=data["position"] / data["position"].std())
    re_formula = "~position_sd" if random_slope else None
    groups = data["sequence"].to_numpy()
    model = MixedLM.from_formula(formula, data, groups=groups, re_formula=re_formula)
    # The start: the relative Cholesky factor packed by rows, its diagonal at least
    # START_FLOOR (on a singular covariance statsmodels' likelihood is wrong).
    factor = np.linalg.cholesky(cov_rel + 1e-12 * np.eye(len(cov_rel)))
    np.fill_diagonal(factor, np.maximum(np.diag(factor), START_FLOOR))
    with warnings.catch_warnings():
        # statsmodels warns below 0.01 in the outcome's units, whatever the residual
        # variance: not a boundary test (the glance's ``boundary`` is).
        warnings.filterwarnings("ignore", "The MLE may be on the boundary", ConvergenceWarning)
        start = factor[np.tril_indices(len(cov_rel))]
        return model.fit(reml=reml, method=OPTIMIZERS, start_params=start)


def cluster_covariance(
    design: GroupedDesign, cov_rel: np.ndarray, fe_params: np.ndarray, xwx_inv: np.ndarray
) -> np.ndarray:
    """The CR1 sandwich of the GLS fixed effects ``fe_params`` at ``cov_rel``, clustered by
    the design's groups, with Stata's factor G/(G-1) (N-1)/(N-K) (clubSandwich's
    ``"CR1S"``; at zero variance, ``ols``'s errors); ``xwx_inv``: (sum_g X_g'W_gX_g)^-1.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> point = design.gls(np.array([[0.5]]))
    >>> cluster_covariance(design, np.array([[0.5]]), point.fe_params, point.xwx_inv).shape
    (2, 2)
    """
    scores = design.scores(cov_rel, fe_params)
    n_groups, n_obs, k = len(scores), design.n_obs, design.k_fe
    factor = n_groups / (n_groups - 1) * (n_obs - 1) / (n_obs - k)
    return factor * xwx_inv @ (scores.T @ scores) @ xwx_inv


def ml_scores(design: GroupedDesign, theta: np.ndarray) -> np.ndarray:
    """Per group, the likelihood's scores of a random-intercept model at ``theta``.

    ``theta`` = (fixed effects b, residual variance s2, relative intercept variance t), so
    V_i = s2 (I + t 1 1'); with e_i = y_i - X_i b and d_i = 1 + t n_i the scores are
    X_i' V_i^-1 e_i, -n_i / (2 s2) + e_i' V_i^-1 e_i / (2 s2) and
    -n_i / (2 d_i) + (1'e_i)^2 / (2 s2 d_i^2): shape (groups, k_fe + 2).
    """
    p, cross = design.k_fe, design.cross
    beta, scale, tau = theta[:p], theta[p], theta[p + 1]
    size, one_x, one_y = cross[:, p, p], cross[:, p, :p], cross[:, p, p + 1]
    xx, xy, yy = cross[:, :p, :p], cross[:, :p, p + 1], cross[:, p + 1, p + 1]
    one_e = one_y - one_x @ beta
    squares = yy - 2 * xy @ beta + (xx @ beta) @ beta
    inner = 1 + tau * size
    shrink = tau / inner  # W_i = I - shrink_i 1 1'
    xwe = xy - xx @ beta - (shrink * one_e)[:, None] * one_x
    ewe = squares - shrink * one_e**2
    return np.column_stack(
        [
            xwe / scale,
            -size / (2 * scale) + ewe / (2 * scale**2),
            -size / (2 * inner) + one_e**2 / (2 * scale * inner**2),
        ]
    )


def ml_information(design: GroupedDesign, theta: np.ndarray) -> np.ndarray:
    """Per group, the expected (Fisher) information of a random-intercept model at ``theta``
    (as ``ml_scores``): shape (groups, k_fe + 2, k_fe + 2).

    With V_i = s2 (I + t 1 1') and d_i = 1 + t n_i it is block diagonal: X_i' V_i^-1 X_i for
    the fixed effects and, for (s2, t), tr(V_i^-1 dV_i V_i^-1 dV_i) / 2, i.e. n_i / (2 s2^2),
    n_i / (2 s2 d_i) and (n_i / d_i)^2 / 2. Each group's is positive semi-definite, so the
    information without a group is the sum of the others'.
    """
    p, cross = design.k_fe, design.cross
    scale, tau = theta[p], theta[p + 1]
    size, one_x = cross[:, p, p], cross[:, p, :p]
    inner = 1 + tau * size
    xwx = cross[:, :p, :p] - (tau / inner)[:, None, None] * one_x[:, :, None] * one_x[:, None, :]
    information = np.zeros((len(size), p + 2, p + 2))
    information[:, :p, :p] = xwx / scale
    information[:, p, p] = size / (2 * scale**2)
    information[:, p, p + 1] = information[:, p + 1, p] = size / (2 * scale * inner)
    information[:, p + 1, p + 1] = (size / inner) ** 2 / 2
    return information


def ml_hessian(design: GroupedDesign, theta: np.ndarray) -> np.ndarray:
    """The Jacobian of the sum of ``ml_scores`` at ``theta``: the likelihood's Hessian,
    shape (k_fe + 2, k_fe + 2), in closed form.

    With e_i, d_i as there, u_i = 1'e_i, X_i'W_i e_i = X_i'e_i - (t / d_i) u_i X_i'1 and
    c_i = (t / d_i)' = 1 / d_i^2, its blocks summed over groups are -X_i'W_iX_i / s2 (b, b),
    -X_i'W_i e_i / s2^2 (b, s2), -c_i u_i X_i'1 / s2 (b, t), n_i / (2 s2^2) - e_i'W_i e_i / s2^3
    (s2, s2), -c_i u_i^2 / (2 s2^2) (s2, t) and n_i^2 c_i / 2 - n_i u_i^2 / (s2 d_i^3) (t, t).

    >>> import dataclasses
    >>> import statsmodels.formula.api as smf
    >>> from statsmodels.tools.numdiff import approx_fprime_cs
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> model = smf.mixedlm("log_norm ~ position", rows, groups=rows["sequence"])
    >>> design = GroupedDesign.of(model.exog, model.exog_re, model.endog, model.groups)
    >>> design = dataclasses.replace(design, ml=True)
    >>> theta = np.array([1.0, -0.02, 0.1, 0.5])
    >>> step = approx_fprime_cs(theta, lambda at: ml_scores(design, at).sum(axis=0))
    >>> bool(np.allclose(ml_hessian(design, theta), step, rtol=1e-10, atol=0))
    True
    """
    p, cross = design.k_fe, design.cross
    beta, scale, tau = theta[:p], theta[p], theta[p + 1]
    size, one_x, one_y = cross[:, p, p], cross[:, p, :p], cross[:, p, p + 1]
    xx, xy, yy = cross[:, :p, :p], cross[:, :p, p + 1], cross[:, p + 1, p + 1]
    one_e = one_y - one_x @ beta
    inner = 1 + tau * size
    shrink, change = tau / inner, 1 / inner**2
    xwe = (xy - xx @ beta - (shrink * one_e)[:, None] * one_x).sum(axis=0)
    ewe = (yy - 2 * xy @ beta + (xx @ beta) @ beta - shrink * one_e**2).sum()
    xwx = xx.sum(axis=0) - (shrink * one_x.T) @ one_x
    hessian = np.empty((p + 2, p + 2))
    hessian[:p, :p] = -xwx / scale
    hessian[:p, p] = hessian[p, :p] = -xwe / scale**2
    hessian[:p, p + 1] = hessian[p + 1, :p] = -(change * one_e) @ one_x / scale
    hessian[p, p] = size.sum() / (2 * scale**2) - ewe / scale**3
    hessian[p, p + 1] = hessian[p + 1, p] = -(change * one_e**2).sum() / (2 * scale**2)
    hessian[p + 1, p + 1] = (size**2 * change / 2 - size * one_e**2 / (scale * inner**3)).sum()
    return hessian


def stacked_covariance(design: GroupedDesign, cov_rel: np.ndarray, point: GLS) -> np.ndarray:
    """The cluster-robust covariance of a random-intercept model's ML fixed effects, from the
    sandwich over the fixed effects and the variance components together, clustered by the
    design's groups, with Mancl and DeRouen's (2001) bias-corrected scores: the fixed
    effects' block.

    A^-1 (sum_g c_g c_g') A^-T, s_g the group's likelihood scores (``ml_scores``), A the
    Jacobian of their sum (``ml_hessian``) and c_g = (I - F_g F^-1)^-1 s_g = F (F - F_g)^-1
    s_g, with F_g the group's Fisher information (``ml_information``) and F their sum. The
    raw scores s_g are too small by about the group's leverage F_g F^-1 (the fit has drawn
    the estimates towards the group); c_g undoes that, as CR3 does for least squares, and
    A^-1 c_g is about the change in the estimates when the group is left out (one Fisher
    scoring step). The correction vanishes as the number of groups grows. Where the
    regressors hold lagged outcomes, the scores of the fixed effects depend on the variance
    components (A is not block diagonal), so their estimation feeds into the fixed effects'
    errors, which ``cluster_covariance`` leaves out. At zero variance (the boundary) the
    variance is fixed and the fixed effects' equations are used alone: then GLS is OLS and
    this is least squares' CR3, the sum of the leave-one-group-out changes in the estimates.

    >>> import dataclasses
    >>> import statsmodels.formula.api as smf
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> model = smf.mixedlm("log_norm ~ position", rows, groups=rows["sequence"])
    >>> design = GroupedDesign.of(model.exog, model.exog_re, model.endog, model.groups)
    >>> design = dataclasses.replace(design, ml=True)
    >>> cov_rel = reml_maximum(design)[0]
    >>> stacked_covariance(design, cov_rel, design.gls(cov_rel)).shape
    (2, 2)
    """
    if not (design.ml and design.k_re == 1):
        raise ValueError("stacked_covariance needs an ML design with a random intercept alone")
    k = design.k_fe
    used = slice(0, k + 2 if cov_rel.any() else k)
    theta = np.r_[point.fe_params, point.scale, cov_rel[0, 0]]
    scores = ml_scores(design, theta)[:, used]
    jacobian = ml_hessian(design, theta)
    information = ml_information(design, theta)[:, used, used]
    total = information.sum(axis=0)
    corrected = np.linalg.solve(total - information, scores[:, :, None])[:, :, 0] @ total
    bread = np.linalg.inv(jacobian[used, used])
    return (bread @ corrected.T @ corrected @ bread.T)[:k, :k]


def slope_test(slope: GroupedDesign) -> tuple[float, float]:
    """The likelihood-ratio test of the random slope of ``slope`` (an ML design with a random
    intercept and slope) against its random intercept alone: the statistic and its p-value.

    Under the null the slope's variance is on the boundary, so the statistic follows the
    50:50 mixture of chi-square(1) and chi-square(2) (Stram and Lee 1994), not chi-square(2).

    >>> import dataclasses
    >>> import statsmodels.formula.api as smf
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> model = smf.mixedlm("log_norm ~ position", rows, groups=rows["sequence"],
    ...                     re_formula="~position")
    >>> design = GroupedDesign.of(model.exog, model.exog_re, model.endog, model.groups)
    >>> lr, p = slope_test(dataclasses.replace(design, ml=True))
    >>> bool(lr >= 0 and 0 <= p <= 1)
    True
    """
    if not slope.ml or slope.k_re != 2:
        raise ValueError("slope_test needs an ML design with a random intercept and slope")
    intercept = slope.intercept_only()
    sd = np.sqrt(reml_maximum(intercept)[0][0, 0])
    null = intercept.gls(np.array([[sd * sd]])).llf_reml
    # One climb from the null's intercept sd and a small slope sd (at least SLOPE_START: where
    # an element of L and the one below it are zero the gradient in it vanishes), on the slope
    # centred, where the maximum lies near that start.
    start = [max(sd, SLOPE_START), 0.0, SLOPE_START]
    alternative = -_climb(_centred(slope), start).fun
    lr = max(2 * (alternative - null), 0.0)
    return lr, float(0.5 * chi2.sf(lr, 1) + 0.5 * chi2.sf(lr, 2))


def _centred(design: GroupedDesign) -> GroupedDesign:
    """The design with its slope column centred, Z_1 - mean(Z_1) Z_0: the same maximum,
    but the intercept's variance near the null's, so the climb does not stall."""
    p, cross = design.k_fe, design.cross.copy()
    mean = cross[:, p, p + 1].sum() / design.n_obs
    cross[:, :, p + 1] -= mean * cross[:, :, p]
    cross[:, p + 1, :] -= mean * cross[:, p, :]
    return replace(design, cross=cross)


def reml_maximum(design: GroupedDesign) -> tuple[np.ndarray, bool, list[str]]:
    """The relative random-effects covariance to report: REML's global maximum (``_search``)
    or, where OLS fits the outcome exactly, zero; whether the search converged; the notes
    of the boundary cases (see the module docstring), which name the likelihood where
    ``design.ml``.

    >>> import statsmodels.formula.api as smf
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> mixedlm = smf.mixedlm("log_norm ~ position", rows, groups=rows["sequence"])
    >>> design = GroupedDesign.of(mixedlm.exog, mixedlm.exog_re, mixedlm.endog, mixedlm.groups)
    >>> cov_rel, converged, notes = reml_maximum(design)
    >>> cov_rel.shape, converged
    ((1, 1), True)
    """
    zero = np.zeros((design.k_re, design.k_re))
    criterion = "the likelihood" if design.ml else "REML"
    if _exact(design):
        note = (
            f"the fixed effects fit the outcome exactly (to rounding), so {criterion} is "
            "rounding noise: the boundary fit (GLS at zero variance, i.e. OLS) is reported, "
            "MixedLM's optimiser not run"
        )
        return zero, True, [note]
    cov_rel, converged = _search(design)
    if not cov_rel.any():
        note = (
            f"zero random-effect variance is {criterion}'s global maximum: the boundary fit "
            "(GLS at zero variance, i.e. OLS) is reported, MixedLM's optimiser not run"
        )
        return cov_rel, converged, [note]
    if np.linalg.eigvalsh(cov_rel).min() < STATSMODELS_SINGULAR_TOL:
        note = (
            f"{criterion}'s maximum has a singular random-effects covariance (on the "
            "boundary), where MixedLM's optimiser does not land: the GLS values there are "
            "reported, MixedLM's optimiser not run"
        )
        return cov_rel, converged, [note]
    return cov_rel, converged, []
