"""The report's figures show what they claim: each layer's change along positions relative to
its own level, the trend by the inference methods, and shading that picks out a minority."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from attnmag.reports import figures, panels
from attnmag.reports.summaries import lag_comparison
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frame = simulated_frame(80, 4, lag1=0.3, seed=5)
    # Layers far apart in level, as in a real model: a linear colour scale would hide the rest.
    frame["norm"] = frame["norm"] * (1 + 99 * (frame["layer"] == 3))
    frame["log_norm"] = np.log(frame["norm"])
    return frame


def test_the_heatmap_shows_each_layer_relative_to_its_own_mean(frame):
    ax = panels.plot_position_heatmap(frame, max_position=20, ax=Figure().add_subplot())
    cells = ax.collections[0].get_array().reshape(4, 21)
    rest = frame[frame["position"].between(1, 20)]
    level = rest.groupby("layer")["norm"].mean()
    at = frame[frame["position"] == 5].groupby("layer")["norm"].mean()
    np.testing.assert_allclose(cells[:, 5], 100 * (at / level - 1).to_numpy(), rtol=1e-6)
    # the loud layer's row is on the same scale as the others: no row is all one extreme
    assert np.abs(cells[3, 1:]).mean() < 3 * np.abs(cells[:3, 1:]).mean()
    low, high = ax.collections[0].get_clim()
    assert low == -high  # centred at the layer's own mean


def test_the_levels_beside_the_heatmap_are_each_layers_mean_with_its_interval(frame):
    fig = figures.plot_position_norms(frame, max_position=20)
    levels, heatmap = fig.axes[:2]
    dots = levels.containers[0].lines[0]
    rest = frame[frame["position"].between(1, 20)]
    expected = rest.groupby("layer")["norm"].mean().to_numpy()
    np.testing.assert_allclose(np.asarray(dots.get_xdata(), float), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dots.get_ydata(), float), np.arange(4) + 0.5)
    assert levels.get_xscale() == "log"
    assert levels.get_ylim() == heatmap.get_ylim()  # one row per layer, side by side


def test_no_figure_overlays_a_line_per_layer(frame):
    tables = fake_tables(frame)
    for fig in (
        figures.plot_position_norms(frame, max_position=20),
        figures.plot_trend_coefficients(tables["position_trend"]),
    ):
        for ax in fig.axes:
            drawn = [
                line
                for line in ax.get_lines()
                if len(line.get_xdata()) > 2 and line.get_linestyle() not in ("None", "")
            ]
            assert len(drawn) < 4, [line.get_label() for line in drawn]


def test_the_trend_figure_draws_the_inference_methods_with_their_intervals(frame):
    trend = fake_tables(frame)["position_trend"]
    fig = figures.plot_trend_coefficients(trend)
    slope = fig.axes[0]
    assert [t.get_text() for t in slope.get_legend().get_texts()] == ["ols", "mixed"]
    assert len(slope.containers) == 2 and all(c.has_yerr for c in slope.containers)
    ols = trend[(trend["method"] == "ols") & (trend["term"] == "position")]
    drawn = slope.containers[0].lines[0].get_ydata()
    np.testing.assert_allclose(np.sort(np.asarray(drawn, float)), np.sort(ols["estimate"]))
    only = trend[trend["method"] == "aggregate"]
    fig = figures.plot_trend_coefficients(only)  # a table without them: what it has
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["aggregate"]


def _shaded(ax) -> list[float]:
    return sorted(
        round(p.get_x() + p.get_width() / 2)
        for p in ax.patches
        if p.get_facecolor()[:3] in {mpl.colors.to_rgb(c) for c in figures.SHADES.values()}
    )


@pytest.mark.parametrize("apart", [(1,), (0, 1, 2), (0, 1)])
def test_shading_picks_out_a_minority_of_layers(frame, apart):
    lags = fake_tables(frame, gmm_apart=apart)["lag_effects"]
    fig = figures.plot_lag_effects(lags)
    lag1 = fig.axes[0]
    shaded = _shaded(lag1)
    kind, layers = figures.shaded_layers(lag_comparison(lags), "lag1")
    assert shaded == layers
    if len(apart) == 2:  # half the layers either way: neither is a minority
        assert kind is None and not shaded
        return
    assert 0 < len(shaded) < 4 / 2  # a minority of the 4 layers
    assert kind == ("apart" if len(apart) <= 2 else "agree")
    assert set(layers) == (set(apart) if kind == "apart" else {0, 1, 2, 3} - set(apart))
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    word = "> 2 gmm SEs apart" if kind == "apart" else "within 2 gmm SEs"
    assert any(name.endswith(word) for name in names)
