"""``models.fit``: any formula per group, against statsmodels and ``fit_mixed`` called directly;
the ``Fits`` it returns (tidy, glance, results, augment, concat); groups by site and head."""

import time

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from attnmag import models
from attnmag.errors import AttnmagError
from attnmag.models.tidy import GLANCE_COLUMNS, TIDY_COLUMNS
from tests.mixed_direct import fit_mixed
from tests.simulate import simulated_frame

FORMULA = "log_norm ~ position + C(label)"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Two layers, a sequence-level label that shifts the level of "rotten" texts."""
    frame = simulated_frame(40, 2, length=(6, 30), lag1=0.2, sd_noise=0.3, seed=7)
    rotten = np.random.default_rng(1).random(40) < 0.5
    label = np.where(rotten, "rotten", "fresh")[frame["sequence"].to_numpy()]
    frame["label"] = pd.Categorical(label, categories=["fresh", "rotten"])
    for column in ("log_norm", "lag1", "lag2"):  # the lags stay the log norms before
        frame[column] += 0.3 * (frame["label"] == "rotten")
    return frame


def _rows(frame: pd.DataFrame, layer: int, last: int = models.MAX_POSITION) -> pd.DataFrame:
    return frame[(frame.layer == layer) & frame.position.between(1, last)]


def _direct_ols(rows: pd.DataFrame, formula: str):
    return smf.ols(formula, rows).fit(
        cov_type="cluster", cov_kwds={"groups": rows["sequence"].to_numpy()}, use_t=True
    )


def test_ols_equals_statsmodels_on_each_layer(frame):
    fits = models.fit(frame, FORMULA, method="ols")
    assert list(fits.tidy.columns) == TIDY_COLUMNS
    assert (fits.tidy.fit == FORMULA).all() and (fits.tidy.method == "ols").all()
    for layer in (0, 1):
        rows = _rows(frame, layer)
        direct = _direct_ols(rows, FORMULA)
        got = fits.tidy[fits.tidy.layer == layer].set_index("term")
        assert list(got.index) == ["Intercept", "C(label)[T.rotten]", "position"]
        np.testing.assert_allclose(got.estimate, direct.params, rtol=1e-8)
        np.testing.assert_allclose(got.std_error, direct.bse, rtol=1e-8)
        np.testing.assert_allclose(got.p_value, direct.pvalues, rtol=1e-8)
        np.testing.assert_allclose(got.conf_low, direct.conf_int()[0], rtol=1e-8)
        assert (got.df == rows.sequence.nunique() - 1).all() and (got.n_obs == len(rows)).all()
        result = fits.results[layer]
        np.testing.assert_allclose(result.params, direct.params, rtol=1e-12)
        np.testing.assert_allclose(result.bse, direct.bse, rtol=1e-12)
        assert "C(label)[T.rotten]" in str(result.summary())
        assert fits.results[layer] is result  # built once


@pytest.mark.parametrize(("re_formula", "random_slope"), [(None, False), ("~position", True)])
def test_mixed_equals_fit_mixed(frame, re_formula, random_slope):
    fits = models.fit(frame, FORMULA, method="mixed", re_formula=re_formula, n_jobs=1)
    # The random slope's search (L-BFGS-B) stops within its tolerance of the maximum: cross
    # products summed in another order move its end point by about 1e-7 (relative).
    rtol = 1e-6 if random_slope else 1e-8
    for layer in (0, 1):
        direct = fit_mixed(_rows(frame, layer), FORMULA, random_slope=random_slope)
        got = fits.tidy[fits.tidy.layer == layer].set_index("term")
        np.testing.assert_allclose(got.estimate, direct.estimate, rtol=rtol)
        np.testing.assert_allclose(got.std_error, direct.std_error, rtol=rtol)
        summary = fits.glance.set_index("layer").loc[layer]
        np.testing.assert_allclose(summary.var_intercept, direct.stats["var_intercept"])
        assert np.isnan(summary.var_position) != random_slope
        result = fits.results[layer]
        if summary.warnings:  # a boundary or search point: statsmodels' result is not it
            assert result is None
        else:
            assert np.allclose(result.fe_params, direct.estimate, rtol=rtol)
            assert "Mixed Linear Model" in str(result.summary())


def test_interaction_term_names(frame):
    fits = models.fit(frame, "log_norm ~ position * C(label)")
    direct = _direct_ols(_rows(frame, 0), "log_norm ~ position * C(label)")
    terms = fits.tidy[fits.tidy.layer == 0].term.tolist()
    assert terms == [
        "Intercept",
        "C(label)[T.rotten]",
        "position",
        "position:C(label)[T.rotten]",
    ]
    np.testing.assert_allclose(fits.tidy[fits.tidy.layer == 0].estimate, direct.params, rtol=1e-8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"formula": "log_norm ~ position +"}, "cannot read the formula"),
        ({"formula": "log_norm ~ (position"}, "cannot read the formula"),
        ({"formula": "~ position"}, "has no outcome"),
        ({"formula": "log_norm ~ sentiment"}, r"names \['sentiment'\]"),
        ({"formula": "log_norm ~ position", "method": "gls"}, "no method 'gls'"),
        ({"formula": "log_norm ~ position", "re_formula": "~position"}, "needs method='mixed'"),
        (
            {"formula": "log_norm ~ position", "method": "mixed", "re_formula": "~lag1"},
            "re_formula",
        ),
        ({"formula": "log_norm ~ position", "cov_type": "model"}, "needs a mixed method"),
        ({"formula": "log_norm ~ position", "positions": (5, 2)}, "positions. first must be"),
        ({"formula": "log_norm ~ position", "positions": (1.5, 9)}, "positions. first must be"),
        ({"formula": "log_norm ~ position", "positions": (1, "9")}, "positions. last must be"),
        ({"formula": "log_norm ~ position", "positions": 30}, "positions must be a pair"),
        ({"formula": "log_norm ~ position", "conf_level": 95}, "conf_level"),
        ({"formula": "log_norm ~ np.log(nothing)"}, r"names \['nothing'\]"),
        ({"formula": "log_norm ~ position + C(layer)"}, r"grouping columns \['layer'\]"),
    ],
)
def test_bad_input_is_one_clear_error(frame, options, message):
    with pytest.raises(AttnmagError, match=message) as caught:
        models.fit(frame, **options)
    assert "\n" not in str(caught.value)


def test_missing_values_drop_their_rows(frame):
    fits = models.fit(frame, "log_norm ~ lag1 + lag2", positions=(1, 12))
    used = frame[(frame.layer == 1) & frame.position.between(1, 12)]
    rows = used.dropna(subset=["lag2"])  # lag2 is missing at position 1
    got = fits.tidy[fits.tidy.layer == 1].set_index("term")
    assert (got.n_obs == len(rows)).all() and len(rows) == len(used) - 40
    np.testing.assert_allclose(got.estimate, _direct_ols(rows, "log_norm ~ lag1 + lag2").params)


def test_named_fits_are_formula_fits(frame):
    """position_trend's ols table is fit()'s on its formula, but for the fit's name."""
    trend = models.position_trend(frame, method="ols", cov_type="cluster").tidy
    fits = models.fit(frame, "log_norm ~ position")
    pd.testing.assert_frame_equal(
        fits.tidy.drop(columns="fit"), trend.drop(columns="fit"), rtol=1e-12
    )
    assert list(models.glance(fits).columns) == GLANCE_COLUMNS
    assert models.glance(fits) is fits.glance


def test_concat_and_add_keep_every_fit(frame):
    ols = models.fit(frame, FORMULA)
    mixed = models.fit(frame, FORMULA, method="mixed", n_jobs=1)
    both = models.Fits.concat([ols, mixed])
    assert len(both) == len(ols) + len(mixed) == 4
    assert len(both.glance) == 4 and len(both.tidy) == len(ols.tidy) + len(mixed.tidy)
    assert both.glance.method.tolist() == ["ols", "ols", "mixed", "mixed"]
    assert "var_intercept" in both.glance.columns
    assert len(models.glance(both.tidy)) == 4
    added = ols + mixed
    pd.testing.assert_frame_equal(added.tidy, both.tidy)
    pd.testing.assert_frame_equal(added.glance, both.glance)
    assert set(both.results) == {(FORMULA, m, layer) for m in ("ols", "mixed") for layer in (0, 1)}
    assert both.results[(FORMULA, "ols", 1)].params.equals(ols.results[1].params)
    assert "4 fits" in repr(both) and "[mixed]" in repr(both)
    with pytest.raises(AttnmagError, match="list of Fits"):
        models.Fits.concat([])


def test_augment_residuals_are_outcome_minus_fitted(frame):
    fits = models.fit(frame, "log_norm ~ position * C(label)")
    rows = fits.augment()
    assert len(rows) == len(frame[frame.position.between(1, models.MAX_POSITION)])
    np.testing.assert_allclose(rows.resid, rows.log_norm - rows.fitted, rtol=0, atol=1e-12)
    layer1 = rows[rows.layer == 1]
    np.testing.assert_allclose(layer1.fitted, fits.results[1].fittedvalues, rtol=1e-10)
    mixed = models.fit(frame, FORMULA, method="mixed", n_jobs=1)
    rows = mixed.augment()
    estimate = mixed.tidy[mixed.tidy.layer == 0].set_index("term").estimate
    layer0 = rows[rows.layer == 0]
    rotten = (layer0.label == "rotten").to_numpy()
    expected = (
        estimate["Intercept"]
        + estimate["C(label)[T.rotten]"] * rotten
        + estimate["position"] * layer0.position
    )
    np.testing.assert_allclose(layer0.fitted, expected, rtol=1e-10)


def _sites_and_heads(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame copied per site and head, each copy with its own shift and noise."""
    rng = np.random.default_rng(3)
    parts = []
    for site in ("attn", "mlp"):
        for head in (0, 1, 2):
            part = frame.assign(site=site, head=head)
            shift = 0.5 * head + (site == "mlp")
            part["log_norm"] = part["log_norm"] + shift + rng.normal(0, 0.1, len(part))
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["site"] = pd.Categorical(out["site"], categories=["attn", "mlp", "resid"])
    return out


def test_sites_and_heads_give_one_fit_per_group(frame):
    grouped = _sites_and_heads(frame)
    fits = models.fit(grouped, FORMULA)
    keys = {
        (site, layer, head) for site in ("attn", "mlp") for layer in (0, 1) for head in (0, 1, 2)
    }
    assert len(fits) == 12 and set(fits.results) == keys
    assert list(fits.tidy.columns[:5]) == ["fit", "method", "site", "layer", "head"]
    assert list(fits.glance.columns[:5]) == ["fit", "method", "site", "layer", "head"]
    for site, layer, head in [("mlp", 1, 2), ("attn", 0, 0)]:
        rows = grouped[(grouped["site"] == site) & (grouped["head"] == head)]
        direct = _direct_ols(_rows(rows, layer), FORMULA)
        got = fits.tidy.query("site == @site and layer == @layer and head == @head")
        np.testing.assert_allclose(got.estimate, direct.params, rtol=1e-8)
        np.testing.assert_allclose(got.std_error, direct.bse, rtol=1e-8)
    # Holm runs across the 12 groups of each term.
    p = fits.tidy[fits.tidy.term == "position"].p_value.to_numpy()
    adjusted = fits.tidy[fits.tidy.term == "position"].p_adjusted.to_numpy()
    order = np.argsort(p)
    holm = np.minimum(np.maximum.accumulate(p[order] * np.arange(12, 0, -1)), 1)
    np.testing.assert_allclose(adjusted[order], holm, rtol=1e-12)
    trend = models.position_trend(grouped, method="ols").tidy
    assert len(models.glance(trend)) == 12 and "head" in trend.columns
    lags = models.lag_effects(grouped, method="ols", layers=[1]).tidy
    assert len(lags) == 6 * 3 and set(lags.site) == {"attn", "mlp"}


def test_fit_all_stacks_the_named_fits_and_keeps_every_glance_row(frame):
    fits = models.fit_all(frame, trend_methods=["ols", "aggregate"], lag_methods=["gmm"])
    alone = [
        models.position_trend(frame, method="ols").tidy,
        models.position_trend(frame, method="aggregate").tidy,
    ]
    pd.testing.assert_frame_equal(fits["position_trend"].tidy, pd.concat(alone, ignore_index=True))
    gmm = models.lag_effects(frame, method="gmm")
    pd.testing.assert_frame_equal(fits["lag_effects"].tidy, gmm.tidy)
    glance = pd.concat([fits[name].glance for name in fits], ignore_index=True)
    assert glance[["fit", "method"]].value_counts().to_dict() == {
        ("position_trend", "ols"): 2,
        ("position_trend", "aggregate"): 2,
        ("lag_effects", "gmm"): 2,
    }
    assert "hansen_p" in fits["lag_effects"].glance
    assert len(models.glance(fits["position_trend"])) == 4
    assert set(models.fit_all(frame, trend_methods=["ols"], lag_methods=())) == {"position_trend"}


def test_long_fits_show_progress_on_stderr_and_progress_false_silences_it(
    frame, monkeypatch, capsys
):
    from attnmag.models import named

    fit_group = named._fit_group

    def slow(*args):
        time.sleep(0.7)  # two groups: past the bar's one-second delay
        return fit_group(*args)

    monkeypatch.setattr(named, "_fit_group", slow)
    models.position_trend(frame, method="ols", progress=True)
    shown = capsys.readouterr()
    assert "position_trend ols" in shown.err and "2/2" in shown.err and shown.out == ""
    models.position_trend(frame, method="ols", progress=False)
    assert capsys.readouterr().err == ""
