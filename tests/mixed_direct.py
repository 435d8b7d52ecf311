"""One layer's mixed fit straight from its rows, for tests and ``benchmarks/reml.py``.

``fit_mixed`` builds statsmodels' ``MixedLM`` design for ``formula`` with a random intercept
(and optionally a random slope on position) per ``sequence``, and fits it with the library's
``models.mixed.mixed_fit``: an independent route to the per-sequence cross products that
``models.fit`` and the named fits compute by SQL. ``reml_gradient`` is REML's derivative
for any number of random effects, the reference for ``mixed._two_effects``' closed form.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from attnmag.models.checks import check_options
from attnmag.models.mixed import GroupedDesign, mixed_fit, mixed_result
from attnmag.models.tidy import Estimate


def fit_mixed(
    data: pd.DataFrame, formula: str, *, random_slope: bool = False, cov_type: str = "cluster"
) -> Estimate:
    """REML fit of ``formula`` on one layer's ``data`` (``mixed_fit``'s ``cov_type``); the
    random slope is fitted on position / sd(position), as ``mixed_result`` does, and
    reported unscaled; ``result`` builds statsmodels' results object (``mixed_result``).
    """
    check_options("fit_mixed", "mixed", ("mixed",), 0.95, cov_type)
    spread = float(data["position"].std()) if random_slope else 1.0
    scaled = data.assign(position_sd=data["position"] / spread)
    groups = data["sequence"].to_numpy()
    re_formula = "~position_sd" if random_slope else None
    model = smf.mixedlm(formula, scaled, groups=groups, re_formula=re_formula)
    design = GroupedDesign.of(model.exog, model.exog_re, model.endog, groups)
    return mixed_fit(
        design,
        np.array([1.0, 1.0 / spread][: design.k_re]),
        list(model.exog_names),
        len(model.group_labels),
        cov_type=cov_type,
        result=partial(mixed_result, data, formula, random_slope),
    )


def reml_gradient(design: GroupedDesign, cov_rel: np.ndarray, point=None) -> np.ndarray:
    """The derivative of ``design``'s REML (scale profiled out) with respect to ``cov_rel``;
    of the likelihood where ``design.ml``: a general-q reference for ``mixed._two_effects``.

    ``point`` is ``design.gls(cov_rel)``, where the caller has it already. With
    H = (X'WX)^-1, u_i = Z_i' W_i e_i and the REML scale s2, it is
    -(sum_i Z_i'W_iZ_i - sum_i Z_i'W_iX_i H X_i'W_iZ_i - sum_i u_i u_i' / s2) / 2, the
    derivatives of the log determinants and of the weighted residual sum of squares; the
    likelihood's lacks the H term (no log det(X'WX)), and s2 is its own scale.
    """
    p, q, cross = design.k_fe, design.k_re, design.cross
    z = slice(p, p + q)
    zz = cross[:, z, z]
    solved = np.linalg.solve(np.eye(q) + cov_rel @ zz, cov_rel @ cross[:, z, :])
    zw = cross[:, z, :] - zz @ solved  # Z_i' W_i [X_i | Z_i | y_i]
    point = design.gls(cov_rel) if point is None else point
    zwx, zwz, zwy = zw[:, :, :p], zw[:, :, z], zw[:, :, p + q]
    u = zwy - zwx @ point.fe_params
    fixed = 0.0 if design.ml else np.einsum("gqk,kl,grl->qr", zwx, point.xwx_inv, zwx)
    return -0.5 * (zwz.sum(axis=0) - fixed - u.T @ u / point.scale)
