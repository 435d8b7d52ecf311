"""The models stage's least-squares fits, tables and checks, against numpy written out here.

``aggregate`` against the classical OLS formula (sigma^2 (X'X)^-1, t on n - 2 df), ``ols``
against the CR1 sandwich by sequence (t on G - 1 df). ``tests/conftest.py`` sets
``HF_HUB_OFFLINE`` before any test module is imported.
"""

import threading

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from attnmag import models
from attnmag.errors import AttnmagError
from attnmag.models.tidy import (
    GLANCE_COLUMNS,
    LEADING_GLANCE_COLUMNS,
    MIXED_GLANCE_COLUMNS,
    TIDY_COLUMNS,
)
from tests.simulate import simulated_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Three layers, lags present, a modest slope (p-values away from 0 and 1)."""
    return simulated_frame(
        60, 3, length=(6, 40), slope=-0.004, lag1=0.2, lag2=0.1, sd_noise=0.3, seed=11
    )


def _trend_rows(frame: pd.DataFrame, layer: int, *, first: int = 1, last: int = 30):
    rows = frame[(frame.layer == layer) & (frame.position >= first) & (frame.position <= last)]
    return rows, np.column_stack([np.ones(len(rows)), rows.position.to_numpy(np.float64)])


def _lag_rows(frame: pd.DataFrame, layer: int, *, first: int = 3):
    rows = frame[(frame.layer == layer) & (frame.position >= first)]
    return rows, np.column_stack([np.ones(len(rows)), rows.lag1, rows.lag2])


def _cr1(x: np.ndarray, y: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and CR1 cluster-robust standard errors, written out."""
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    resid = y - x @ beta
    bread = np.linalg.inv(x.T @ x)
    meat = np.zeros_like(bread)
    labels = np.unique(clusters)
    for label in labels:
        score = x[clusters == label].T @ resid[clusters == label]
        meat += np.outer(score, score)
    n, k = x.shape
    g = len(labels)
    factor = g / (g - 1) * (n - 1) / (n - k)
    return beta, np.sqrt(np.diag(factor * bread @ meat @ bread))


def _by_layer(table: pd.DataFrame, layer: int) -> pd.DataFrame:
    return table[table.layer == layer].set_index("term")


def _classical(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and classical standard errors, sqrt(diag(s^2 (X'X)^-1)), written out."""
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    resid = y - x @ beta
    n, k = x.shape
    s2 = resid @ resid / (n - k)
    return beta, np.sqrt(np.diag(s2 * np.linalg.inv(x.T @ x)))


@pytest.mark.parametrize("conf_level", [0.95, 0.8])
def test_aggregate_is_classical_ols_of_log_mean_norm_with_t_on_n_minus_2(frame, conf_level):
    table = models.position_trend(frame, method="aggregate", conf_level=conf_level).tidy
    for layer in range(3):
        rows, _ = _trend_rows(frame, layer)
        means = rows.groupby("position")["norm"].apply(lambda s: s.to_numpy(np.float64).mean())
        x = np.column_stack([np.ones(len(means)), means.index.to_numpy(np.float64)])
        beta, std_error = _classical(x, np.log(means.to_numpy()))
        got = _by_layer(table, layer)
        assert list(got.index) == ["Intercept", "position"]
        np.testing.assert_allclose(got.estimate, beta, rtol=1e-8)
        np.testing.assert_allclose(got.std_error, std_error, rtol=1e-8)
        t = stats.t(len(means) - 2)
        np.testing.assert_allclose(got.statistic, beta / std_error, rtol=1e-8)
        np.testing.assert_allclose(got.p_value, 2 * t.sf(np.abs(beta / std_error)), rtol=1e-8)
        half = t.ppf(0.5 + conf_level / 2) * std_error
        np.testing.assert_allclose(got.conf_low, beta - half, rtol=1e-8)
        np.testing.assert_allclose(got.conf_high, beta + half, rtol=1e-8)
        assert (got.n_obs == 30).all() and (got.df == 28).all()
        assert (got.n_groups == rows.sequence.nunique()).all()


@pytest.mark.parametrize("model", ["position_trend", "lag_effects"])
def test_ols_equals_lstsq_with_cr1_sandwich_errors_and_t_on_g_minus_1(frame, model):
    fit = getattr(models, model)
    table = fit(frame, method="ols").tidy
    for layer in range(3):
        rows, x = (_trend_rows if model == "position_trend" else _lag_rows)(frame, layer)
        beta, std_error = _cr1(x, rows.log_norm.to_numpy(), rows.sequence.to_numpy())
        got = _by_layer(table, layer)
        terms = (
            ["Intercept", "position"]
            if model == "position_trend"
            else ["Intercept", "lag1", "lag2"]
        )
        assert list(got.index) == terms
        np.testing.assert_allclose(got.estimate, beta, rtol=1e-8)
        np.testing.assert_allclose(got.std_error, std_error, rtol=1e-8)
        g = rows.sequence.nunique()
        assert (
            (got.df == g - 1).all() and (got.n_groups == g).all() and (got.n_obs == len(rows)).all()
        )
        t = stats.t(g - 1)
        np.testing.assert_allclose(got.statistic, beta / std_error, rtol=1e-8)
        np.testing.assert_allclose(got.p_value, 2 * t.sf(np.abs(beta / std_error)), rtol=1e-8)
        np.testing.assert_allclose(got.conf_low, beta - t.ppf(0.975) * std_error, rtol=1e-8)
        np.testing.assert_allclose(got.conf_high, beta + t.ppf(0.975) * std_error, rtol=1e-8)


def test_table_columns_terms_and_holm_across_layers(frame):
    table = models.position_trend(frame, method="ols").tidy
    assert list(table.columns) == TIDY_COLUMNS
    assert (table.fit == "position_trend").all() and (table.method == "ols").all()
    assert table.converged.dtype == bool and table.converged.all()
    for _, rows in table.groupby("term"):
        p = rows.p_value.to_numpy()
        order = np.argsort(p)
        holm = np.minimum(np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)), 1)
        expected = np.empty_like(p)
        expected[order] = holm
        np.testing.assert_allclose(rows.p_adjusted, expected, rtol=1e-12)
    assert (table.p_adjusted >= table.p_value).all()


@pytest.mark.parametrize(
    ("name", "method", "errors"),
    [
        ("position_trend", "ols", True),
        ("position_trend", "aggregate", True),
        ("position_trend", "mixed", False),
        ("lag_effects", "ols", True),
        ("lag_effects", "initial_conditions", False),
    ],
)
def test_results_refit_with_statsmodels_and_join_the_tidy_rows_by_name(frame, name, method, errors):
    """``results[layer]`` is statsmodels' fit of that layer's rows, built when asked for; its
    params joined to the tidy rows by term name (``Intercept`` included) equal the estimates,
    and for OLS and aggregate its standard errors equal theirs. statsmodels' MixedLM errors
    come from the observed information, not lme4's covariance, so only params are compared."""
    fits = getattr(models, name)(frame, method=method, layers=[1], cov_type="cluster")
    result = fits.results[1]
    assert fits.results[1] is result  # built once
    joined = fits.tidy.set_index("term").join(result.params.rename("params"), how="left")
    joined = joined.join(result.bse.rename("bse"), how="left")
    assert not joined["params"].isna().any()
    np.testing.assert_allclose(joined["params"], joined["estimate"], rtol=1e-6, atol=1e-9)
    if errors:
        np.testing.assert_allclose(joined["bse"], joined["std_error"], rtol=1e-9)
    assert models.lag_effects(frame, method="gmm", layers=[1]).results[1] is None


def test_conf_level_sets_the_interval(frame):
    wide = models.lag_effects(frame, method="ols").tidy
    narrow = models.lag_effects(frame, method="ols", conf_level=0.8).tidy
    quantile = stats.t(narrow.df.to_numpy()).ppf(0.9)
    np.testing.assert_allclose(narrow.conf_high - narrow.estimate, quantile * narrow.std_error)
    assert ((narrow.conf_high - narrow.conf_low) < (wide.conf_high - wide.conf_low)).all()


def test_row_selection_rules(frame):
    trend = models.position_trend(frame, method="ols", max_position=10, first_position=0).tidy
    assert (trend.n_obs == (frame[frame.layer == 0].position <= 10).sum()).all()
    lags = models.lag_effects(frame, method="ols", layers=[2]).tidy
    assert lags.layer.unique().tolist() == [2]
    assert (lags.n_obs == (frame[frame.layer == 2].position >= 3).sum()).all()
    lags0 = models.lag_effects(frame, method="ols", first_position=0, layers=[2]).tidy
    assert (lags0.n_obs == (frame[frame.layer == 2].position >= 2).sum()).all()


def test_glance_rows_columns_and_round_trip(frame, tmp_path):
    trend = models.position_trend(frame, method="ols").tidy
    summary = models.glance(trend)
    assert list(summary.columns) == [
        *GLANCE_COLUMNS[:-2],
        *LEADING_GLANCE_COLUMNS,
        *GLANCE_COLUMNS[-2:],
    ]
    assert summary.layer.tolist() == [0, 1, 2]
    assert ((summary.r2 > 0) & (summary.r2 < 1) & (summary.seconds > 0)).all()
    rows, x = _trend_rows(frame, 1)
    resid = rows.log_norm - x @ np.linalg.lstsq(x, rows.log_norm.to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(summary.sigma[1], np.sqrt(resid @ resid / (len(rows) - 2)))
    assert models.glance(trend[trend.layer == 2]).layer.tolist() == [2]
    trend.to_parquet(tmp_path / "trend.parquet")
    pd.testing.assert_frame_equal(
        models.glance(pd.read_parquet(tmp_path / "trend.parquet")), summary
    )
    mixed = models.position_trend(frame, method="mixed", layers=[0], n_jobs=1).tidy
    assert list(models.glance(mixed).columns) == [
        *MIXED_GLANCE_COLUMNS[:-2],
        *LEADING_GLANCE_COLUMNS,
        *MIXED_GLANCE_COLUMNS[-2:],
    ]
    with pytest.raises(AttnmagError, match="carry no glance rows"):
        models.glance(pd.DataFrame(trend))


def test_n_jobs_does_not_change_the_tables():
    frame = simulated_frame(40, 4, length=(8, 30), lag1=0.2, seed=5)
    for model, methods in models.METHODS.items():
        for method in methods:
            one, two = (getattr(models, model)(frame, method=method, n_jobs=n) for n in (1, 2))
            pd.testing.assert_frame_equal(one.tidy, two.tidy, rtol=1e-12)
            pd.testing.assert_frame_equal(
                models.glance(one).drop(columns="seconds"),
                models.glance(two).drop(columns="seconds"),
                rtol=1e-12,
            )


def test_fit_all_in_one_pool_gives_each_methods_own_tables():
    """fit_all's pool (the mixed methods' groups one by one, every other method whole in a
    worker) gives, for every method, the table of that method fitted alone."""
    frame = simulated_frame(40, 4, length=(8, 30), lag1=0.2, seed=5)
    one, two = (models.fit_all(frame, n_jobs=n, progress=False) for n in (1, 2))
    for name, methods in models.METHODS.items():
        alone = models.Fits.concat(
            [getattr(models, name)(frame, method=m, n_jobs=1) for m in methods]
        )
        for fits in (one, two):
            pd.testing.assert_frame_equal(fits[name].tidy, alone.tidy, rtol=1e-12)
        pd.testing.assert_frame_equal(
            one[name].glance.drop(columns="seconds"),
            two[name].glance.drop(columns="seconds"),
            rtol=1e-12,
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: models.position_trend(f, method="lstsq"), "no method 'lstsq'"),
        (lambda f: models.lag_effects(f, method="aggregate"), "no method 'aggregate'"),
        (lambda f: models.position_trend(f, random_slope=True), "random_slope needs"),
        (lambda f: models.position_trend(f, conf_level=95), "conf_level"),
        (lambda f: models.position_trend(f, layers=[7]), r"no layers \[7\]"),
        (lambda f: models.position_trend(f, n_jobs=0), "n_jobs"),
        (lambda f: models.lag_effects(f.drop(columns="lag2")), r"lacks the columns \['lag2'\]"),
        (lambda f: models.position_trend(f, max_position=2), "layer 0 has .* covering 2 positions"),
        (lambda f: models.lag_effects(f[f.sequence == 0]), "layer 0 has .* from 1 sequences"),
    ],
)
def test_bad_input_is_one_clear_error(frame, call, message):
    with pytest.raises(AttnmagError, match=message):
        call(frame)


def test_an_error_in_a_fit_or_in_its_sums_is_raised_and_leaves_no_thread(frame):
    """The sums are queried as the fits need them, on the fits' connection: an error of a
    fit or of the sums is raised as one clear error, and no thread is left behind."""
    broken = frame.copy()
    broken.loc[broken.index[5], "log_norm"] = -np.inf
    with pytest.raises(AttnmagError, match="infinite values"):
        models.fit_all(broken, progress=False)
    gap = frame[frame["position"] != 5]
    with pytest.raises(AttnmagError, match="does not have every position"):
        models.fit_all(gap, trend_methods=["ols"], lag_methods=["gmm"], progress=False)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("attnmag-ahead")]


def test_non_finite_outcome_is_a_clear_error(frame):
    broken = frame.copy()
    broken.loc[broken.index[5], "log_norm"] = -np.inf
    with pytest.raises(AttnmagError, match="infinite values"):
        models.position_trend(broken, method="ols")


def test_first_position_drops_the_leading_positions_from_the_trend(frame):
    trend = models.position_trend(frame, method="ols", layers=[1], first_position=3).tidy
    rows = frame[(frame.layer == 1) & (frame.position >= 3) & (frame.position <= 30)]
    fit = sm.OLS(rows.log_norm, sm.add_constant(rows.position.astype(float))).fit(
        cov_type="cluster", cov_kwds={"groups": rows.sequence.to_numpy()}
    )
    np.testing.assert_allclose(trend.estimate, fit.params.to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(trend.std_error, fit.bse.to_numpy(), rtol=1e-6)
    assert (trend.n_obs == len(rows)).all()


def test_first_position_drops_the_leading_positions_from_the_lags(frame):
    summary = models.glance(models.lag_effects(frame, method="ols", first_position=2, layers=[0]))
    rows = frame[frame.layer == 0]
    # Both lags are used positions: the outcome rows start two positions later.
    assert summary.n_obs.tolist() == [(rows.position >= 4).sum()]


@pytest.mark.parametrize("bad", [-1, 2.5, True, "1", 30])
def test_first_position_must_be_a_whole_number_below_the_last(frame, bad):
    with pytest.raises(AttnmagError, match="first_position must be a whole number") as error:
        models.position_trend(frame, method="ols", first_position=bad, max_position=30)
    assert "\n" not in str(error.value)
    if bad != 30:
        with pytest.raises(AttnmagError, match="first_position must be a whole number"):
            models.lag_effects(frame, method="ols", first_position=bad)


@pytest.mark.parametrize("bad", [-1, 2.5, "30", None])
def test_max_position_must_be_a_whole_number(frame, bad):
    with pytest.raises(AttnmagError, match="max_position must be a whole number") as error:
        models.position_trend(frame, method="ols", max_position=bad)
    assert "\n" not in str(error.value)
