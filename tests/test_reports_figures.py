"""The five figures: Figures returned, nothing printed or left behind, labelled, and fast."""

from __future__ import annotations

import matplotlib as mpl
import pandas as pd
import pytest
from matplotlib.figure import Figure

from attnmag import models
from attnmag.reports import figures
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulated_frame(80, 4, lag1=0.3, seed=2)


@pytest.fixture(scope="module")
def tables(frame) -> dict[str, pd.DataFrame]:
    return fake_tables(frame)


def _draw_all(frame, tables, *, max_position=30) -> dict[str, Figure]:
    return {
        "valid_tokens": figures.plot_valid_tokens(frame),
        "layer_norms": figures.plot_layer_norms(frame),
        "position_norms": figures.plot_position_norms(frame, max_position=max_position),
        "position_trend": figures.plot_position_trend(
            frame, tables["position_trend"], max_position=max_position
        ),
        "lag_effects": figures.plot_lag_effects(tables["lag_effects"]),
    }


def test_figures_are_returned_and_leave_no_trace(frame, tables, capsys):
    import matplotlib.pyplot as plt

    rc_before = dict(mpl.rcParams)
    backend = mpl.get_backend()
    drawn = _draw_all(frame, tables)
    assert all(isinstance(fig, Figure) for fig in drawn.values())
    assert capsys.readouterr() == ("", "")
    assert plt.get_fignums() == []
    assert mpl.get_backend() == backend
    assert dict(mpl.rcParams) == rc_before


def test_axis_labels_say_what_and_in_which_units(frame, tables):
    drawn = _draw_all(frame, tables)
    labels = {
        name: " ".join(ax.get_xlabel() + " " + ax.get_ylabel() for ax in fig.axes)
        for name, fig in drawn.items()
    }
    assert "log of the L2 norm of the attention update" in labels["layer_norms"]
    assert "mean L2 norm of the attention update" in labels["position_norms"]
    assert "log of the mean L2 norm" in labels["position_trend"]
    assert "slope (change in log norm per position)" in labels["position_trend"]
    assert "one position earlier" in labels["lag_effects"]
    assert "sequence length (real tokens)" in labels["valid_tokens"]


def test_coefficient_panels_show_every_method_with_intervals(frame, tables):
    fig = figures.plot_position_trend(frame, tables["position_trend"])
    slope = next(ax for ax in fig.axes if ax.get_ylabel().startswith("slope"))
    assert [t.get_text() for t in slope.get_legend().get_texts()] == ["aggregate", "ols", "mixed"]
    assert len(slope.containers) == 3  # one errorbar container per method
    lags = figures.plot_lag_effects(tables["lag_effects"])
    assert all(any(line.get_ydata()[0] == 0 for line in ax.get_lines()) for ax in lags.axes)


def test_fits_that_did_not_converge_get_their_own_open_markers(frame):
    lags = fake_tables(frame, unconverged=(1, 3))["lag_effects"]
    fig = figures.plot_lag_effects(lags)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == [
        "ols (pooled: co-variation across texts)",
        "initial_conditions (within texts)",
        "initial_conditions: not converged",
    ]
    open_markers = fig.axes[1].containers[2].lines[0]
    assert open_markers.get_markerfacecolor() == "white"
    assert sorted(round(x) for x in open_markers.get_xdata()) == [1, 3]


def test_the_lag_figure_shades_the_layers_where_the_estimators_disagree(frame):
    lags = fake_tables(frame, gmm_apart=(2,))["lag_effects"]
    fig = figures.plot_lag_effects(lags)
    lag1, lag2 = fig.axes
    spans = [
        p for p in lag1.patches if p.get_facecolor()[:3] == mpl.colors.to_rgb(figures.FLAG_COLOUR)
    ]
    assert len(spans) == 1 and spans[0].get_x() < 2 < spans[0].get_x() + spans[0].get_width()
    assert not lag2.patches  # the lag-2 estimates agree in every layer
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1] == "initial_conditions and gmm > 2 gmm SEs apart"
    assert [c.get_label() for c in lag1.containers] == [
        "ols (pooled: co-variation across texts)",
        "initial_conditions (within texts)",
        "gmm (within texts)",
    ]


def test_every_method_keeps_one_colour_across_figures():
    colours = figures.method_colours(["gmm"])
    names = [m for methods in models.METHODS.values() for m in methods]
    assert set(names) <= set(colours)
    assert len({colours[m] for m in names}) == len(set(names))
    assert figures.method_colours(["ols", "other"])["ols"] == colours["ols"]


def test_the_trend_figure_fits_lines_of_another_method(frame, tables):
    fig = figures.plot_position_trend(frame, tables["position_trend"], fit_method="ols")
    assert "mean log of the L2 norm" in fig.axes[0].get_ylabel()
    trend = tables["position_trend"][tables["position_trend"]["method"] == "ols"]
    fig = figures.plot_position_trend(frame, trend)
    assert "'ols'" in fig.axes[0].get_title()


def test_layer_colours_follow_one_sequential_palette():
    colours = figures.layer_colours(range(30))
    lightness = [sum(c[:3]) for c in colours.values()]
    assert lightness == sorted(lightness, reverse=True)
    assert figures.layer_colours([0, 29])[29] == colours[29]


def test_png_and_svg_bytes(frame):
    fig = figures.plot_valid_tokens(frame)
    assert figures.figure_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in figures.figure_bytes(fig, fmt="svg")[:400]


def test_a_full_size_frame_draws_every_figure():
    """1,066 texts x 30 layers (~1M rows); how long it takes is measured in benchmarks/."""
    frame = simulated_frame(1066, 30, length=(5, 60), lag1=0.2, seed=7)
    assert len(frame) > 900_000
    tables = fake_tables(frame)
    drawn = _draw_all(frame, tables)
    assert len(drawn) == 5
    for fig in drawn.values():
        assert figures.figure_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
