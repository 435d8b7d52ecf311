"""The figures: composites return a Figure that shows itself in a notebook, the panels
draw on the Axes they are given; layers= selects, hue= colours by model, site or method;
nothing printed or left behind; labelled; fast."""

from __future__ import annotations

import inspect
import io
import struct

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from attnmag import AttnmagError, models, reports
from attnmag.reports import figures, panels
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables, grouped_frame, site_frame

PNG = b"\x89PNG\r\n\x1a\n"


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
    assert "mean L2 norm (log scale)" in labels["position_norms"]
    assert "% above (+) or below (-) the layer's own mean" in labels["position_norms"]
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
        p
        for p in lag1.patches
        if p.get_facecolor()[:3] == mpl.colors.to_rgb(figures.SHADES["apart"])
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
    colours = panels.method_colours(["gmm"])
    names = [m for methods in models.METHODS.values() for m in methods]
    assert set(names) <= set(colours)
    assert len({colours[m] for m in names}) == len(set(names))
    assert panels.method_colours(["ols", "other"])["ols"] == colours["ols"]


def test_the_trend_figure_fits_lines_of_another_method(frame, tables):
    fig = figures.plot_position_trend(frame, tables["position_trend"], fit_method="ols")
    assert "mean log of the L2 norm" in fig.axes[0].get_ylabel()
    trend = tables["position_trend"][tables["position_trend"]["method"] == "ols"]
    fig = figures.plot_position_trend(frame, trend)
    assert "'ols'" in fig.axes[0].get_title()


def test_layer_colours_follow_one_sequential_palette():
    colours = panels.layer_colours(range(30))
    lightness = [sum(c[:3]) for c in colours.values()]
    assert lightness == sorted(lightness, reverse=True)
    assert panels.layer_colours([0, 29])[29] == colours[29]


def test_png_and_svg_bytes(frame):
    fig = figures.plot_valid_tokens(frame)
    assert figures.figure_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in figures.figure_bytes(fig, fmt="svg")[:400]


@pytest.mark.parametrize("name", ["layer_norms", "position_norms", "lag_effects"])
def test_png_bytes_are_those_savefig_writes_and_leave_the_figure_as_it_was(frame, tables, name):
    fig = _draw_all(frame, tables)[name]
    canvas, dpi = fig.canvas, fig.dpi
    drawn = figures.figure_bytes(fig, dpi=90)
    assert (fig.canvas, fig.dpi) == (canvas, dpi)
    saved = io.BytesIO()
    _draw_all(frame, tables)[name].savefig(saved, format="png", dpi=90, metadata={"Software": None})
    assert drawn == saved.getvalue()


def test_a_full_size_frame_draws_every_figure():
    """1,066 texts x 30 layers (~1M rows); how long it takes is measured in benchmarks/."""
    frame = simulated_frame(1066, 30, length=(5, 60), lag1=0.2, seed=7)
    assert len(frame) > 900_000
    tables = fake_tables(frame)
    drawn = _draw_all(frame, tables)
    assert len(drawn) == 5
    for fig in drawn.values():
        assert figures.figure_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grouped() -> pd.DataFrame:
    return grouped_frame(n_sequences=30, n_layers=3)


@pytest.fixture(scope="module")
def site_tables(grouped) -> dict[str, pd.DataFrame]:
    """Tables of the small model fitted per site, carrying the ``site`` column."""
    small = grouped[grouped["model"] == "small"]
    out: dict[str, list] = {"position_trend": [], "lag_effects": []}
    for site in ("attn", "mlp"):
        fitted = fake_tables(small[small["site"] == site].drop(columns=["model", "site"]))
        for name in out:
            out[name].append(fitted[name].assign(site=site))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in out.items()}


def _axes_level(frame, tables) -> dict:
    """Each axes-level plot as a call taking ``ax`` (and any keywords)."""
    trend, lags = tables["position_trend"], tables["lag_effects"]
    return {
        "plot_token_grid": lambda **kw: panels.plot_token_grid(frame, **kw),
        "plot_sequence_lengths": lambda **kw: panels.plot_sequence_lengths(frame, **kw),
        "plot_norm_violins": lambda **kw: panels.plot_norm_violins(frame, **kw),
        "plot_layer_means": lambda **kw: panels.plot_layer_means(frame, **kw),
        "plot_position_heatmap": lambda **kw: panels.plot_position_heatmap(frame, **kw),
        "plot_position_means": lambda **kw: panels.plot_position_means(frame, **kw),
        "plot_layer_levels": lambda **kw: panels.plot_layer_levels(frame, **kw),
        "plot_trend_fits": lambda **kw: panels.plot_trend_fits(frame, trend, **kw),
        "plot_coefficients": lambda **kw: panels.plot_coefficients(lags, term="lag1", **kw),
        "plot_site_ratios": lambda **kw: panels.plot_site_ratios(site_frame(20, 2), **kw),
        "plot_head_means": lambda **kw: panels.plot_head_means(_heads(frame), **kw),
        "plot_head_coefficients": lambda **kw: panels.plot_head_coefficients(
            _head_trend(frame), **kw
        ),
    }


def test_every_public_plot_takes_its_data_first_and_layers_by_keyword():
    plots = [name for name in reports.__all__ if name.startswith("plot_")]
    assert len(plots) == 21
    for name in plots:
        parameters = inspect.signature(getattr(reports, name)).parameters
        first = next(iter(parameters.values()))
        assert first.name == "data" and first.kind is first.POSITIONAL_OR_KEYWORD
        assert parameters["layers"].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert "Parameters\n    ----------" in getattr(reports, name).__doc__, name


def test_axes_level_plots_draw_on_the_axes_given_and_return_it(frame, tables, capsys):
    import matplotlib.pyplot as plt

    calls = _axes_level(frame, tables)
    assert set(calls) == {
        name
        for name in reports.__all__
        if name.startswith("plot_") and "ax" in inspect.signature(getattr(reports, name)).parameters
    }
    for name, call in calls.items():
        fig = Figure()
        ax = fig.add_subplot()
        assert call(ax=ax) is ax, name
        assert ax.has_data() or ax.images or ax.collections, name
    ax = Figure().add_subplot()
    assert reports.plot_layer_means(data=frame, ax=ax) is ax  # data= as seaborn names it
    assert capsys.readouterr() == ("", "")
    assert plt.get_fignums() == []


def test_without_ax_they_draw_on_pyplots_current_axes(frame, tables):
    import matplotlib.pyplot as plt

    try:
        fig, ax = plt.subplots()
        assert panels.plot_layer_means(frame) is ax
        assert len(ax.containers) == frame["layer"].nunique()
    finally:
        plt.close("all")


def test_composites_show_themselves_in_a_notebook(frame, tables):
    for name, fig in _draw_all(frame, tables).items():
        assert isinstance(fig, figures.NotebookFigure), name
        png = fig._repr_png_()
        assert png[:8] == PNG, name
        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: the whole figure
        assert (width, height) == tuple(round(x * 110) for x in fig.get_size_inches()), name


def test_layers_select_what_is_drawn(frame, tables):
    ax = panels.plot_layer_means(frame, layers=[0, 2], ax=Figure().add_subplot())
    assert sorted(round(c.lines[0].get_xdata()[0]) for c in ax.containers) == [0, 2]
    ax = panels.plot_position_heatmap(frame, layers=1, ax=Figure().add_subplot())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1"]
    ax = panels.plot_coefficients(
        tables["position_trend"], term="position", layers=[3], ax=Figure().add_subplot()
    )
    assert all(np.round(c.lines[0].get_xdata()).tolist() == [3] for c in ax.containers)
    fig = figures.plot_lag_effects(tables["lag_effects"], layers=range(2))
    xs = np.concatenate([c.lines[0].get_xdata() for c in fig.axes[0].containers])
    assert sorted(set(np.round(xs).astype(int))) == [0, 1]
    fig = figures.plot_position_trend(frame, tables["position_trend"], layers=[0, 1])
    assert len(fig.axes[0].containers) == 2  # one errorbar series per layer
    assert sum(line.get_linestyle() == "-" for line in fig.axes[0].get_lines()) == 2  # fits
    with pytest.raises(AttnmagError, match=r"layers \[9\] are not in the data"):
        figures.plot_layer_norms(frame, layers=[9])


def test_hue_colours_by_model_and_site(grouped):
    small = grouped[grouped["model"] == "small"]
    ax = panels.plot_layer_means(small, ax=Figure().add_subplot())  # the one column with two
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["attn", "mlp"]
    colours = [mpl.colors.to_rgb(c.lines[0].get_color()) for c in ax.containers]
    assert colours[0] != colours[1]
    mlp = np.asarray(ax.containers[1].lines[0].get_ydata(), dtype=float)
    expected = reports.layer_means(small[small["site"] == "mlp"])["mean"].to_numpy()
    np.testing.assert_allclose(mlp, expected)
    attn = grouped[grouped["site"] == "attn"]
    ax = panels.plot_position_means(attn, hue="model", ax=Figure().add_subplot())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "small (95% CI)",
        "large (95% CI)",
    ]
    ax = panels.plot_sequence_lengths(attn, ax=Figure().add_subplot())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["small", "large"]
    fig = figures.plot_valid_tokens(attn)
    assert len(fig.axes) == 3 and fig.axes[0].get_title().endswith(": small")
    fig = figures.plot_position_norms(small, hue="site")
    titled = [ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title().startswith("site")]
    assert titled == ["site attn", "site mlp"]
    fig = figures.plot_layer_norms(attn, layers=[1, 2])
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["small", "large"]


def test_hue_colours_tables_by_site_or_method(grouped, site_tables):
    trend = site_tables["position_trend"]
    ols = trend[trend["method"] == "ols"]
    ax = panels.plot_coefficients(ols, term="position", ax=Figure().add_subplot())
    assert [c.get_label() for c in ax.containers] == ["attn", "mlp"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["attn", "mlp"]
    assert ax.get_legend().get_title().get_text() == "site"
    bare = panels.plot_coefficients(ols, term="position", legend=False, ax=Figure().add_subplot())
    assert bare.get_legend() is None
    ax = panels.plot_coefficients(
        trend[trend["site"] == "mlp"], term="position", ax=Figure().add_subplot()
    )
    assert [c.get_label() for c in ax.containers] == ["aggregate", "ols", "mixed"]
    small = grouped[grouped["model"] == "small"]
    fig = figures.plot_position_trend(small, trend, hue="site", fit_method="ols")
    slope = next(ax for ax in fig.axes if ax.get_ylabel().startswith("slope"))
    assert [t.get_text() for t in slope.get_legend().get_texts()] == ["attn", "mlp"]
    top = fig.axes[0]
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["attn", "mlp"]
    lags = site_tables["lag_effects"]
    fig = figures.plot_lag_effects(lags[lags["method"] == "gmm"], hue="site")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["attn", "mlp"]


def test_the_fitted_lines_are_the_tables_per_series(grouped, site_tables):
    small = grouped[grouped["model"] == "small"]
    trend = site_tables["position_trend"]
    ax = panels.plot_trend_fits(
        small, trend, hue="site", fit_method="ols", layers=[2], ax=Figure().add_subplot()
    )
    lines = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert len(lines) == 2
    for site, line in zip(("attn", "mlp"), lines, strict=True):
        row = trend[(trend["site"] == site) & (trend["method"] == "ols") & (trend["layer"] == 2)]
        estimate = row.set_index("term")["estimate"]
        expected = estimate["Intercept"] + estimate["position"] * np.arange(1, 31)
        np.testing.assert_allclose(line.get_ydata(), expected)


def test_several_series_without_a_hue_for_them_is_a_clear_error(grouped, site_tables):
    with pytest.raises(AttnmagError, match=r"several values of \['site'\] and hue='model'"):
        panels.plot_layer_means(grouped, ax=Figure().add_subplot())
    with pytest.raises(AttnmagError, match=r"this plot draws one series.*\['model', 'site'\]"):
        panels.plot_position_heatmap(grouped, ax=Figure().add_subplot())
    with pytest.raises(AttnmagError, match="hue='head' is not a column to colour by"):
        panels.plot_layer_means(grouped, hue="head", ax=Figure().add_subplot())
    with pytest.raises(AttnmagError, match=r"several values of \['site'\] and hue='method'"):
        panels.plot_coefficients(
            site_tables["position_trend"], term="position", ax=Figure().add_subplot()
        )
    with pytest.raises(AttnmagError, match="no 'slope' rows"):
        panels.plot_coefficients(site_tables["position_trend"], term="slope")


def test_heads_take_a_hue_of_their_own(frame):
    heads = pd.concat([frame.assign(head=h) for h in range(3)], ignore_index=True)
    heads["head"] = heads["head"].astype(np.int16)
    ax = panels.plot_layer_means(heads, layers=[0], ax=Figure().add_subplot())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert reports.sequence_lengths(heads).equals(reports.sequence_lengths(frame))


def test_site_ratios_draw_one_colour_per_site_against_the_stream():
    sites = site_frame(30, 3)
    ax = panels.plot_site_ratios(sites, layers=[0, 2], ax=Figure().add_subplot())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["attention update", "MLP update"]
    ratios = reports.site_ratios(sites, layers=[0, 2])
    for container, site in zip(ax.containers, ("attn", "mlp"), strict=True):
        y = np.asarray(container.lines[0].get_ydata(), dtype=float)
        np.testing.assert_allclose(y, ratios.loc[ratios["site"] == site, "mean"])
        x = np.asarray(container.lines[0].get_xdata(), dtype=float)
        assert sorted(np.round(x).astype(int)) == [0, 2]
    assert "residual stream" in ax.get_title() and "95% CI" in ax.get_title()
    two = pd.concat([sites.assign(model="a"), sites.assign(model="b")], ignore_index=True)
    with pytest.raises(AttnmagError, match="this plot draws one series"):
        panels.plot_site_ratios(two, ax=Figure().add_subplot())


def _heads(frame: pd.DataFrame, n_heads: int = 4) -> pd.DataFrame:
    """``frame`` as if measured per head: head h's norms are (h + 1) times the frame's."""
    parts = []
    for head in range(n_heads):
        norm = (frame["norm"] * (head + 1)).astype(np.float32)
        parts.append(frame.assign(head=head, norm=norm, log_norm=np.log(norm.astype(float))))
    out = pd.concat(parts, ignore_index=True)
    out["head"] = out["head"].astype(np.int16)
    return out


def _head_trend(frame: pd.DataFrame) -> pd.DataFrame:
    """A trend table per head: the ols rows of ``fake_tables`` with slopes that grow by head,
    significant in heads 0 and 1 only."""
    ols = fake_tables(frame, trend_methods=("ols",))["position_trend"]
    parts = []
    for head in range(4):
        part = ols.assign(head=head)
        slope = part["term"] == "position"
        part.loc[slope, "estimate"] = 0.01 * (head - 1.5)
        part.loc[slope, "p_adjusted"] = 0.001 if head < 2 else 0.5
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_head_heatmaps_hold_the_means_and_mark_significant_slopes(frame):
    heads = _heads(frame)
    ax = panels.plot_head_means(heads, layers=[1, 2], ax=Figure().add_subplot())
    cells = ax.collections[0].get_array().reshape(2, 4)
    means = reports.layer_means(heads, layers=[1, 2])
    np.testing.assert_allclose(cells, means.pivot(index="layer", columns="head", values="mean"))
    np.testing.assert_allclose(cells[:, 1] - cells[:, 0], np.log(2), rtol=1e-5)
    trend = _head_trend(frame)
    ax = panels.plot_head_coefficients(trend, ax=Figure().add_subplot())
    layers = trend["layer"].nunique()
    grid = ax.collections[0].get_array().reshape(layers, 4)
    np.testing.assert_allclose(grid[0], [-0.015, -0.005, 0.005, 0.015])
    dots = ax.collections[1].get_offsets()
    assert sorted({int(x - 0.5) for x, _ in dots}) == [0, 1] and len(dots) == 2 * layers
    with pytest.raises(AttnmagError, match="needs a head column"):
        panels.plot_head_means(frame, ax=Figure().add_subplot())
    with pytest.raises(AttnmagError, match="this plot draws one series"):
        two = pd.concat([trend, trend.assign(method="mixed")], ignore_index=True)
        panels.plot_head_coefficients(two, ax=Figure().add_subplot())


def test_relative_depth_lines_up_models_of_different_depths(frame, tables):
    deep = frame.assign(model="deep")
    shallow = frame[frame["layer"] <= 1].assign(model="shallow")
    both = pd.concat([deep, shallow], ignore_index=True)
    both["model"] = pd.Categorical(both["model"], categories=["deep", "shallow"])
    ax = panels.plot_layer_means(both, hue="model", depth=True, ax=Figure().add_subplot())
    xs = [np.asarray(c.lines[0].get_xdata(), dtype=float) for c in ax.containers]
    np.testing.assert_allclose(xs[0], np.array([0, 1 / 3, 2 / 3, 1]) - 0.05)
    np.testing.assert_allclose(xs[1], np.array([0, 1]) + 0.05)
    assert ax.get_xlabel().startswith("relative depth")
    ols = tables["position_trend"][tables["position_trend"]["method"] == "ols"]
    table = pd.concat(
        [ols.assign(model="deep"), ols[ols["layer"] <= 1].assign(model="shallow")],
        ignore_index=True,
    )
    ax = panels.plot_coefficients(
        table, term="position", hue="model", depth=True, ax=Figure().add_subplot()
    )
    assert [c.get_label() for c in ax.containers] == ["deep", "shallow"]
    xs = [np.asarray(c.lines[0].get_xdata(), dtype=float) for c in ax.containers]
    np.testing.assert_allclose(xs[1], np.array([0, 1]) + 0.05)
