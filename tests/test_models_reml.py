"""Mixed fits report REML's global maximum, checked against fine grids over the variance.

The REML profile over a random intercept's relative standard deviation can be bimodal: it
falls from zero, dips, then rises to a higher interior maximum (the lag model on texts
whose level varies, with a few dozen sequences of 5-35 tokens, does this about one time in
four). A search that looks only near zero reports the lower, boundary maximum there.
"""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from attnmag.models import mixed
from attnmag.models.mixed import GroupedDesign
from tests.mixed_direct import fit_mixed, reml_gradient
from tests.simulate import simulated_frame
from tests.simulate_burn_in import burn_in_frame
from tests.test_models_lags import with_initial_conditions

#: The fine grid over the relative sd: zero and log-spaced points over six decades.
FINE = np.r_[0.0, np.geomspace(1e-3, 1e3, 600)]
#: (model, frame parameters, number of seeds): 120 fits in all.
SETTINGS = [
    ("lags", {"length": (5, 35), "sd_sequence": 0.3, "sink": 3.0}, 80),
    ("lags", {"length": (5, 35), "sd_sequence": 0.0, "sink": 3.0}, 10),
    ("trend", {"length": (5, 20), "sd_sequence": 0.1}, 10),
    ("trend", {"length": (5, 20), "sd_sequence": 0.0}, 10),
    ("trend", {"length": (5, 20), "sd_sequence": 1.0, "sd_noise": 0.01}, 10),
]
FORMULAS = {"lags": "log_norm ~ lag1 + lag2", "trend": "log_norm ~ position"}


def _rows(model: str, params: dict, seed: int) -> pd.DataFrame:
    """One small simulated layer's rows for ``model``."""
    frame = simulated_frame(60, 1, seed=seed, **params)
    return frame[frame.position >= 3] if model == "lags" else frame.query("1 <= position <= 30")


def _design(rows: pd.DataFrame, formula: str, random_slope: bool = False) -> GroupedDesign:
    """The grouped design of ``formula`` on ``rows`` (random slope on raw position)."""
    groups = rows["sequence"].to_numpy()
    re_formula = "~position" if random_slope else None
    model = smf.mixedlm(formula, rows, groups=groups, re_formula=re_formula)
    return GroupedDesign.of(model.exog, model.exog_re, model.endog, groups)


def _profile(design: GroupedDesign, sds: np.ndarray) -> np.ndarray:
    """REML at each relative sd, one ``gls`` at a time (not the vectorised profile)."""
    return np.array([design.gls(np.array([[sd * sd]])).llf_reml for sd in sds])


@pytest.fixture(scope="module")
def searched() -> list[tuple[str, float, np.ndarray, float, float]]:
    """(label, reported REML, the fine grid's profile, reported intercept variance, REML at
    the search's maximum, before statsmodels) per fit."""
    out = []
    for model, params, n_seeds in SETTINGS:
        for seed in range(n_seeds):
            rows = _rows(model, params, seed)
            fit = fit_mixed(rows, FORMULAS[model], cov_type="model")
            design = _design(rows, FORMULAS[model])
            profile = _profile(design, FINE)
            search = design.gls(mixed._search(design)[0]).llf_reml
            label = f"{model} {params} seed {seed}"
            out.append((label, fit.stats["loglik"], profile, fit.stats["var_intercept"], search))
    return out


def test_the_reported_reml_is_the_fine_grids_maximum(searched):
    assert len(searched) >= 100
    for label, reml, profile, _, search in searched:
        assert reml >= profile.max() - 1e-6, label
        assert search >= profile.max() - 1e-6, label


def test_bimodal_profiles_are_among_them_and_land_on_the_interior_maximum(searched):
    bimodal = [
        (label, variance)
        for label, _, profile, variance, _ in searched
        if profile[0] > profile[1] and profile.argmax() > 0  # zero is a local maximum only
    ]
    assert len(bimodal) >= 10
    assert all(variance > 0 for _, variance in bimodal), bimodal


def test_zero_variance_is_reported_where_it_is_the_global_maximum(searched):
    at_zero = [variance for _, _, profile, variance, _ in searched if profile.argmax() == 0]
    assert len(at_zero) >= 10 and all(variance == 0 for variance in at_zero)


def test_the_vectorised_profile_equals_gls_point_by_point():
    rows = _rows("lags", SETTINGS[0][1], 3)
    design = _design(rows, FORMULAS["lags"])
    sds = np.r_[0.0, np.geomspace(1e-4, 1e4, 30)]
    np.testing.assert_allclose(design.intercept_profile(sds), _profile(design, sds), rtol=1e-9)


def _slope_grid(design: GroupedDesign) -> float:
    """REML's maximum over a grid of relative Cholesky factors (zero diagonals included)."""
    best = -np.inf
    for l00 in np.r_[0.0, np.geomspace(0.05, 5, 11)]:
        for l10 in np.linspace(-0.05, 0.05, 9):
            for l11 in np.r_[0.0, np.geomspace(1e-3, 0.1, 9)]:
                factor = np.array([[l00, 0.0], [l10, l11]])
                best = max(best, design.gls(factor @ factor.T).llf_reml)
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sd_slope", [0.0, 0.01])
def test_random_slope_fits_are_at_least_the_grids_maximum(seed, sd_slope):
    frame = simulated_frame(60, 1, length=(5, 30), sd_slope=sd_slope, seed=seed)
    rows = frame.query("1 <= position <= 30")
    fit = fit_mixed(rows, "log_norm ~ position", random_slope=True, cov_type="model")
    assert fit.stats["loglik"] >= _slope_grid(_design(rows, "log_norm ~ position", True)) - 1e-6


@pytest.mark.parametrize(
    "cov_rel", [np.array([[0.5, 0.1], [0.1, 0.2]]), np.array([[0.3, 0.0], [0.0, 0.0]])]
)
def test_the_reml_gradient_equals_central_differences(cov_rel):
    frame = simulated_frame(40, 1, length=(5, 30), sd_slope=0.01, seed=2)
    design = _design(frame.query("1 <= position <= 30"), "log_norm ~ position", True)
    step, numeric = 1e-6, np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            e = np.zeros((2, 2))
            e[i, j] += 0.5
            e[j, i] += 0.5  # a symmetric direction: tr(G e) is G[i, j]
            up, down = design.gls(cov_rel + step * e), design.gls(cov_rel - step * e)
            numeric[i, j] = (up.llf_reml - down.llf_reml) / (2 * step)
    np.testing.assert_allclose(reml_gradient(design, cov_rel), numeric, rtol=1e-5, atol=1e-3)


def test_the_grid_extends_upwards_while_its_top_is_the_best(monkeypatch):
    # Relative sd about 100 (sequence sd 1, residual sd 0.01), the grid's top set at 10.
    rows = _rows("trend", SETTINGS[-1][1], 0)
    monkeypatch.setattr(mixed, "_moment_start", lambda design: 0.05)
    design = _design(rows, FORMULAS["trend"])
    profile = _profile(design, FINE)
    found = mixed._search(design)[0]
    assert FINE[profile.argmax()] > 20
    assert design.gls(found).llf_reml >= profile.max() - 1e-6


@pytest.mark.parametrize("ml", [False, True])
def test_the_closed_form_of_two_random_effects_equals_gls_and_its_gradient(ml):
    frame = simulated_frame(40, 1, length=(5, 30), sd_slope=0.01, seed=2)
    design = _design(frame.query("1 <= position <= 30"), "log_norm ~ position", True)
    design = dataclasses.replace(design, ml=ml)
    objective = mixed._two_effects(design)
    for packed in ([0.5, 0.01, 0.05], [0.5, 0.03, 0.0], [0.0, 0.0, 0.0], [-0.3, 0.2, -0.4]):
        factor = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
        point = design.gls(factor @ factor.T)
        by_factor = 2 * reml_gradient(design, factor @ factor.T, point) @ factor
        value, gradient = objective(np.array(packed))
        np.testing.assert_allclose(value, -point.llf_reml, rtol=1e-12)
        np.testing.assert_allclose(gradient, -by_factor[np.tril_indices(2)], atol=1e-8)


def _lag_slope_design(rows: pd.DataFrame) -> GroupedDesign:
    """``initial_conditions``' ML design with a random slope on lag1, by statsmodels."""
    formula = "log_norm ~ lag1 + lag2 + position + y1 + y2"
    model = smf.mixedlm(formula, rows, groups=rows.sequence, re_formula="~lag1")
    design = GroupedDesign.of(model.exog, model.exog_re, model.endog, model.groups)
    return dataclasses.replace(design, ml=True)


def test_the_slope_test_is_the_best_of_many_climbs_at_any_level_of_the_outcome():
    """Its single climb reaches the highest likelihood that climbs from a grid of starts
    reach; and adding 10 to every level (which the intercepts absorb) changes nothing, where
    an uncentred slope makes the intercept's variance the extrapolation to lag1 = 0."""
    frame = burn_in_frame(300, 1, sd_lag1=0.1, seed=3)
    rows = with_initial_conditions(frame[frame.position >= 3], first=1)
    design = _lag_slope_design(rows)
    intercept = design.intercept_only()
    null = intercept.gls(mixed.reml_maximum(intercept)[0]).llf_reml
    starts = itertools.product([0.1, 1.0, 10.0], [-0.1, 0.0, 0.1], [0.01, 0.1, 1.0])
    best = max(-mixed._climb(design, list(start)).fun for start in starts)
    lr = mixed.slope_test(design)[0]
    assert lr > 1
    np.testing.assert_allclose(lr, 2 * (best - null), rtol=1e-5)
    levels = ["log_norm", "lag1", "lag2", "y1", "y2"]
    shifted = rows.assign(**{column: rows[column] + 10 for column in levels})
    np.testing.assert_allclose(mixed.slope_test(_lag_slope_design(shifted))[0], lr, rtol=1e-5)
