"""Linear mixed models per group from per-sequence cross products: REML's (or ML's) global
maximum, the GLS values there, and their standard errors.

Holds:
- ``GroupedDesign``: per-sequence cross products of ``[X | Z | y]`` and their GLS algebra
  (``GLS``); ``reml_maximum``, the maximum over the relative variance components;
- ``mixed_fit``: that maximum -> an ``Estimate``, errors by ``COV_TYPES``;
  ``cluster_covariance`` (CR1) and ``stacked_covariance`` (ML's sandwich over the fixed
  effects and variance components, from ``ml_scores`` and ``ml_hessian``);
- ``mixed_result``: statsmodels' ``MixedLM`` result, started at that maximum;
- ``slope_test``: the likelihood-ratio test of a random slope; ``is_boundary``.

docs/guide-models.md ("Mixed fits report REML's global maximum") says how the maximum is
found and why there is no ``MixedLM`` result at a boundary maximum (statsmodels #10239).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cached_property, partial

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.stats import chi2
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMResults
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from attnmag.models.cr2 import cr2_covariance
from attnmag.models.tidy import Estimate, fit_stats

__all__ = [
    "COV_TYPES",
    "GLS",
    "GroupedDesign",
    "is_boundary",
    "mixed_fit",
    "mixed_result",
    "reml_maximum",
    "cluster_covariance",
    "ml_scores",
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
#: The intercept profile's grid: zero and log-spaced points from the lowest, extended up.
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
        indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(len(labels), n))
        # Column by column: a batch's n x m products at a time, not n x m x m.
        cross = np.stack([indicator @ (data * data[:, [i]]) for i in range(m)], axis=1)
        return cls(cross, n, exog.shape[1], exog_re.shape[1])

    def gls(self, cov_rel: np.ndarray) -> GLS:
        """GLS with V_i = scale (I + Z_i P Z_i'), P = ``cov_rel`` (statsmodels'
        ``cov_re_unscaled``, possibly singular); ML's scale and likelihood where ``ml``."""
        logdet, xwxy_groups = self._weighted(cov_rel)
        xwxy = xwxy_groups.sum(axis=0)
        fe_params, scale, llf = self._profiled(xwxy, logdet)
        xwx_inv = np.linalg.inv(xwxy[: self.k_fe, : self.k_fe])
        return GLS(fe_params, xwx_inv, float(scale), float(llf))

    def _weighted(self, cov_rel: np.ndarray) -> tuple[float, np.ndarray]:
        """sum log det(I + P Z_i'Z_i) and per group [X_i y_i]'W_i[X_i y_i]."""
        p, q, cross = self.k_fe, self.k_re, self.cross
        xy, z = np.r_[0:p, p + q], slice(p, p + q)
        if not cov_rel.any():  # OLS (W_i = I): what the products below give, without them
            return 0.0, cross[:, xy][:, :, xy]
        inner = np.eye(q) + cov_rel @ cross[:, z, z]
        k = np.linalg.solve(inner, cov_rel @ cross[:, z][:, :, xy])  # (G, q, p + 1)
        xwxy_groups = cross[:, xy][:, :, xy] - cross[:, xy, z] @ k
        return float(np.linalg.slogdet(inner)[1].sum()), xwxy_groups

    def _profiled(
        self, xwxy: np.ndarray, logdet: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GLS's fixed effects, scale and REML (ML where ``ml``), each or stacked, from
        [X y]'W[X y] and sum_i log det(I + P Z_i'Z_i): the one likelihood of every search."""
        p = self.k_fe
        dof = self.n_obs if self.ml else self.n_obs - p
        xwx, xwy = xwxy[..., :p, :p], xwxy[..., :p, p]
        fe_params = np.linalg.solve(xwx, xwy[..., None])[..., 0]
        scale = (xwxy[..., p, p] - (xwy * fe_params).sum(axis=-1)) / dof
        if not self.ml:
            logdet = logdet + np.linalg.slogdet(xwx)[1]
        return fe_params, scale, -0.5 * (dof * np.log(2 * np.pi * scale) + logdet + dof)

    def fixed_effects(
        self,
        cov_rel: np.ndarray,
        terms: Iterable[str],
        n_groups: int,
        *,
        cov_type: str,
        model_df: float,
    ) -> tuple[GLS, dict[str, object]]:
        """GLS at ``cov_rel`` and its fixed effects' ``Estimate`` fields, errors by ``cov_type``:
        CR1 by group on G - 1 df (ML's: ``stacked_covariance``), CR2 with Bell-McCaffrey df, or
        the model's on ``model_df``."""
        point, df, index = self.gls(cov_rel), float(n_groups - 1), list(terms)
        if cov_type == "cr2":
            covariance, df_terms = cr2_covariance(self, cov_rel, point.fe_params, point.xwx_inv)
            df = pd.Series(df_terms, index=index)
        elif cov_type == "model":
            covariance, df = point.scale * point.xwx_inv, model_df
        elif self.ml:
            covariance = stacked_covariance(self, cov_rel, point)
        else:
            covariance = cluster_covariance(self, cov_rel, point.fe_params, point.xwx_inv)
        return point, {
            "estimate": pd.Series(point.fe_params, index=index),
            "std_error": pd.Series(np.sqrt(np.diag(covariance)), index=index),
            "df": df,
            "n_obs": self.n_obs,
            "n_groups": n_groups,
        }

    def intercept_only(self) -> GroupedDesign:
        """The same design with the first random effect (the intercept) alone."""
        keep = np.r_[0 : self.k_fe + 1, self.k_fe + self.k_re]
        return replace(self, cross=self.cross[:, keep][:, :, keep], k_re=1)

    def standardised(self) -> tuple[GroupedDesign, np.ndarray]:
        """The design with its random slope (after an intercept) divided by its standard
        deviation over the rows, which L-BFGS climbs better; the random effects' scales."""
        p, total, n = self.k_fe, self.cross.sum(axis=0), self.n_obs
        spread = np.sqrt((total[p + 1, p + 1] - total[p, p + 1] ** 2 / n) / (n - 1))
        scales = np.ones(len(total))
        scales[p + 1] = 1 / spread
        return replace(self, cross=self.cross * np.outer(scales, scales)), scales[p : p + 2]

    def intercept_profile(self, sds: np.ndarray) -> np.ndarray:
        """REML (ML where ``ml``) at each relative sd t in ``sds`` of a random intercept alone:
        W_i = I - c_i Z_iZ_i', c_i = t^2 / (1 + t^2 Z_i'Z_i), so Z_i'[X_i y_i]'s outer products
        are summed per Z_i'Z_i once, for every call."""
        sizes, counts, outer, total = self._by_size
        variance = np.asarray(sds, dtype=np.float64)[:, None] ** 2
        c = variance / (1 + variance * sizes)  # (T, sizes)
        xwxy = total - (c @ outer).reshape(len(c), *total.shape)
        return self._profiled(xwxy, np.log1p(variance * sizes) @ counts)[2]

    @cached_property
    def _by_size(self) -> tuple[np.ndarray, ...]:
        """The distinct Z_i'Z_i, their counts, their Z_i'[X_i y_i]'s summed outer products,
        and sum_i [X_i y_i]'[X_i y_i]."""
        if self.k_re != 1:
            raise ValueError("intercept_profile needs a random intercept alone")
        p, cross = self.k_fe, self.cross
        xy = np.r_[0:p, p + 1]
        zxy = cross[:, p, xy]  # (G, p + 1)
        sizes, index, counts = np.unique(cross[:, p, p], return_inverse=True, return_counts=True)
        outer = np.zeros((len(sizes), (p + 1) ** 2))
        np.add.at(outer, index, (zxy[:, :, None] * zxy[:, None, :]).reshape(len(zxy), -1))
        return sizes, counts, outer, cross[:, xy][:, :, xy].sum(axis=0)


def is_boundary(cov_rel: np.ndarray, *, tol: float = BOUNDARY_TOL) -> bool:
    """Whether a diagonal element of the relative Cholesky factor is below ``tol`` (lme4's
    ``isSingular``, with a looser tolerance); perfectly correlated effects count too.

    >>> is_boundary(np.array([[1e-10]])), is_boundary(np.array([[0.25]]))
    (True, False)
    """
    try:
        factor = np.linalg.cholesky(cov_rel)
    except np.linalg.LinAlgError:
        return True
    return bool(np.min(np.diag(factor)) < tol)


def _search(design: GroupedDesign) -> tuple[np.ndarray, bool]:
    """REML's global maximum over the relative covariance, and whether the search converged."""
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
    factor = np.array([[best.x[0], 0.0], [best.x[1], best.x[2]]])
    # L-BFGS-B may stop in rounding noise at the maximum: converged is judged by the gradient.
    return factor @ factor.T, bool(np.abs(best.jac).max() <= SEARCH_GTOL * (1 + abs(best.fun)))


def _climb(design: GroupedDesign, start: list[float]):
    """Unbounded L-BFGS-B (a bound traps the climb) on ``_two_effects`` from ``start``."""
    at, options = np.asarray(start, dtype=np.float64), {"ftol": 1e-12, "gtol": 1e-6}
    return minimize(_two_effects(design), at, jac=True, method="L-BFGS-B", options=options)


def _two_effects(design: GroupedDesign) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Minus ``design.gls(LL').llf_reml`` and its gradient in the packed factor L (L00,
    L10, L11) of two random effects, in closed form: 2 x 2 inverses by adjugates, D =
    det(I + PN); the gradient in P, G = -(sum Z'WZ - sum Z'WX (X'WX)^-1 X'WZ - sum uu' / s2)
    / 2 with u_i = Z_i'W_i e_i (ML: no X'WX term), is 2 G L in L."""
    p, cross = design.k_fe, design.cross
    xy = np.r_[0:p, p + 2]
    n00, n01, n11 = cross[:, p, p], cross[:, p, p + 1], cross[:, p + 1, p + 1]
    det_n = n00 * n11 - n01**2
    zxy = cross[:, p : p + 2][:, :, xy]  # (G, 2, p + 1): Z_i'[X_i y_i]
    z0, z1 = zxy[:, 0, :, None], zxy[:, 1, :, None]
    zt0, zt1 = zxy[:, 0, None, :], zxy[:, 1, None, :]
    outer = np.stack([z0 * zt0, z0 * zt1 + z1 * zt0, z1 * zt1], axis=1).reshape(len(n00), 3, -1)
    total = cross[:, xy][:, :, xy].sum(axis=0)

    def objective(packed: np.ndarray) -> tuple[float, np.ndarray]:
        factor = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
        (p00, p01), (_, p11) = factor @ factor.T
        det_p = (packed[0] * packed[2]) ** 2
        np00, np01 = n00 * p00 + n01 * p01, n00 * p01 + n01 * p11  # N P
        np10, np11 = n01 * p00 + n11 * p01, n01 * p01 + n11 * p11
        d = 1 + np00 + np11 + det_p * det_n
        k = np.stack([p00 + det_p * n11, p01 - det_p * n01, p11 + det_p * n00], axis=1) / d[:, None]
        xwxy = total - (k.reshape(-1) @ outer.reshape(-1, (p + 1) ** 2)).reshape(p + 1, p + 1)
        fe_params, scale, llf = design._profiled(xwxy, np.log(d).sum())
        # Z_i'W_i[X_i y_i] = (I + NP)^-1 Z_i'[X_i y_i], (I + NP)^-1 = adj(I + NP) / D, by row
        zw0 = ((1 + np11)[:, None] * zxy[:, 0] - np01[:, None] * zxy[:, 1]) / d[:, None]
        zw1 = ((1 + np00)[:, None] * zxy[:, 1] - np10[:, None] * zxy[:, 0]) / d[:, None]
        u0, u1 = zw0 @ np.r_[-fe_params, 1.0], zw1 @ np.r_[-fe_params, 1.0]  # Z_i'W_i e_i
        w00, w01 = ((n00 + det_n * p11) / d).sum(), ((n01 - det_n * p01) / d).sum()
        zwz = np.array([[w00, w01], [w01, ((n11 + det_n * p00) / d).sum()]])
        uu = np.array([[u0 @ u0, u0 @ u1], [u0 @ u1, u1 @ u1]])
        gradient = zwz - uu / scale
        if not design.ml:
            zwx = np.stack([zw0[:, :p], zw1[:, :p]], axis=1)
            fixed = np.tensordot(zwx @ np.linalg.inv(xwxy[:p, :p]), zwx, axes=([0, 2], [0, 2]))
            gradient = gradient - fixed
        by_factor = -gradient @ factor  # the gradient of REML in L, 2 G L, is -(...) L
        return -float(llf), -by_factor[np.tril_indices(2)]

    return objective


def _intercept_maximum(design: GroupedDesign, theta: float) -> float:
    """The random intercept's relative standard deviation at REML's global maximum."""
    upper = max(10.0, 10 * theta)
    sds = np.r_[0.0, np.geomspace(PROFILE_LOWEST, upper, PROFILE_POINTS)]
    profile = design.intercept_profile(sds)
    while profile.argmax() == len(sds) - 1 and sds[-1] < PROFILE_HIGHEST:
        more = sds[-1] * np.geomspace(1.2, 100.0, PROFILE_POINTS // 2)
        sds, profile = np.r_[sds, more], np.r_[profile, design.intercept_profile(more)]
    best = int(profile.argmax())
    low, high = sds[max(best - 1, 0)], sds[min(best + 1, len(sds) - 1)]
    sd, llf, width = sds[best], profile[best], ZOOM_TOL * high
    while high - low > width:
        points = np.linspace(low, high, ZOOM_POINTS)
        values = design.intercept_profile(points)
        at = int(values.argmax())
        if values[at] > llf:
            sd, llf = points[at], values[at]
        low, high = points[max(at - 1, 0)], points[min(at + 1, ZOOM_POINTS - 1)]
    # Near zero REML is flat to rounding; zero is the maximum unless clearly beaten.
    return 0.0 if profile[0] >= llf - ZERO_TOL else float(sd)


def _moment_start(design: GroupedDesign) -> float:
    """The random intercept's relative standard deviation by moments on OLS residuals."""
    p, cross = design.k_fe, design.cross
    beta = design.gls(np.zeros((design.k_re, design.k_re))).fe_params  # OLS's
    xy, residual = np.r_[0:p, p + design.k_re], np.r_[-beta, 1.0]
    sizes = cross[:, p, p]
    sums = cross[:, p, xy] @ residual  # per group 1'e_i
    squares = np.einsum("i,gij,j->g", residual, cross[:, xy][:, :, xy], residual)  # e_i'e_i
    within = np.sum(squares - sums**2 / sizes) / max(design.n_obs - len(sizes), 1)
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
    """REML's global maximum and the GLS values there, errors by ``cov_type``; ``scales``
    unscale the random effects; ``result(cov_rel)`` builds statsmodels' result (not at a
    boundary maximum).

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> fit = mixed_fit(design, np.ones(1), ["Intercept", "position"], 16, cov_type="cluster")
    >>> fit.estimate.size, fit.df
    (2, 15.0)
    """
    cov_rel, converged, notes = reml_maximum(design)
    point, fields = design.fixed_effects(
        cov_rel, terms, n_groups, cov_type=cov_type, model_df=np.inf
    )
    cov_re = point.scale * np.outer(scales, scales) * cov_rel
    n_params = design.k_fe + design.k_re * (design.k_re + 1) // 2 + 1
    finite = np.isfinite(fields["estimate"]).all() and np.isfinite(fields["std_error"]).all()
    slope = design.k_re == 2
    return Estimate(
        **fields,
        converged=converged and bool(finite),
        stats={
            **fit_stats(point.llf_reml, n_params, design.n_obs, point.scale),
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
    """statsmodels' REML (ML where not ``reml``) fit of ``formula``, a random intercept
    (and slope on position / sd(position)) per sequence, started at ``cov_rel``.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> result = mixed_result(rows, "log_norm ~ position", False, np.array([[0.5]]))
    >>> result.fe_params.size, result.fe_params.index[-1]
    (2, 'position')
    """
    if random_slope:
        data = data.assign(position_sd=data["position"] / data["position"].std())
    re_formula = "~position_sd" if random_slope else None
    model = MixedLM.from_formula(formula, data, groups="sequence", re_formula=re_formula)
    # On a singular covariance statsmodels' likelihood is wrong: the diagonal is floored.
    factor = np.linalg.cholesky(cov_rel + 1e-12 * np.eye(len(cov_rel)))
    np.fill_diagonal(factor, np.maximum(np.diag(factor), START_FLOOR))
    with warnings.catch_warnings():
        # In the outcome's units, whatever the residual variance: the glance's ``boundary`` is.
        warnings.filterwarnings("ignore", "The MLE may be on the boundary", ConvergenceWarning)
        start = factor[np.tril_indices(len(cov_rel))]
        return model.fit(reml=reml, method=OPTIMIZERS, start_params=start)


def cluster_covariance(
    design: GroupedDesign, cov_rel: np.ndarray, fe_params: np.ndarray, xwx_inv: np.ndarray
) -> np.ndarray:
    """The CR1 sandwich of the GLS fixed effects at ``cov_rel`` by group, with Stata's factor
    G/(G-1) (N-1)/(N-K) (clubSandwich's ``"CR1S"``); ``xwx_inv``: (sum X_g'W_gX_g)^-1.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> point = design.gls(np.array([[0.5]]))
    >>> cluster_covariance(design, np.array([[0.5]]), point.fe_params, point.xwx_inv).shape
    (2, 2)
    """
    n_obs, k = design.n_obs, design.k_fe
    scores = design._weighted(cov_rel)[1][:, :k] @ np.r_[-fe_params, 1.0]  # X_g'W_g e_g
    n_groups = len(scores)
    factor = n_groups / (n_groups - 1) * (n_obs - 1) / (n_obs - k)
    return factor * xwx_inv @ (scores.T @ scores) @ xwx_inv


def _intercept_terms(design: GroupedDesign, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per group at ``theta`` (as ``ml_scores``): n_i, X_i'1, 1'e_i, d_i, X_i'W_ie_i, e_i'W_ie_i."""
    p, cross = design.k_fe, design.cross
    xy, residual, tau = np.r_[0:p, p + 1], np.r_[-theta[:p], 1.0], theta[p + 1]
    size, one_x = cross[:, p, p], cross[:, p, :p]
    one_e = cross[:, p, xy] @ residual
    inner = 1 + tau * size
    shrink = tau / inner  # W_i = I - shrink_i 1 1'
    xwe = cross[:, :p, xy] @ residual - (shrink * one_e)[:, None] * one_x
    ewe = np.einsum("i,gij,j->g", residual, cross[:, xy][:, :, xy], residual) - shrink * one_e**2
    return size, one_x, one_e, inner, xwe, ewe


def ml_scores(design: GroupedDesign, theta: np.ndarray) -> np.ndarray:
    """Per group, the likelihood's scores of a random-intercept model at ``theta`` = (b, s2,
    t), V_i = s2 (I + t 1 1'): shape (groups, k_fe + 2)."""
    scale = theta[design.k_fe]
    size, _, one_e, inner, xwe, ewe = _intercept_terms(design, theta)
    return np.column_stack(
        [
            xwe / scale,
            -size / (2 * scale) + ewe / (2 * scale**2),
            -size / (2 * inner) + one_e**2 / (2 * scale * inner**2),
        ]
    )


def ml_hessian(design: GroupedDesign, theta: np.ndarray) -> np.ndarray:
    """The Jacobian of the sum of ``ml_scores`` at ``theta`` in closed form: the likelihood's
    Hessian, shape (k_fe + 2, k_fe + 2).

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> ml_hessian(replace(design, ml=True), np.array([1.0, -0.02, 0.1, 0.5])).shape
    (4, 4)
    """
    p, scale, tau = design.k_fe, theta[design.k_fe], theta[design.k_fe + 1]
    size, one_x, one_e, inner, xwe, ewe = _intercept_terms(design, theta)
    change = 1 / inner**2
    xwe, ewe = xwe.sum(axis=0), ewe.sum()
    xwx = design.cross[:, :p, :p].sum(axis=0) - (tau / inner * one_x.T) @ one_x
    hessian = np.empty((p + 2, p + 2))
    hessian[:p, :p] = -xwx / scale
    hessian[:p, p] = hessian[p, :p] = -xwe / scale**2
    hessian[:p, p + 1] = hessian[p + 1, :p] = -(change * one_e) @ one_x / scale
    hessian[p, p] = size.sum() / (2 * scale**2) - ewe / scale**3
    hessian[p, p + 1] = hessian[p + 1, p] = -(change * one_e**2).sum() / (2 * scale**2)
    hessian[p + 1, p + 1] = (size**2 * change / 2 - size * one_e**2 / (scale * inner**3)).sum()
    return hessian


def stacked_covariance(design: GroupedDesign, cov_rel: np.ndarray, point: GLS) -> np.ndarray:
    """The fixed effects' block of A^-1 (sum_g c_g c_g') A^-T, the sandwich by group over a
    random-intercept model's ML fixed effects and variance components, with Mancl and
    DeRouen's scores c_g = F (F - F_g)^-1 s_g (s_g: ``ml_scores``, F_g: the Fisher information,
    A: ``ml_hessian``); at zero variance, over the fixed effects alone (CR3).

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> y, groups = rows["log_norm"].to_numpy(), rows["sequence"]
    >>> design = replace(GroupedDesign.of(x, x[:, :1], y, groups), ml=True)
    >>> cov_rel = reml_maximum(design)[0]
    >>> stacked_covariance(design, cov_rel, design.gls(cov_rel)).shape
    (2, 2)
    """
    if not (design.ml and design.k_re == 1):
        raise ValueError("stacked_covariance needs an ML design with a random intercept alone")
    k, scale, tau = design.k_fe, point.scale, cov_rel[0, 0]
    used = slice(0, k + 2 if cov_rel.any() else k)
    theta = np.r_[point.fe_params, scale, tau]
    scores = ml_scores(design, theta)[:, used]
    jacobian = ml_hessian(design, theta)
    # F_g, block diagonal.
    size, one_x, _, inner, _, _ = _intercept_terms(design, theta)
    xwx = design.cross[:, :k, :k] - np.einsum("g,gi,gj->gij", tau / inner, one_x, one_x)
    information = np.zeros((len(size), k + 2, k + 2))
    information[:, :k, :k] = xwx / scale
    information[:, k, k] = size / (2 * scale**2)
    information[:, k, k + 1] = information[:, k + 1, k] = size / (2 * scale * inner)
    information[:, k + 1, k + 1] = (size / inner) ** 2 / 2
    information = information[:, used, used]
    total = information.sum(axis=0)
    corrected = np.linalg.solve(total - information, scores[:, :, None])[:, :, 0] @ total
    bread = np.linalg.inv(jacobian[used, used])
    return (bread @ corrected.T @ corrected @ bread.T)[:k, :k]


def slope_test(slope: GroupedDesign) -> tuple[float, float]:
    """The likelihood-ratio test of the random slope of ``slope`` (an ML design) against its
    intercept alone, and its p-value on the 50:50 mixture of chi-square(1) and (2).

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x, rows["log_norm"].to_numpy(), rows["sequence"])
    >>> lr, p = slope_test(replace(design, ml=True))
    >>> bool(lr >= 0 and 0 <= p <= 1)
    True
    """
    if not slope.ml or slope.k_re != 2:
        raise ValueError("slope_test needs an ML design with a random intercept and slope")
    intercept = slope.intercept_only()
    sd = np.sqrt(reml_maximum(intercept)[0][0, 0])
    null = intercept.gls(np.array([[sd * sd]])).llf_reml
    # One climb on the slope centred (the same maximum, easier to climb), from the null's
    # intercept sd and a small slope sd (at a zero element of L and the one below it the
    # gradient in it vanishes).
    p, centre = slope.k_fe, np.eye(slope.cross.shape[1])
    centre[p + 1, p] = -slope.cross[:, p, p + 1].sum() / slope.n_obs  # minus the slope's mean
    start = [max(sd, SLOPE_START), 0.0, SLOPE_START]
    alternative = -_climb(replace(slope, cross=centre @ slope.cross @ centre.T), start).fun
    lr = max(2 * (alternative - null), 0.0)
    return lr, float(0.5 * chi2.sf(lr, 1) + 0.5 * chi2.sf(lr, 2))


def reml_maximum(design: GroupedDesign) -> tuple[np.ndarray, bool, list[str]]:
    """The relative random-effects covariance to report: REML's (ML's) global maximum, or
    zero where OLS fits the outcome exactly; whether the search converged; the boundary notes.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> cov_rel, converged, notes = reml_maximum(design)
    >>> cov_rel.shape, converged
    ((1, 1), True)
    """
    criterion = "the likelihood" if design.ml else "REML"
    ols = "the boundary fit (GLS at zero variance, i.e. OLS) is reported"
    zero, total = np.zeros((design.k_re, design.k_re)), design.cross.sum(axis=0)
    z, y = design.k_fe, design.k_fe + design.k_re
    rss = design.gls(zero).scale * (design.n_obs if design.ml else design.n_obs - design.k_fe)
    if rss <= EXACT_TOL * (total[y, y] - total[z, y] ** 2 / design.n_obs):  # about the mean
        cov_rel, converged = zero, True
        note = f"the fixed effects fit the outcome exactly (to rounding), so {criterion} is "
        note += f"rounding noise: {ols}"
    else:
        cov_rel, converged = _search(design)
        if not cov_rel.any():
            note = f"zero random-effect variance is {criterion}'s global maximum: {ols}"
        elif np.linalg.eigvalsh(cov_rel).min() < STATSMODELS_SINGULAR_TOL:
            note = f"{criterion}'s maximum has a singular random-effects covariance (on the "
            note += "boundary), where MixedLM's optimiser does not land: the GLS values there are "
            note += "reported"
        else:
            return cov_rel, converged, []
    return cov_rel, converged, [f"{note}, MixedLM's optimiser not run"]
