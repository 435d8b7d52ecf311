"""The public aggregates behind the figures, against statsmodels called on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from attnmag import AttnmagError, reports
from attnmag.reports import summaries
from tests.simulate import simulated_frame
from tests.test_reports_support import grouped_frame, site_frame


def _cluster_fit(rows: pd.DataFrame, value: str):
    """statsmodels' intercept-only OLS, CR1 by sequence, t on G - 1 degrees of freedom."""
    return smf.ols(f"{value} ~ 1", data=rows).fit(
        cov_type="cluster", cov_kwds={"groups": rows["sequence"].to_numpy()}, use_t=True
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulated_frame(40, 3, length=(3, 12), lag1=0.3, seed=4)


@pytest.fixture(scope="module")
def grouped() -> pd.DataFrame:
    return grouped_frame()


def test_the_aggregates_are_exported_for_users():
    for name in (
        "mean_ci",
        "layer_means",
        "position_means",
        "position_means_across_layers",
        "sequence_lengths",
        "select_layers",
        "site_ratios",
    ):
        assert name in reports.__all__
        assert getattr(reports, name).__doc__.count("Parameters\n    ----------") == 1


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_mean_ci_is_the_cluster_robust_intercept_of_statsmodels(frame, level):
    rows = frame[frame["position"] >= 1]
    ours = reports.mean_ci(rows, value="log_norm", by="layer", conf_level=level)
    assert list(ours["layer"]) == [0, 1, 2] and (ours["conf_level"] == level).all()
    for row in ours.itertuples(index=False):
        part = rows[rows["layer"] == row.layer]
        fit = _cluster_fit(part, "log_norm")
        low, high = fit.conf_int(alpha=1 - level).iloc[0]
        assert row.mean == pytest.approx(fit.params.iloc[0], rel=1e-12)
        assert row.std_error == pytest.approx(fit.bse.iloc[0], rel=1e-9)
        assert (row.conf_low, row.conf_high) == pytest.approx((low, high), rel=1e-9)
        assert row.n == len(part) and row.n_groups == part["sequence"].nunique()


def test_layer_means_keep_each_model_and_site_apart(grouped):
    means = reports.layer_means(grouped, value="norm", conf_level=0.9)
    assert list(means.columns[:3]) == ["model", "site", "layer"]
    assert len(means) == 2 * 2 * 2
    for row in means.itertuples(index=False):
        part = grouped[
            (grouped["model"] == row.model)
            & (grouped["site"] == row.site)
            & (grouped["layer"] == row.layer)
            & (grouped["position"] >= 1)
        ]
        fit = _cluster_fit(part, "norm")
        low, high = fit.conf_int(alpha=0.1).iloc[0]
        assert row.mean == pytest.approx(fit.params.iloc[0], rel=1e-12)
        assert (row.conf_low, row.conf_high) == pytest.approx((low, high), rel=1e-9)


def test_position_means_and_their_logged_interval(grouped):
    """Each cell against statsmodels' cluster-robust t interval of the cell's mean, logged."""
    small = grouped[grouped["model"] == "small"]
    cells = reports.position_means(small, layers=[1], max_position=5, conf_level=0.9)
    assert list(cells.columns[:4]) == ["model", "site", "layer", "position"]
    assert set(cells["layer"]) == {1} and len(cells) == 2 * 6
    for cell in cells.itertuples(index=False):
        rows = small[
            (small["site"] == cell.site)
            & (small["layer"] == 1)
            & (small["position"] == cell.position)
        ]
        fit = _cluster_fit(rows, "norm")
        low, high = fit.conf_int(alpha=0.1).iloc[0]
        assert cell.log_mean == pytest.approx(np.log(rows["norm"].astype(float).mean()), 1e-12)
        assert cell.log_low == pytest.approx(np.log(low), rel=1e-9)
        assert cell.log_high == pytest.approx(np.log(high), rel=1e-9)


def test_position_means_of_the_log_norm_have_no_logged_columns(frame):
    cells = reports.position_means(frame, value="log_norm", max_position=3)
    assert "log_mean" not in cells
    rows = frame[(frame["layer"] == 2) & (frame["position"] == 3)]
    cell = cells[(cells["layer"] == 2) & (cells["position"] == 3)].iloc[0]
    assert cell["std_error"] == pytest.approx(_cluster_fit(rows, "log_norm").bse.iloc[0], 1e-9)


def test_the_log_interval_is_missing_where_the_interval_reaches_zero():
    """Two texts of norms 0.01 and 10: t on 1 df puts the low end below zero."""
    tiny = pd.DataFrame({"sequence": [0, 1], "layer": 0, "position": 0, "norm": [0.01, 10.0]})
    cell = reports.position_means(tiny, max_position=0).iloc[0]
    # CR1 with two one-token texts: the standard error is half their distance, t on 1 df
    half = stats.t.ppf(0.975, 1) * (10.0 - 0.01) / 2
    assert cell["conf_low"] == pytest.approx(5.005 - half) and cell["conf_low"] < 0
    assert np.isnan(cell["log_low"])
    assert cell["log_high"] == pytest.approx(np.log(5.005 + half))


def test_means_across_layers_pool_the_layers_of_each_series(grouped):
    means = reports.position_means_across_layers(grouped, max_position=4, conf_level=0.8)
    assert list(means.columns[:3]) == ["model", "site", "position"] and len(means) == 2 * 2 * 5
    row = means[(means["model"] == "large") & (means["site"] == "mlp")].iloc[2]
    rows = grouped[
        (grouped["model"] == "large") & (grouped["site"] == "mlp") & (grouped["position"] == 2)
    ]
    fit = _cluster_fit(rows, "norm")
    assert row["mean"] == pytest.approx(fit.params.iloc[0], rel=1e-12)
    assert (row["conf_low"], row["conf_high"]) == pytest.approx(
        tuple(fit.conf_int(alpha=0.2).iloc[0]), rel=1e-9
    )


def test_sequence_lengths_per_model(grouped, frame):
    lengths = reports.sequence_lengths(grouped)
    assert list(lengths.columns) == ["model", "sequence", "length"]
    for model in ("small", "large"):
        rows = grouped[
            (grouped["model"] == model) & (grouped["site"] == "attn") & (grouped["layer"] == 0)
        ]
        expected = rows.groupby("sequence").size()
        got = lengths[lengths["model"] == model].set_index("sequence")["length"]
        # The index's integer width is pandas' choice (set_index may widen int32), not ours.
        pd.testing.assert_series_equal(got, expected, check_names=False, check_index_type=False)
    assert lengths["sequence"].dtype == grouped["sequence"].dtype
    plain = reports.sequence_lengths(frame)
    assert list(plain.columns) == ["sequence", "length"] and len(plain) == 40


def test_a_layer_selection_that_is_not_there_is_a_clear_error(frame):
    assert set(reports.select_layers(frame, 2)["layer"]) == {2}
    assert set(reports.select_layers(frame, range(2))["layer"]) == {0, 1}
    with pytest.raises(AttnmagError, match=r"layers \[7\] are not in the data.*0 to 2"):
        reports.layer_means(frame, layers=[1, 7])
    with pytest.raises(AttnmagError, match="no rows to average"):
        reports.mean_ci(frame.iloc[:0], value="norm", by="layer")


def test_site_ratios_are_the_mean_log_difference_at_the_same_token():
    sites = site_frame(30, 2)
    ratios = reports.site_ratios(sites, layers=[1], conf_level=0.9)
    assert list(ratios.columns[:2]) == ["site", "layer"]
    assert ratios["site"].tolist() == ["attn", "mlp"] and set(ratios["layer"]) == {1}
    keys = ["sequence", "layer", "position"]
    rows = sites[(sites["layer"] == 1) & (sites["position"] >= 1)]
    resid = rows[rows["site"] == "resid"].set_index(keys)["log_norm"]
    for row in ratios.itertuples(index=False):
        own = rows[rows["site"] == row.site].set_index(keys)["log_norm"]
        paired = (own - resid).rename("log_ratio").reset_index()
        fit = _cluster_fit(paired, "log_ratio")
        low, high = fit.conf_int(alpha=0.1).iloc[0]
        assert row.mean == pytest.approx(fit.params.iloc[0], rel=1e-12)
        assert (row.conf_low, row.conf_high) == pytest.approx((low, high), rel=1e-9)
        assert row.n == len(paired)
    scale = {"attn": 0.05, "mlp": 0.2}  # the simulation's ratios, before the noise
    for row in ratios.itertuples(index=False):
        assert row.mean == pytest.approx(np.log(scale[row.site]), abs=0.1)


def test_site_ratios_need_the_reference_and_another_site(frame):
    sites = site_frame(10, 1)
    with pytest.raises(AttnmagError, match="need a site column with 'resid' and another site"):
        reports.site_ratios(sites[sites["site"] == "resid"])
    with pytest.raises(AttnmagError, match="the frame holds sites None"):
        reports.site_ratios(frame)
    against_mlp = reports.site_ratios(sites, reference="mlp")
    assert set(against_mlp["site"]) == {"attn", "resid"}


@pytest.fixture(scope="module")
def long_frame() -> pd.DataFrame:
    return simulated_frame(16, 2, length=(700, 1024), seed=5)


@pytest.mark.parametrize("last", [1, 30, 63, 64, 65, 200, 1023, 1024, 4095])
def test_bins_only_past_the_threshold_and_they_cover_every_position(last):
    width = summaries.position_bin_width(last)
    assert (width == 1) == (last + 1 <= summaries.BIN_THRESHOLD)
    rows = pd.DataFrame(
        {"sequence": np.arange(last + 1) % 3, "position": np.arange(last + 1), "v": 1.0}
    )
    cells = summaries.means_by_position(rows, value="v")
    if width == 1:
        assert list(cells["position"]) == list(range(last + 1))
        return
    assert len(cells) <= summaries.BIN_THRESHOLD + 1 and (cells["bin_width"] == width).all()
    bounds = zip(cells["first_position"], cells["last_position"], strict=True)
    covered = np.concatenate([np.arange(a, b + 1) for a, b in bounds])
    np.testing.assert_array_equal(covered, np.arange(last + 1))  # each position once, in order
    assert cells["first_position"].iloc[0] == cells["last_position"].iloc[0] == 0
    assert (cells["n"] == cells["last_position"] - cells["first_position"] + 1).all()


def test_a_bin_mean_is_the_mean_of_its_tokens_with_a_cluster_robust_interval(long_frame):
    cells = reports.position_means(long_frame, value="norm", max_position=1024, conf_level=0.9)
    assert summaries.position_bin_width(int(long_frame["position"].max())) == 16
    assert len(cells) == 2 * (1 + 64) and set(cells["bin_width"]) == {16}
    several = cells[cells["n_groups"] > 1]
    assert len(several) > 100
    for cell in several.iloc[[0, 1, 40, 63, 100, -1]].itertuples(index=False):
        rows = long_frame[
            (long_frame["layer"] == cell.layer)
            & long_frame["position"].between(cell.first_position, cell.last_position)
        ]
        fit = _cluster_fit(rows, "norm")
        low, high = fit.conf_int(alpha=0.1).iloc[0]
        assert cell.mean == pytest.approx(rows["norm"].astype(float).mean(), rel=1e-12)
        assert cell.position == pytest.approx(rows["position"].mean(), rel=1e-12)
        assert cell.std_error == pytest.approx(fit.bse.iloc[0], rel=1e-9)
        assert (cell.conf_low, cell.conf_high) == pytest.approx((low, high), rel=1e-9)
        assert cell.n == len(rows) and cell.n_groups == rows["sequence"].nunique()
        assert cell.log_mean == pytest.approx(np.log(cell.mean))


def test_bins_can_be_asked_for_and_switched_off(long_frame):
    both = long_frame[long_frame["position"] <= 40]
    wide = reports.position_means_across_layers(both, max_position=40, bin_width=8)
    assert list(wide["last_position"]) == [0, 8, 16, 24, 32, 40]
    whole = reports.position_means(long_frame, max_position=1024, bin_width=1)
    assert len(whole) == 2 * (long_frame["position"].max() + 1) and "bin_width" not in whole
