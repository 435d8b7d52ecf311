"""Least-squares fits per group.

Holds ``ols_fit`` (OLS from per-sequence cross products, CR1 by sequence as R's
``sandwich::vcovCL(fit, cluster = ~sequence, type = "HC1")`` with t on G - 1 df, CR2, or
classical errors) and ``cluster_ols_result`` (its statsmodels result).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS, RegressionResults

from attnmag.models.mixed import GroupedDesign
from attnmag.models.tidy import Estimate, fit_stats

__all__ = ["cluster_ols_result", "ols_fit"]


def ols_fit(
    design: GroupedDesign,
    terms: Iterable[str],
    n_groups: int,
    *,
    cov_type: str = "cluster",
    rows: Callable[[], pd.DataFrame] | None = None,
    formula: str = "",
) -> Estimate:
    """OLS of the design's fixed effects, CR1 by sequence with t on G - 1 df (or CR2, or
    ``"model"``: classical errors, t on N - K), and statsmodels' glance fields; under CR1
    its result refits ``rows()``.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> x = np.column_stack([np.ones(len(rows)), rows["position"]])
    >>> design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    >>> fit = ols_fit(design, ["Intercept", "position"], 16)
    >>> reference = cluster_ols_result(rows, "log_norm ~ position")
    >>> bool(np.allclose(fit.std_error.to_numpy(), reference.bse.to_numpy()))
    True
    """
    n, k = design.n_obs, design.k_fe
    zero = np.zeros((design.k_re, design.k_re))
    point, fields = design.fixed_effects(zero, terms, n_groups, cov_type=cov_type, model_df=n - k)
    total = design.cross.sum(axis=0)
    rss = point.scale * (n - k)
    spanned = np.linalg.lstsq(total[:k, :k], total[:k, k], rcond=None)[0]
    centred = n - total[:k, k] @ spanned <= 1e-10 * n  # the residual of 1 on X is zero
    tss = total[-1, -1] - (total[k, -1] ** 2 / n if centred else 0.0)
    llf = -n / 2 * (np.log(2 * np.pi) + np.log(rss / n) + 1)
    refit = None if rows is None or cov_type != "cluster" else rows
    return Estimate(
        **fields,
        converged=True,
        stats=fit_stats(llf, k, n, point.scale, r2=1 - rss / tss),
        result=None if refit is None else lambda: cluster_ols_result(refit(), formula),
    )


def cluster_ols_result(data: pd.DataFrame, formula: str) -> RegressionResults:
    """statsmodels' OLS of ``formula`` on one group's rows, CR1 by sequence, t on G - 1 df.

    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> result = cluster_ols_result(rows, "log_norm ~ position")
    >>> result.cov_type, result.df_resid_inference
    ('cluster', 15)
    """
    groups = pd.factorize(data["sequence"])[0]
    return OLS.from_formula(formula, data).fit(
        cov_type="cluster",
        cov_kwds={"groups": groups, "use_correction": True, "df_correction": True},
        use_t=True,
    )
