"""The mixed models: GLS algebra, recovery of known parameters, boundary and failed fits."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.tools.numdiff import approx_fprime_cs

from attnmag import models
from attnmag.errors import AttnmagError
from attnmag.models import mixed
from attnmag.models.mixed import GroupedDesign, is_boundary
from tests.mixed_direct import fit_mixed
from tests.simulate import simulated_frame
from tests.simulate_burn_in import burn_in_frame


def _dense_gls(x, z, y, groups, cov_rel):
    """sum_i X_i' W_i X_i and X_i' W_i y with W_i = (I + Z_i P Z_i')^-1 inverted per group."""
    xwx, xwy = 0.0, 0.0
    for label in np.unique(groups):
        rows = groups == label
        w = np.linalg.inv(np.eye(rows.sum()) + z[rows] @ cov_rel @ z[rows].T)
        xwx = xwx + x[rows].T @ w @ x[rows]
        xwy = xwy + x[rows].T @ w @ y[rows]
    return xwx, xwy


@pytest.mark.parametrize(
    "cov_rel", [np.array([[0.8]]), np.array([[0.0]]), np.array([[0.5, 0.02], [0.02, 0.003]])]
)
def test_vectorised_gls_equals_per_group_inverse(cov_rel):
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 15, size=200)
    x = np.column_stack([np.ones(200), rng.normal(size=200), rng.normal(size=200)])
    z = np.column_stack([np.ones(200), rng.normal(size=200)])[:, : len(cov_rel)]
    y = rng.normal(size=200)
    gls = GroupedDesign.of(x, z, y, groups).gls(cov_rel)
    xwx, xwy = _dense_gls(x, z, y, groups, cov_rel)
    beta = np.linalg.solve(xwx, xwy)
    np.testing.assert_allclose(gls.fe_params, beta, rtol=1e-10)
    np.testing.assert_allclose(gls.xwx_inv, np.linalg.inv(xwx), rtol=1e-10)


def test_gls_matches_statsmodels_away_from_the_boundary():
    frame = simulated_frame(80, 1, seed=2)
    data = frame[(frame.position >= 1) & (frame.position <= 30)]
    model = smf.mixedlm("log_norm ~ position", data, groups=data["sequence"])
    result = model.fit(reml=True)
    design = GroupedDesign.of(model.exog, model.exog_re, model.endog, data["sequence"])
    gls = design.gls(np.asarray(result.cov_re_unscaled))
    np.testing.assert_allclose(gls.fe_params, result.fe_params, rtol=1e-8)
    np.testing.assert_allclose(gls.scale, result.scale, rtol=1e-8)
    np.testing.assert_allclose(gls.llf_reml, result.llf, rtol=1e-10)
    table = models.position_trend(frame, method="mixed", n_jobs=1).tidy
    np.testing.assert_allclose(table.estimate, result.fe_params, rtol=1e-6)


def test_mixed_recovers_slope_and_random_intercept_variance():
    frame = simulated_frame(2500, 1, length=(10, 40), slope=-0.02, sd_sequence=0.3, seed=7)
    table = models.position_trend(frame, method="mixed").tidy.set_index("term")
    summary = models.glance(table.reset_index())
    slope = table.loc["position"]
    assert abs(slope.estimate + 0.02) < 3 * slope.std_error
    assert slope.std_error < 2e-4 and slope.conf_low < -0.02 < slope.conf_high
    assert abs(table.loc["Intercept", "estimate"] - 1.0) < 0.03
    assert summary.var_intercept[0] == pytest.approx(0.09, rel=0.1)
    assert summary.sigma[0] == pytest.approx(0.2, rel=0.02)
    assert summary.converged[0] and not summary.boundary[0]
    assert np.isnan(summary.var_position[0])


def test_mixed_random_slope_recovers_its_variance():
    frame = simulated_frame(1500, 1, length=(10, 40), sd_slope=0.01, seed=8)
    table = models.position_trend(frame, method="mixed", random_slope=True).tidy
    summary = models.glance(table)
    assert summary.var_position[0] == pytest.approx(1e-4, rel=0.2)
    assert summary.var_intercept[0] == pytest.approx(0.09, rel=0.15)
    slope = table.set_index("term").loc["position"]
    assert abs(slope.estimate + 0.02) < 3 * slope.std_error
    assert summary.converged[0] and not summary.boundary[0]
    # A slope variance of 1e-4 is under statsmodels' absolute 0.01 that triggers its "MLE may
    # be on the boundary" warning; far from lme4's boundary, the glance does not repeat it.
    assert "boundary" not in summary.warnings[0]


def _ols(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Lag-effects OLS estimates and classical standard errors, written out."""
    rows = frame[frame.position >= 3]
    x = np.column_stack([np.ones(len(rows)), rows.lag1, rows.lag2])
    beta, rss = np.linalg.lstsq(x, rows.log_norm.to_numpy(), rcond=None)[:2]
    return beta, np.sqrt(np.diag(np.linalg.inv(x.T @ x)) * rss[0] / (len(rows) - 3))


@pytest.fixture(scope="module")
def no_sequence_effect() -> pd.DataFrame:
    return simulated_frame(150, 1, lag1=0.3, lag2=0.1, sd_sequence=0.0, seed=3)


def _lag_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows ``lag_effects`` fits: outcome and both lags from positions >= 1."""
    return frame[frame.position >= 3]


def test_zero_random_intercept_variance_is_a_boundary_fit_equal_to_ols(no_sequence_effect):
    rows = _lag_rows(no_sequence_effect)
    fit = fit_mixed(rows, "log_norm ~ lag1 + lag2", cov_type="model")
    assert fit.stats["boundary"] and fit.converged and fit.stats["var_intercept"] == 0
    assert "optimiser not run" in fit.notes[0] and np.isinf(fit.df)
    beta, classical = _ols(no_sequence_effect)
    np.testing.assert_allclose(fit.estimate, beta, rtol=1e-10)
    np.testing.assert_allclose(fit.std_error, classical, rtol=1e-10)
    # At zero variance W = I and the CR1 sandwich is the ols method's, factor included.
    robust = fit_mixed(rows, "log_norm ~ lag1 + lag2", cov_type="cluster")
    ols = models.lag_effects(no_sequence_effect, method="ols").tidy
    np.testing.assert_allclose(robust.std_error, ols.std_error, rtol=1e-10)
    assert robust.df == ols.df[0] == rows.sequence.nunique() - 1


def test_an_unknown_cov_type_is_one_clear_error():
    rows = _lag_rows(simulated_frame(20, 1, seed=0))
    with pytest.raises(AttnmagError, match="cov_type must be one of"):
        fit_mixed(rows, "log_norm ~ lag1 + lag2", cov_type="robust")


def _dense_errors(rows, formula_terms, fit, random_slope):
    """Model-based and CR1 (Stata factor) standard errors with V_i built densely per sequence."""
    sigma2 = fit.stats["sigma"] ** 2
    if random_slope:
        cov = fit.stats["cov_intercept_position"]
        cov_re = np.array([[fit.stats["var_intercept"], cov], [cov, fit.stats["var_position"]]])
    else:
        cov_re = np.array([[fit.stats["var_intercept"]]])
    x = np.column_stack([np.ones(len(rows))] + [rows[t].to_numpy() for t in formula_terms])
    z = np.column_stack([np.ones(len(rows)), rows.position.to_numpy()])[:, : len(cov_re)]
    y, groups = rows.log_norm.to_numpy(), rows.sequence.to_numpy()
    blocks = []
    for label in np.unique(groups):
        at = groups == label
        v = sigma2 * np.eye(at.sum()) + z[at] @ cov_re @ z[at].T
        blocks.append((x[at], y[at], np.linalg.inv(v)))
    bread = np.linalg.inv(sum(xi.T @ vi @ xi for xi, _, vi in blocks))
    beta = bread @ sum(xi.T @ vi @ yi for xi, yi, vi in blocks)
    scores = np.array([xi.T @ vi @ (yi - xi @ beta) for xi, yi, vi in blocks])
    g, n, k = len(blocks), len(y), x.shape[1]
    sandwich = g / (g - 1) * (n - 1) / (n - k) * bread @ scores.T @ scores @ bread
    return beta, np.sqrt(np.diag(bread)), np.sqrt(np.diag(sandwich))


@pytest.mark.parametrize(
    ("params", "formula_terms", "random_slope"),
    [
        ({"sd_sequence": 0.3, "seed": 11}, ["position"], False),
        ({"sd_sequence": 0.3, "lag1": 0.3, "lag2": 0.1, "seed": 3}, ["lag1", "lag2"], False),
        ({"sd_slope": 0.01, "seed": 11}, ["position"], True),
    ],
)
def test_standard_errors_equal_the_written_out_formulas(params, formula_terms, random_slope):
    frame = simulated_frame(120, 1, length=(8, 30), **params)
    first = 3 if "lag1" in formula_terms else 1
    rows = frame[(frame.position >= first) & (frame.position <= 30)]
    formula = "log_norm ~ " + " + ".join(formula_terms)
    model = fit_mixed(rows, formula, random_slope=random_slope, cov_type="model")
    cluster = fit_mixed(rows, formula, random_slope=random_slope, cov_type="cluster")
    beta, model_se, cluster_se = _dense_errors(rows, formula_terms, model, random_slope)
    assert not model.stats["boundary"]
    np.testing.assert_allclose(model.estimate, beta, rtol=1e-6)
    np.testing.assert_allclose(cluster.estimate, beta, rtol=1e-6)
    np.testing.assert_allclose(model.std_error, model_se, rtol=1e-6)
    np.testing.assert_allclose(cluster.std_error, cluster_se, rtol=1e-6)
    assert np.isinf(model.df) and cluster.df == rows.sequence.nunique() - 1


def _intercept_model(rows: pd.DataFrame, formula: str):
    """statsmodels' random-intercept model of ``rows`` and its grouped design."""
    groups = rows["sequence"].to_numpy()
    model = smf.mixedlm(formula, rows, groups=groups)
    return model, GroupedDesign.of(model.exog, model.exog_re, model.endog, groups), groups


@pytest.mark.parametrize(
    ("params", "formula", "first", "random_slope"),
    [
        ({"sd_sequence": 0.3, "seed": 2}, "log_norm ~ position", 1, False),
        ({"sd_slope": 0.01, "seed": 8}, "log_norm ~ position", 1, True),
        ({"lag1": 0.3, "lag2": 0.1, "seed": 3}, "log_norm ~ lag1 + lag2", 3, False),
    ],
)
def test_statsmodels_confirms_the_maximum_where_it_is_and_its_result_waits(
    params, formula, first, random_slope
):
    rows = simulated_frame(60, 1, length=(8, 30), **params).query(f"{first} <= position <= 30")
    fit = fit_mixed(rows, formula, random_slope=random_slope, cov_type="model")
    assert not fit.notes and fit.converged and callable(fit.result)
    # statsmodels' whole fit, started at the reported maximum, stays there: the reported
    # values (GLS at that point) are that fit's, to its optimiser's tolerance.
    result = fit.result()
    assert result.converged
    np.testing.assert_allclose(fit.estimate, result.fe_params, rtol=1e-8)
    assert fit.stats["loglik"] == pytest.approx(result.llf, rel=1e-10)
    assert fit.stats["sigma"] ** 2 == pytest.approx(result.scale, rel=1e-8)
    # From statsmodels' own default start it stops near the same maximum, not above it.
    groups = rows["sequence"].to_numpy()
    spread = rows["position"].std() if random_slope else 1.0
    data = rows.assign(position_sd=rows["position"] / spread)
    re_formula = "~position_sd" if random_slope else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The MLE may be on the boundary")
        own = smf.mixedlm(formula, data, groups=groups, re_formula=re_formula).fit(reml=True)
    np.testing.assert_allclose(fit.estimate, own.fe_params, rtol=1e-4)
    assert fit.stats["loglik"] >= own.llf - 1e-6


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_fits_results_of_a_mixed_fit_are_statsmodels_results_built_once(n_jobs):
    frame = simulated_frame(40, 2, sd_sequence=0.5, seed=2)
    fits = models.fit(frame, "log_norm ~ position", method="mixed", n_jobs=n_jobs)
    for layer, part in fits.tidy.groupby("layer"):
        result = fits.results[layer]
        assert fits.results[layer] is result
        np.testing.assert_allclose(result.fe_params, part["estimate"], rtol=1e-10)
        assert "Mixed Linear Model Regression Results" in str(result.summary())


def test_a_singular_maximum_of_the_search_is_reported_without_mixedlm(monkeypatch):
    frame = simulated_frame(60, 1, sd_slope=0.01, seed=4)
    data = frame[(frame.position >= 1) & (frame.position <= 30)]
    groups = data["sequence"].to_numpy()
    model = smf.mixedlm("log_norm ~ position", data, groups=groups, re_formula="~position")
    design = GroupedDesign.of(model.exog, model.exog_re, model.endog, groups)
    rank_one = np.array([[2.0, 0.1], [0.1, 0.005]])

    monkeypatch.setattr(mixed, "_search", lambda *args: (rank_one, True))
    cov_rel, converged, notes = mixed.reml_maximum(design)
    np.testing.assert_array_equal(cov_rel, rank_one)
    assert converged and "singular random-effects covariance" in notes[0]
    xwx, xwy = _dense_gls(model.exog, model.exog_re, model.endog, groups, rank_one)
    np.testing.assert_allclose(design.gls(cov_rel).fe_params, np.linalg.solve(xwx, xwy), rtol=1e-10)
    fit = fit_mixed(data, "log_norm ~ position", random_slope=True)
    assert fit.result is None and "singular random-effects covariance" in fit.notes[0]


def test_boundary_rule():
    assert is_boundary(np.array([[0.0]])) and is_boundary(np.array([[1e-6]]))
    assert not is_boundary(np.array([[0.04]]))
    assert is_boundary(np.array([[1.0, 0.1], [0.1, 0.01]]))  # perfectly correlated
    assert not is_boundary(np.array([[1.0, 0.05], [0.05, 0.01]]))


def test_an_exact_fit_is_the_boundary_fit():
    # Log norms an exact function of position (up to float32 rounding): no variance to fit,
    # and REML from cross products is rounding noise.
    frame = simulated_frame(40, 2, sd_noise=0.0, sd_sequence=0.0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trend = models.position_trend(frame, method="mixed", n_jobs=1).tidy
    # The trend lands on the exact line at the boundary (zero variance) and says so.
    np.testing.assert_allclose(trend.estimate, [1.0, -0.02] * 2, atol=1e-6)
    summary = models.glance(trend)
    assert summary.boundary.all() and summary.warnings.str.contains("exactly").all()


def test_an_exception_inside_mixedlm_becomes_a_failed_layer(monkeypatch):
    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(mixed, "reml_maximum", singular)
    frame = simulated_frame(30, 2, seed=1)
    table = models.position_trend(frame, method="mixed", n_jobs=1).tidy
    assert table.estimate.isna().all() and not table.converged.any()
    assert table.term.tolist() == ["Intercept", "position"] * 2
    assert table.p_adjusted.isna().all()
    summary = models.glance(table)
    assert summary.warnings.str.contains("LinAlgError: Singular matrix").all()
    assert isinstance(summary, pd.DataFrame) and len(summary) == 2


def _jackknife(design: GroupedDesign, cov_rel: np.ndarray | None) -> np.ndarray:
    """sum_g (b_(-g) - b)(b_(-g) - b)' of the ML fixed effects, each group left out and the
    model refitted (at ``cov_rel`` where given, else at the likelihood's maximum)."""
    fitted = design.gls(mixed.reml_maximum(design)[0] if cov_rel is None else cov_rel)
    changes = []
    for group in range(len(design.cross)):
        keep = np.arange(len(design.cross)) != group
        size = int(design.cross[group, design.k_fe, design.k_fe])
        rest = GroupedDesign(design.cross[keep], design.n_obs - size, design.k_fe, 1, ml=True)
        at = mixed.reml_maximum(rest)[0] if cov_rel is None else cov_rel
        changes.append(rest.gls(at).fe_params - fitted.fe_params)
    return np.array(changes).T @ np.array(changes)


def _lag_design(n_sequences: int) -> GroupedDesign:
    """An ML design of ``initial_conditions``' model, ``log_norm ~ lag1 + lag2 + position + y1
    + y2`` with a random intercept (``y1``, ``y2``: the text's levels at positions 1 and 2)."""
    frame = burn_in_frame(n_sequences, 1, seed=n_sequences)
    levels = frame.pivot(index="sequence", columns="position", values="log_norm")
    rows = frame[frame.position >= 3].assign(
        y1=lambda rows: rows.sequence.map(levels[1]), y2=lambda rows: rows.sequence.map(levels[2])
    )
    formula = "log_norm ~ lag1 + lag2 + position + y1 + y2"
    model = smf.mixedlm(formula, rows, groups=rows["sequence"])
    design = GroupedDesign.of(model.exog, model.exog_re, model.endog, model.groups)
    return GroupedDesign(design.cross, design.n_obs, design.k_fe, 1, ml=True)


def test_stacked_covariance_at_zero_variance_is_the_leave_one_text_out_jackknife():
    """At zero variance the fixed effects are OLS, and Mancl-DeRouen's scores make the
    sandwich exactly the sum of the changes in the estimates when each text is left out."""
    design, zero = _lag_design(20), np.zeros((1, 1))
    covariance = mixed.stacked_covariance(design, zero, design.gls(zero))
    np.testing.assert_allclose(covariance, _jackknife(design, zero), rtol=1e-8)


@pytest.mark.parametrize("n_sequences, tolerance", [(40, 0.1), (100, 0.01)])
def test_stacked_covariance_is_about_the_refitted_jackknife(n_sequences, tolerance):
    """In the interior, each corrected score is one Fisher-scoring step of the fit without
    its text: close to refitting ML without each text, the closer the more texts."""
    design = _lag_design(n_sequences)
    cov_rel = mixed.reml_maximum(design)[0]
    assert cov_rel[0, 0] > 0.01  # in the interior
    errors = np.sqrt(np.diag(mixed.stacked_covariance(design, cov_rel, design.gls(cov_rel))))
    np.testing.assert_allclose(errors, np.sqrt(np.diag(_jackknife(design, None))), rtol=tolerance)


def test_ml_hessian_is_the_complex_step_jacobian_of_the_summed_scores():
    """The closed-form Hessian equals the complex-step Jacobian of the summed scores, in the
    interior and at zero variance."""
    design = _lag_design(40)
    cov_rel = mixed.reml_maximum(design)[0]
    point = design.gls(cov_rel)
    for tau in (cov_rel[0, 0], 0.0):
        theta = np.r_[point.fe_params, point.scale, tau]
        step = approx_fprime_cs(theta, lambda at: mixed.ml_scores(design, at).sum(axis=0))
        np.testing.assert_allclose(mixed.ml_hessian(design, theta), step, rtol=1e-9, atol=1e-9)
