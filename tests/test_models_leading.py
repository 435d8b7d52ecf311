"""The leading-position diagnostic (``models.leading``): a spike at position 1 that does not
carry forward is flagged in every named fit's glance and in the report's trend warnings,
with ``first_position=2`` suggested; clean data, and the same spike left out, are not."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from attnmag import models
from attnmag.extract.frame import derived_columns
from attnmag.models.leading import LEADING_T
from attnmag.models.tidy import LEADING_GLANCE_COLUMNS
from attnmag.reports.findings import trend_finding
from tests.simulate import simulated_frame


def _with_spike(frame: pd.DataFrame, position: int, size: float, layers: list[int]) -> pd.DataFrame:
    """``frame`` with ``size`` added to ``log_norm`` at ``position`` in ``layers`` (nothing
    else moves: the spike does not carry forward), its lags recomputed."""
    spiked = frame.copy()
    rows = (spiked.position == position) & spiked.layer.isin(layers)
    spiked.loc[rows, "norm"] *= np.float32(np.exp(size))
    derived = derived_columns(spiked["norm"].to_numpy(), spiked["position"].to_numpy())
    return spiked.assign(**{c: v for c, v in derived.items() if c in spiked.columns})


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    clean = simulated_frame(120, 3, length=(8, 30), seed=4)
    return {"clean": clean, "spiked": _with_spike(clean, 1, 0.4, [1, 2])}


FITS = [
    ("position_trend", "ols"),
    ("position_trend", "mixed"),
    ("lag_effects", "initial_conditions"),
    ("lag_effects", "gmm"),
]


@pytest.mark.parametrize(("fit", "method"), FITS)
def test_a_spike_at_position_1_is_flagged(frames, fit, method):
    summary = models.glance(getattr(models, fit)(frames["spiked"], method=method))
    assert list(summary.columns[-8:-2]) == LEADING_GLANCE_COLUMNS
    assert summary.leading_t0.isna().all()  # before the first position: not checked
    spiked = summary.layer.isin([1, 2])
    assert (summary.loc[spiked, "leading_t1"] > LEADING_T).all()
    assert summary.loc[spiked, "leading_flagged"].all()
    assert (summary.loc[spiked, "suggested_first_position"] == 2).all()
    untouched = summary[~spiked].iloc[0]
    assert not untouched.leading_flagged and untouched.suggested_first_position == 1
    assert (summary[["leading_t2", "leading_t3"]].abs() < LEADING_T).all(axis=None)


def test_clean_data_and_the_spike_left_out_are_not_flagged(frames):
    clean = models.glance(models.position_trend(frames["clean"]))
    assert not clean.leading_flagged.any()
    assert (clean[["leading_t1", "leading_t2", "leading_t3"]].abs() < LEADING_T).all(axis=None)
    later = models.glance(models.lag_effects(frames["spiked"], first_position=2))
    assert later[["leading_t0", "leading_t1"]].isna().all(axis=None)
    assert not later.leading_flagged.any() and (later.suggested_first_position == 2).all()


def test_the_report_says_which_first_position_drops_the_spike(frames):
    trend = models.position_trend(frames["spiked"])
    warnings = trend_finding(trend).warnings  # a Fits brings its glance rows
    flagged = [w for w in warnings if "leading position" in w]
    assert len(flagged) == 1
    assert "position 1 (layers 1–2)" in flagged[0] and "first_position=2" in flagged[0]
    clean = models.position_trend(frames["clean"])
    assert not any("leading position" in w for w in trend_finding(clean).warnings)


def test_the_t_statistic_is_the_indicator_of_a_cluster_robust_ols(frames):
    """leading_t1..3 equal statsmodels' CR1 t of the position indicators."""
    rows = frames["spiked"].query("layer == 1 and position >= 1 and position <= 30")
    dummies = rows.assign(**{f"d{k}": (rows.position == k).astype(float) for k in (1, 2, 3)})
    result = smf.ols("log_norm ~ position + d1 + d2 + d3", dummies).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(rows.sequence)[0]}
    )
    summary = models.glance(models.position_trend(frames["spiked"], layers=[1])).iloc[0]
    expected = result.tvalues[["d1", "d2", "d3"]].to_numpy()
    actual = summary[["leading_t1", "leading_t2", "leading_t3"]].to_numpy(np.float64)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)
