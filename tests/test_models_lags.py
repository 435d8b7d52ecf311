"""The lag estimators: their rows, their checks, lme4 for the default, and simulation coverage.

The coverage tests draw 400 data sets from the dynamic model of ``tests/simulate_lags.py``
(AR(2) within texts, lag-1 0.4 and lag-2 0.1, a text effect with sd equal to the residual
sd, a position trend, 150 texts with lengths like the corpus's: median 23, 4-68) and count
how often the 95% intervals of lag1 and lag2 cover the truth. Monte Carlo error: at a
true coverage of 95% the binomial sd of the count's share is 1.1 points, so [0.92, 0.98]
is about +-2.7 sd; a coverage of 0.5 or less, which pooled OLS shows for lag1, is many sd
away. Each of 8 seeded frames holds 50 independent data sets as its layers.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.tools.numdiff import approx_fprime, approx_hess3

from attnmag import models
from attnmag.errors import AttnmagError
from attnmag.models.tidy import (
    GMM_GLANCE_COLUMNS,
    LAG_GLANCE_COLUMNS,
    LEADING_GLANCE_COLUMNS,
    MIXED_GLANCE_COLUMNS,
)
from tests.rscript import needs_r, run_r
from tests.simulate_burn_in import burn_in_frame
from tests.simulate_lags import dynamic_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRUTH = {"lag1": 0.4, "lag2": 0.1}
N_FRAMES, N_DATA_SETS = 8, 50  # 400 simulated data sets


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Two layers of 60 texts, a fifth of them 4-6 tokens long."""
    return dynamic_frame(60, 2, short_share=0.2, seed=5)


def test_methods_and_the_default():
    assert models.METHODS["lag_effects"] == ("ols", "initial_conditions", "gmm")
    assert "initial_conditions" in models.checks.MIXED_METHODS


def with_initial_conditions(rows: pd.DataFrame, *, first: int) -> pd.DataFrame:
    """``rows`` (positions ``first + 2`` on), sorted, with ``y1`` and ``y2``: each text's
    ``log_norm`` at positions ``first`` and ``first + 1``, its first row's lags."""
    out = rows.sort_values(["sequence", "position"]).reset_index(drop=True)
    starts = out.groupby("sequence")[["lag2", "lag1"]].transform("first")
    return out.assign(y1=starts["lag2"], y2=starts["lag1"])


@pytest.mark.parametrize("first_position", [1, 0])
def test_initial_conditions_are_the_texts_first_two_used_levels(frame, first_position):
    first = first_position
    layer = frame[frame.layer == 1]
    rows = layer.loc[layer.position >= first + 2, ["sequence", "position", "log_norm"]]
    rows = rows.assign(
        lag1=layer.loc[rows.index, "lag1"], lag2=layer.loc[rows.index, "lag2"]
    ).sample(frac=1, random_state=0)  # any row order
    out = with_initial_conditions(rows, first=first)
    level = layer.set_index(["sequence", "position"]).log_norm
    for column, position in (("y1", first), ("y2", first + 1)):
        at = pd.MultiIndex.from_arrays([out.sequence, np.full(len(out), position)])
        np.testing.assert_array_equal(out[column], level.loc[at])
    assert out.position.min() == first + 2 and len(out) == len(rows)
    table = models.lag_effects(frame, first_position=first_position, layers=[1], n_jobs=1).tidy
    assert table.term.tolist() == ["Intercept", "lag1", "lag2", "position", "y1", "y2"]
    assert table.n_obs.iloc[0] == len(rows)
    # The fit from SQL sums is statsmodels' ML fit of those rows where statsmodels converges,
    # and reaches at least its likelihood where it does not.
    formula = "log_norm ~ lag1 + lag2 + position + y1 + y2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = smf.mixedlm(formula, out, groups=out["sequence"]).fit(reml=False)
    assert models.glance(table).loglik.iloc[0] >= result.llf - 1e-8
    if result.converged:
        np.testing.assert_allclose(table.estimate, result.fe_params, rtol=1e-4)


def test_gmm_uses_texts_of_five_tokens_or_more_and_their_differenced_rows(frame):
    table = models.lag_effects(frame, method="gmm").tidy
    summary = models.glance(table)
    lengths = frame[frame.layer == 0].groupby("sequence").size()
    assert (lengths < 5).any()
    assert (summary.n_groups == (lengths >= 5).sum()).all()
    assert (summary.n_obs == (lengths[lengths >= 5] - 4).sum()).all()
    assert list(summary.columns) == [
        *GMM_GLANCE_COLUMNS[:-2],
        *LEADING_GLANCE_COLUMNS,
        *GMM_GLANCE_COLUMNS[-2:],
    ]
    assert summary.hansen_df.eq(3).all() and summary.n_instruments.eq(6).all()
    assert summary[["hansen_p", "ar2_p"]].apply(lambda p: p.between(0, 1)).all().all()
    assert table.term.tolist() == ["lag1", "lag2", "position"] * 2


def test_glance_of_initial_conditions_is_a_mixed_glance_with_the_slope_test(frame):
    summary = models.lag_effects(frame, layers=[0], n_jobs=1).glance
    assert list(summary.columns) == [
        *LAG_GLANCE_COLUMNS[:-2],
        *LEADING_GLANCE_COLUMNS,
        *LAG_GLANCE_COLUMNS[-2:],
    ]
    assert set(MIXED_GLANCE_COLUMNS) < set(LAG_GLANCE_COLUMNS)
    assert summary.lag1_slope_lr.ge(0).all() and summary.lag1_slope_p.between(0, 1).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: models.lag_effects(f, method="gmm", cov_type="model"), "needs a mixed method"),
        (lambda f: models.lag_effects(f, method="ols", cov_type="model"), "needs a mixed method"),
        (lambda f: models.lag_effects(f, method="gmm", cov_type="cr2"), "'cr2' needs one of"),
        (lambda f: models.position_trend(f, method="aggregate", cov_type="cr2"), "'cr2' needs"),
        (lambda f: models.lag_effects(f, cov_type="hc3"), "cov_type must be one of"),
        (lambda f: models.position_trend(f, cov_type="hc3"), "cov_type must be one of"),
        (lambda f: models.lag_effects(f, method="mixed"), "has no method 'mixed'"),
        (
            lambda f: models.lag_effects(f[f.sequence < 6], method="gmm"),
            "layer 0 has 6 texts of at least 5 tokens; method 'gmm' needs at least 7",
        ),
        (
            lambda f: models.lag_effects(f[(f.sequence != 3) | (f.position != 5)]),
            "sequence 3 does not have every position from 3 on",
        ),
        (
            lambda f: models.lag_effects(f[(f.sequence != 3) | (f.position != 5)], method="gmm"),
            "sequence 3 does not have every position from 3 on",
        ),
    ],
)
def test_bad_input_is_one_clear_error(frame, call, message):
    shorts = frame.groupby("sequence").position.max() < 4
    assert not shorts[:6].any()  # the first six texts all have 5 tokens or more
    with pytest.raises(AttnmagError, match=message):
        call(frame)


R_CODE = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
null <- lmer(log_norm ~ lag1 + lag2 + position + y1 + y2 + (1 | sequence), data = d,
             REML = FALSE)
slope <- lmer(log_norm ~ lag1 + lag2 + position + y1 + y2 + (1 + lag1 | sequence), data = d,
              REML = FALSE)
lr <- anova(null, slope)$Chisq[2]
p <- 0.5 * pchisq(lr, 1, lower.tail = FALSE) + 0.5 * pchisq(lr, 2, lower.tail = FALSE)
out <- data.frame(estimate = sprintf("%.17g", fixef(null)),
                  model = sprintf("%.17g", sqrt(diag(as.matrix(vcov(null))))),
                  loglik = sprintf("%.17g", as.numeric(logLik(null))),
                  lr = sprintf("%.17g", lr), p = sprintf("%.17g", p))
write.csv(out, args[2], row.names = FALSE)
"""


def dense_stacked_errors(
    rows: pd.DataFrame, theta: np.ndarray, *, alone: bool = False
) -> np.ndarray:
    """The fixed effects' errors of the sandwich over ML's estimating equations with Mancl and
    DeRouen's scores, written out densely: each text's log-likelihood with V = s2 (I + t 1 1')
    as a matrix, its scores and the Hessian of their sum by finite differences, each text's
    Fisher information from tr(V^-1 dV V^-1 dV) / 2 and X'V^-1 X, and each score multiplied
    by (I - F_g F^-1)^-1. ``theta`` = (fixed effects, s2, t); ``alone``: the fixed effects'
    equations alone (the variance components taken as known)."""
    names = ["lag1", "lag2", "position", "y1", "y2"]
    texts = [
        (np.column_stack([np.ones(len(part)), part[names]]), part["log_norm"].to_numpy())
        for _, part in rows.groupby("sequence")
    ]
    k = len(names) + 1

    def covariance(at: np.ndarray, n: int) -> np.ndarray:
        return at[k] * (np.eye(n) + at[k + 1] * np.ones((n, n)))

    def loglik(at: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        v, e = covariance(at, len(y)), y - x @ at[:k]
        return -0.5 * (np.linalg.slogdet(v)[1] + e @ np.linalg.solve(v, e))

    def information(x: np.ndarray) -> np.ndarray:
        n = len(x)
        inverse = np.linalg.inv(covariance(theta, n))
        derivatives = [np.eye(n) + theta[k + 1] * np.ones((n, n)), theta[k] * np.ones((n, n))]
        out = np.zeros((k + 2, k + 2))
        out[:k, :k] = x.T @ inverse @ x
        for i, a in enumerate(derivatives):
            for j, b in enumerate(derivatives):
                out[k + i, k + j] = np.trace(inverse @ a @ inverse @ b) / 2
        return out

    scores = np.array([approx_fprime(theta, loglik, args=t, centered=True) for t in texts])
    hessian = approx_hess3(theta, lambda at: sum(loglik(at, *t) for t in texts))
    fisher = [information(x) for x, _ in texts]
    used = slice(0, k if alone else k + 2)
    total = sum(fisher)[used, used]
    leverages = [f[used, used] @ np.linalg.inv(total) for f in fisher]
    corrected = np.array(
        [
            np.linalg.solve(np.eye(len(total)) - h, s[used])
            for h, s in zip(leverages, scores, strict=True)
        ]
    )
    bread = np.linalg.inv(hessian[used, used])
    return np.sqrt(np.diag(bread @ corrected.T @ corrected @ bread.T))[:k]


@needs_r
def test_initial_conditions_match_lmer_ml_and_its_slope_test_anova(tmp_path):
    """Texts whose lag-1 differs (sd 0.1): lme4's ML fit, and anova's likelihood ratio of a
    random lag1 slope, its p-value from the 50:50 chi-square(1) / chi-square(2) mixture."""
    frame = burn_in_frame(400, 1, sd_lag1=0.1, seed=8)
    rows = frame.loc[frame.position >= 3, ["sequence", "position", "log_norm", "lag1", "lag2"]]
    with_initial_conditions(rows, first=1).to_csv(
        tmp_path / "d.csv", index=False, float_format="%.17g"
    )
    r = run_r(R_CODE, tmp_path / "d.csv")
    fits = models.lag_effects(frame, cov_type="model", n_jobs=1)
    table, summary = fits.tidy, fits.glance.iloc[0]
    np.testing.assert_allclose(table.estimate, r.estimate, rtol=1e-5)
    np.testing.assert_allclose(table.std_error, r.model, rtol=1e-4)
    np.testing.assert_allclose(summary.loglik, r.loglik[0], rtol=1e-8)
    assert summary.lag1_slope_p < 0.05  # the slope is there, and found
    np.testing.assert_allclose(summary.lag1_slope_lr, r.lr[0], rtol=1e-4)
    np.testing.assert_allclose(summary.lag1_slope_p, r.p[0], rtol=1e-3)
    assert (table.df == np.inf).all()


def test_cluster_errors_are_the_sandwich_over_fixed_effects_and_variance_components():
    """The default errors equal the stacked sandwich written out densely, and differ from
    the fixed effects' sandwich alone: the variance components' estimation enters them."""
    frame = burn_in_frame(60, 1, seed=4)
    fits = models.lag_effects(frame, n_jobs=1)
    table, summary = fits.tidy, fits.glance.iloc[0]
    rows = frame.loc[frame.position >= 3, ["sequence", "position", "log_norm", "lag1", "lag2"]]
    scale = summary.sigma**2
    theta = np.r_[table.estimate, scale, summary.var_intercept / scale]
    expected = dense_stacked_errors(with_initial_conditions(rows, first=1), theta)
    np.testing.assert_allclose(table.std_error, expected, rtol=1e-4)
    assert (table.df == 59.0).all()
    alone = dense_stacked_errors(with_initial_conditions(rows, first=1), theta, alone=True)
    assert np.abs(expected[1:4] / alone[1:4] - 1).max() > 0.05


@pytest.fixture(scope="module")
def coverage() -> dict[str, dict[str, float]]:
    """Share of the 400 data sets whose 95% interval covers the truth, by method and term."""
    hits = {method: {term: [] for term in TRUTH} for method in models.METHODS["lag_effects"]}
    for seed in range(N_FRAMES):
        frame = dynamic_frame(150, N_DATA_SETS, seed=seed)
        for method, by_term in hits.items():
            table = models.lag_effects(frame, method=method, n_jobs=2).tidy
            for term, truth in TRUTH.items():
                rows = table[table.term == term]
                assert len(rows) == N_DATA_SETS and rows.converged.all()
                by_term[term].extend((rows.conf_low <= truth) & (truth <= rows.conf_high))
    return {m: {t: float(np.mean(h)) for t, h in by_term.items()} for m, by_term in hits.items()}


@pytest.mark.parametrize("method", ["initial_conditions", "gmm"])
def test_within_text_intervals_cover_the_truth_92_to_98_percent_of_the_time(coverage, method):
    for term, share in coverage[method].items():
        assert 0.92 <= share <= 0.98, f"{method} {term}: coverage {share:.3f}"


def test_pooled_ols_intervals_miss_the_within_text_lag1(coverage):
    """Texts differ in level, so the pooled lag-1 slope is far above the within-text one."""
    assert coverage["ols"]["lag1"] <= 0.5, coverage["ols"]


def test_ar2_is_nan_with_a_note_where_its_variance_estimate_is_not_positive():
    """m2's variance is a difference of terms and can be negative in a finite sample."""
    from attnmag.models import gmm

    products = np.array([2.0])  # one text: residuals 1, 1, 1, 1, two back 0, 0, 1, 1
    lx = np.array([2.0])  # l'X with X a column of ones
    g2 = np.ones((1, 1))
    zx = np.ones((1, 1))
    a2 = np.array([[100.0]])
    covariance = np.array([[1.0]])
    variance = products @ products - 2 * lx @ covariance @ zx.T @ a2 @ (g2.T @ products)
    assert variance + lx @ covariance @ lx < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(gmm._ar2(products, lx, g2, zx, a2, covariance))


def test_a_gmm_fit_without_ar2_says_why_in_glance(monkeypatch):
    from attnmag.models import gmm

    monkeypatch.setattr(gmm, "_ar2", lambda *args: float("nan"))
    summary = models.glance(models.lag_effects(dynamic_frame(60, 1, seed=3), method="gmm"))
    assert summary["ar2_statistic"].isna().all() and summary["ar2_p"].isna().all()
    assert summary["hansen_p"].between(0, 1).all()
    assert (summary["warnings"] == gmm.AR2_UNDEFINED).all()
