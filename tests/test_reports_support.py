"""Hand-made tables in the ``models`` stage's schema, for testing reports without it.

Holds ``fake_tables``: per-layer numpy least-squares fits of a simulated frame, laid out as
``models.position_trend``/``models.lag_effects``/``models.glance`` lay theirs out (standard
errors cluster-robust by sequence; the ``mixed`` rows copy ``ols`` and can be marked as not
converged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from attnmag.models.tidy import TIDY_COLUMNS


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    scaled = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(scaled, 1.0)
    return out


def _fit(y, x, groups, names, *, clustered, conf_level):
    design = np.column_stack([np.ones(len(y)), *x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    bread = np.linalg.inv(design.T @ design)
    if clustered:
        codes, g = pd.factorize(groups)[0], len(np.unique(groups))
        scores = np.zeros((g, design.shape[1]))
        np.add.at(scores, codes, design * resid[:, None])
        n, k = design.shape
        cov = bread @ (scores.T @ scores) @ bread * g / (g - 1) * (n - 1) / (n - k)
        df = g - 1
    else:
        df, g = len(y) - design.shape[1], np.nan
        cov = bread * (resid @ resid) / df
    se = np.sqrt(np.diag(cov))
    half = stats.t.ppf(0.5 + conf_level / 2, df) * se
    t = beta / se
    r2 = 1 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))
    rows = [
        dict(
            term=name,
            estimate=b,
            std_error=s,
            statistic=z,
            p_value=2 * stats.t.sf(abs(z), df),
            conf_low=b - h,
            conf_high=b + h,
            df=df,
            n_obs=len(y),
            n_groups=g,
            conf_level=conf_level,
        )
        for name, b, s, z, h in zip(names, beta, se, t, half, strict=True)
    ]
    return rows, r2


def fake_tables(
    frame: pd.DataFrame,
    *,
    trend_methods=("aggregate", "ols", "mixed"),
    lag_methods=("ols", "mixed"),
    max_position: int = 30,
    unconverged: tuple[int, ...] = (),
    conf_level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """``position_trend``, ``lag_effects`` and ``glance`` tables for ``frame``."""
    trend_rows, lag_rows, glance_rows = [], [], []
    for layer, part in frame.groupby("layer"):
        window = part[part["position"].between(1, max_position)]
        lagged = part[part["position"] >= 3]
        fits = {}
        means = window.groupby("position")["norm"].mean()
        fits[("position_trend", "aggregate")] = _fit(
            np.log(means.to_numpy(np.float64)),
            [means.index.to_numpy(float)],
            None,
            ["intercept", "position"],
            clustered=False,
            conf_level=conf_level,
        )
        fits[("position_trend", "ols")] = _fit(
            window["log_norm"].to_numpy(),
            [window["position"].to_numpy(float)],
            window["sequence"].to_numpy(),
            ["intercept", "position"],
            clustered=True,
            conf_level=conf_level,
        )
        fits[("lag_effects", "ols")] = _fit(
            lagged["log_norm"].to_numpy(),
            [lagged["lag1"].to_numpy(), lagged["lag2"].to_numpy()],
            lagged["sequence"].to_numpy(),
            ["intercept", "lag1", "lag2"],
            clustered=True,
            conf_level=conf_level,
        )
        fits[("position_trend", "mixed")] = fits[("position_trend", "ols")]
        fits[("lag_effects", "mixed")] = fits[("lag_effects", "ols")]
        for (model, method), (rows, r2) in fits.items():
            wanted = trend_methods if model == "position_trend" else lag_methods
            if method not in wanted:
                continue
            converged = not (method == "mixed" and layer in unconverged)
            target = trend_rows if model == "position_trend" else lag_rows
            target += [
                dict(row, model=model, method=method, layer=layer, converged=converged)
                for row in rows
            ]
            glance_rows.append(
                dict(
                    model=model,
                    method=method,
                    layer=layer,
                    n_obs=rows[0]["n_obs"],
                    n_groups=rows[0]["n_groups"],
                    r2=r2 if method != "mixed" else np.nan,
                    converged=converged,
                    seconds=0.01,
                    warnings="" if converged else "ConvergenceWarning: MLE may be on the boundary",
                )
            )
    out = {}
    for name, rows in (("position_trend", trend_rows), ("lag_effects", lag_rows)):
        table = pd.DataFrame(rows)
        table["p_adjusted"] = table.groupby(["method", "term"])["p_value"].transform(
            lambda p: _holm(p.to_numpy())
        )
        out[name] = table[TIDY_COLUMNS]
    out["glance"] = pd.DataFrame(glance_rows)
    return out
