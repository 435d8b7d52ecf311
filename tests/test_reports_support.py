"""Hand-made tables in the ``models`` stage's schema, for testing reports without it.

Holds ``grouped_frame``: simulated frames of two models x two sites, with their ``model``
and ``site`` category columns; ``site_frame``: one model's texts measured at ``attn``, ``mlp``
and ``resid``, token by token; and ``fake_tables``: per-layer numpy least-squares fits of a
simulated frame, laid out as
``models.position_trend``/``models.lag_effects``/``models.glance`` lay theirs out (standard
errors cluster-robust by sequence). The trend's ``mixed`` rows copy ``ols``; the lag
methods are ``ols`` (pooled), ``initial_conditions`` (the pooled regression with
``position`` and the text's first two log norms ``y1``, ``y2`` added) and ``gmm``
(``initial_conditions``' lag terms on the texts of 5 tokens or more, wider errors), with
``gmm``'s glance rows carrying Hansen J and AR(2) tests. Fits can be marked as not
converged (trend ``mixed``, lag ``initial_conditions``), and layers where ``gmm``'s tests
reject or where it disagrees with ``initial_conditions`` can be planted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from attnmag.models.tidy import TIDY_COLUMNS
from tests.simulate import simulated_frame

GMM_MIN_LENGTH = 5


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    scaled = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(scaled, 1.0)
    return out


def _fit(y, x, groups, names, *, clustered, conf_level, intercept=True):
    design = np.column_stack(([np.ones(len(y))] if intercept else []) + list(x))
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


def _row(row: dict, *, estimate: float, std_error: float) -> dict:
    """``row`` with a new estimate and standard error, and the statistic, p and CI they give."""
    quantile = stats.t.ppf(0.5 + row["conf_level"] / 2, row["df"])
    statistic = estimate / std_error
    return dict(
        row,
        estimate=estimate,
        std_error=std_error,
        statistic=statistic,
        p_value=2 * stats.t.sf(abs(statistic), row["df"]),
        conf_low=estimate - quantile * std_error,
        conf_high=estimate + quantile * std_error,
    )


def _initial_conditions(rows: pd.DataFrame, first: pd.DataFrame, *, conf_level: float):
    initial = first.reindex(rows["sequence"]).to_numpy()
    return _fit(
        rows["log_norm"].to_numpy(),
        [
            rows["lag1"].to_numpy(),
            rows["lag2"].to_numpy(),
            rows["position"].to_numpy(float),
            initial[:, 0],
            initial[:, 1],
        ],
        rows["sequence"].to_numpy(),
        ["Intercept", "lag1", "lag2", "position", "y1", "y2"],
        clustered=True,
        conf_level=conf_level,
    )


def _lag_fits(part: pd.DataFrame, *, conf_level: float, shift: float) -> dict:
    """The three lag methods' fits of one layer's rows.

    ``gmm`` takes ``initial_conditions``' lag1, lag2 and position estimates on the texts of
    ``GMM_MIN_LENGTH`` tokens or more, with 2.4 times their standard errors; ``shift`` moves
    its lag-1 by that many of its standard errors.
    """
    lagged = part[part["position"] >= 3]
    first = part[part["position"].isin([1, 2])].pivot(
        index="sequence", columns="position", values="log_norm"
    )
    fits = {
        "ols": _fit(
            lagged["log_norm"].to_numpy(),
            [lagged["lag1"].to_numpy(), lagged["lag2"].to_numpy()],
            lagged["sequence"].to_numpy(),
            ["Intercept", "lag1", "lag2"],
            clustered=True,
            conf_level=conf_level,
        ),
        "initial_conditions": _initial_conditions(lagged, first, conf_level=conf_level),
    }
    length = lagged.groupby("sequence")["position"].transform("max") + 1
    rows, r2 = _initial_conditions(lagged[length >= GMM_MIN_LENGTH], first, conf_level=conf_level)
    gmm = []
    for row in rows[1:4]:
        se = 2.4 * row["std_error"]
        estimate = row["estimate"] + (shift * se if row["term"] == "lag1" else 0.0)
        gmm.append(_row(row, estimate=estimate, std_error=se))
    fits["gmm"] = (gmm, r2)
    return fits


def fake_tables(
    frame: pd.DataFrame,
    *,
    trend_methods=("aggregate", "ols", "mixed"),
    lag_methods=("ols", "initial_conditions", "gmm"),
    max_position: int = 30,
    unconverged: tuple[int, ...] = (),
    conf_level: float = 0.95,
    gmm_rejects: tuple[int, ...] = (),
    gmm_apart: tuple[int, ...] = (),
) -> dict[str, pd.DataFrame]:
    """``position_trend``, ``lag_effects`` and ``glance`` tables for ``frame``.

    ``unconverged``: layers whose trend ``mixed`` and lag ``initial_conditions`` fits are
    marked not converged; ``gmm_rejects``: layers where gmm's Hansen J and AR(2) tests
    reject (p = 0.001; elsewhere 0.5 and 0.4); ``gmm_apart``: layers where gmm's lag-1
    estimate is moved 5 of its standard errors away from its own fit.
    """
    trend_rows, lag_rows, glance_rows = [], [], []
    for layer, part in frame.groupby("layer"):
        window = part[part["position"].between(1, max_position)]
        fits = {}
        means = window.groupby("position")["norm"].mean()
        fits[("position_trend", "aggregate")] = _fit(
            np.log(means.to_numpy(np.float64)),
            [means.index.to_numpy(float)],
            None,
            ["Intercept", "position"],
            clustered=False,
            conf_level=conf_level,
        )
        fits[("position_trend", "ols")] = _fit(
            window["log_norm"].to_numpy(),
            [window["position"].to_numpy(float)],
            window["sequence"].to_numpy(),
            ["Intercept", "position"],
            clustered=True,
            conf_level=conf_level,
        )
        fits[("position_trend", "mixed")] = fits[("position_trend", "ols")]
        lag_fits = _lag_fits(part, conf_level=conf_level, shift=5.0 * (layer in gmm_apart))
        fits.update({("lag_effects", m): fit for m, fit in lag_fits.items()})
        for (fit, method), (rows, r2) in fits.items():
            wanted = trend_methods if fit == "position_trend" else lag_methods
            if method not in wanted:
                continue
            converged = not (method in ("mixed", "initial_conditions") and layer in unconverged)
            target = trend_rows if fit == "position_trend" else lag_rows
            target += [
                dict(row, fit=fit, method=method, layer=layer, converged=converged) for row in rows
            ]
            record = dict(
                fit=fit,
                method=method,
                layer=layer,
                n_obs=rows[0]["n_obs"],
                n_groups=rows[0]["n_groups"],
                r2=r2 if method in ("aggregate", "ols") else np.nan,
                converged=converged,
                seconds=0.01,
                warnings="" if converged else "ConvergenceWarning: MLE may be on the boundary",
            )
            if method == "gmm":
                rejects = layer in gmm_rejects
                record.update(
                    hansen_j=18.5 if rejects else 3.36,
                    hansen_df=4.0,
                    hansen_p=0.001 if rejects else 0.5,
                    ar2_statistic=3.29 if rejects else 0.84,
                    ar2_p=0.001 if rejects else 0.4,
                    n_instruments=8.0,
                )
            glance_rows.append(record)
    out = {}
    for name, rows in (("position_trend", trend_rows), ("lag_effects", lag_rows)):
        table = pd.DataFrame(rows)
        table["p_adjusted"] = table.groupby(["method", "term"])["p_value"].transform(
            lambda p: _holm(p.to_numpy())
        )
        out[name] = table[TIDY_COLUMNS]
    out["glance"] = pd.DataFrame(glance_rows)
    return out


def grouped_frame(n_sequences: int = 30, n_layers: int = 2) -> pd.DataFrame:
    """Models ``small`` and ``large`` x sites ``attn`` and ``mlp``, as category columns.

    Each model's texts come from its own seed (so the models' lengths differ, as their
    tokenisers would make them); the ``mlp`` norms are three times the ``attn`` ones and the
    ``large`` model's are 0.5 larger.
    """
    parts = []
    for model, shift, seed in (("small", 0.0, 7), ("large", 0.5, 8)):
        for site, scale in (("attn", 1.0), ("mlp", 3.0)):
            part = simulated_frame(n_sequences, n_layers, length=(3, 10), lag1=0.3, seed=seed)
            part["norm"] = (part["norm"] * scale + shift).astype(np.float32)
            part["log_norm"] = np.log(part["norm"].astype(np.float64))
            parts.append(part.assign(model=model, site=site))
    out = pd.concat(parts, ignore_index=True)
    out["model"] = pd.Categorical(out["model"], categories=["small", "large"])
    out["site"] = pd.Categorical(out["site"], categories=["attn", "mlp"])
    return out


def site_frame(n_sequences: int = 30, n_layers: int = 2, *, seed: int = 9) -> pd.DataFrame:
    """Sites ``attn``, ``mlp`` and ``resid`` at the same tokens of the same texts.

    ``resid`` is ten times the simulated norm, ``attn`` half of it and ``mlp`` twice it, each
    times its own log-normal noise per token, so ratios vary from token to token.
    """
    base = simulated_frame(n_sequences, n_layers, length=(3, 10), lag1=0.3, seed=seed)
    rng = np.random.default_rng(seed)
    parts = []
    for site, scale in (("attn", 0.5), ("mlp", 2.0), ("resid", 10.0)):
        noise = np.exp(rng.normal(0.0, 0.3, len(base)))
        norm = (base["norm"].to_numpy(np.float64) * scale * noise).astype(np.float32)
        parts.append(base.assign(site=site, norm=norm, log_norm=np.log(norm.astype(np.float64))))
    out = pd.concat(parts, ignore_index=True)
    out["site"] = pd.Categorical(out["site"], categories=["attn", "mlp", "resid"])
    return out
