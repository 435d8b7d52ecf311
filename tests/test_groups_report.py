"""write_report on grouped frames: several models, sites and heads.

The report opens with the sections comparing the groups (models side by side on a relative
depth axis, the sites side by side, the heads as layer x head heatmaps), then gives the five
plain sections for each model's whole attention update; every number a sentence states is
checked against the aggregates and tables it comes from. The heads figure stays readable at
GPT-2 large's 36 layers x 20 heads with 3 models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from attnmag import AttnmagError, extract, models
from attnmag.reports import figures, write_report
from attnmag.reports.findings import head_finding, model_finding, site_finding
from attnmag.reports.summaries import layer_means, site_ratios
from attnmag.reports.write import fit_tables, main_series, series_parts
from tests.test_reports_support import grouped_frame, site_frame

FAST = {"trend_methods": ["aggregate", "ols"], "lag_methods": ["ols", "initial_conditions"]}


def heads_frame(n_sequences: int, n_layers: int, *, n_heads: int = 3, seed: int = 1):
    """``site_frame``'s three sites, plus ``n_heads`` heads of ``attn`` (head -1: the whole
    sub-layer), head h about 0.3 + 0.1 h times the whole update; lags within each series."""
    base = site_frame(n_sequences, n_layers, seed=seed)
    attn = base[base["site"] == "attn"]
    rng = np.random.default_rng(seed)
    parts = [base.assign(head=np.int16(-1))]
    for head in range(n_heads):
        noise = np.exp(rng.normal(0.0, 0.3, len(attn)))
        norm = (attn["norm"].to_numpy(np.float64) * (0.3 + 0.1 * head) * noise).astype(np.float32)
        parts.append(
            attn.assign(head=np.int16(head), norm=norm, log_norm=np.log(norm.astype(np.float64)))
        )
    out = pd.concat(parts, ignore_index=True)
    out["site"] = pd.Categorical(out["site"], categories=["attn", "mlp", "resid"])
    keys = ["sequence", "site", "layer", "head"]
    out = out[extract.frame.frame_columns(["site", "head"])]
    out = out.sort_values([*keys, "position"], kind="stable").reset_index(drop=True)
    lagged = out.groupby(keys, observed=True)["log_norm"]
    out["lag1"], out["lag2"] = lagged.shift(1), lagged.shift(2)
    out.attrs = {"model": f"simulated-{seed}", "corpus": "simulated", "n_texts": n_sequences}
    return out


@pytest.fixture(scope="module")
def both() -> pd.DataFrame:
    return extract.combine({"deep": heads_frame(40, 3, seed=1), "shallow": heads_frame(40, 2)})


@pytest.fixture(scope="module")
def written(both, tmp_path_factory):
    out = tmp_path_factory.mktemp("grouped")
    return write_report(both, out, n_jobs=1, progress=False, **FAST)


def test_a_grouped_report_compares_the_groups_then_shows_each_model(written):
    names = ["models", "sites", "heads"]
    names += [f"{key}-{model}" for model in ("deep", "shallow") for key in _PLAIN]
    expected = [f"figures/figure{i}-{name}.png" for i, name in enumerate(names, start=1)]
    assert [path for path in written if path.startswith("figures/")] == expected
    text = written["report.md"].read_text()
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert titles[1:5] == [
        "## 1. Models side by side",
        "## 2. Sites side by side",
        "## 3. Heads",
        "## 4. Texts and tokens: deep",
    ]
    assert "## 13. Lag effects: shallow" in titles
    assert "Holm's correction across every group fitted (model, site, head, layer)" in text
    assert "deep: model | simulated-1" in text
    html = written["index.html"].read_text()
    assert html.count('<img src="data:image/png;base64,') == len(expected)
    tidy = pd.read_csv(written["position_trend.csv"])
    assert {"model", "site", "head"} <= set(tidy.columns)
    assert len(tidy[["model", "site", "layer", "head"]].drop_duplicates()) == 5 * (3 + 3)


_PLAIN = ("data", "layers", "positions", "trend", "lags")


def test_the_tables_read_back_from_csv_give_the_same_report(both, written, tmp_path):
    tables = {
        name: pd.read_csv(written[f"{name}.csv"])
        for name in ("position_trend", "lag_effects", "glance")
    }
    again = write_report(both, tmp_path, formats=("md",), tables=tables)

    def text(path):
        return [line for line in path.read_text().splitlines() if "wall time" not in line]

    assert text(again["report.md"]) == text(written["report.md"])


def test_each_model_section_shows_that_model_s_whole_attention_update(both):
    tables = fit_tables(both, n_jobs=1, progress=False, **FAST)
    parts = series_parts(both, tables)
    assert [part.label for part in parts] == ["deep", "shallow"]
    assert main_series(both) == {"site": "attn", "head": -1}
    deep = parts[0]
    rows = both[(both["model"] == "deep") & (both["site"] == "attn") & (both["head"] == -1)]
    assert len(deep.frame) == len(rows) and "model" not in deep.frame
    np.testing.assert_array_equal(deep.frame["norm"].to_numpy(), rows["norm"].to_numpy())
    trend = tables["position_trend"]
    own = trend[(trend["model"] == "deep") & (trend["site"] == "attn") & (trend["head"] == -1)]
    assert list(deep.tables["position_trend"].columns) == list(models.tidy.TIDY_COLUMNS)
    np.testing.assert_array_equal(
        deep.tables["position_trend"]["estimate"].to_numpy(), own["estimate"].to_numpy()
    )
    assert deep.frame.attrs["model"] == "simulated-1"


def test_the_grouped_findings_state_the_numbers_they_come_from(both):
    fits = models.fit_all(both, n_jobs=1, progress=False, **FAST)
    trend, lags = fits["position_trend"].tidy, fits["lag_effects"].tidy
    whole = both[both["head"] == -1]
    found = site_finding(whole)
    ratios = site_ratios(whole[whole["model"] == "shallow"])
    mlp = np.exp(ratios[ratios["site"] == "mlp"].set_index("layer")["mean"])
    entry = found.numbers[("shallow", "mlp")]
    assert entry["median_ratio"] == pytest.approx(mlp.median())
    assert (entry["layer_max"], entry["max_ratio"]) == (mlp.idxmax(), pytest.approx(mlp.max()))
    assert f"the mlp norm is a median {entry['median_ratio']:.3g} times" in found.text
    assert entry["n_below"] == 2  # the simulated mlp norm is a fifth of the stream's
    heads = figures.heads_only(both)
    ols = figures.heads_only(trend[trend["method"] == "ols"])
    found = head_finding(heads, ols)
    means = layer_means(heads[heads["model"] == "deep"]).set_index(["layer", "head"])["mean"]
    assert found.numbers["deep"]["largest"] == means.idxmax()
    assert found.numbers["deep"]["n_cells"] == 3 * 3
    assert means.idxmax()[1] == 2  # head 2 is simulated the largest
    main = trend[(trend["site"] == "attn") & (trend["head"] == -1) & (trend["method"] == "ols")]
    lag = lags[(lags["site"] == "attn") & (lags["head"] == -1)]
    lag = lag[lag["method"] == "initial_conditions"]
    found = model_finding(main, lag)
    expected = lag[(lag["model"] == "shallow") & (lag["term"] == "lag1")]["estimate"].median()
    assert found.numbers["shallow"]["median_lag1"] == pytest.approx(expected)
    assert found.numbers["deep"]["n_layers"] == 3


def test_a_plain_frame_s_report_has_no_grouped_sections(tmp_path):
    frame = grouped_frame(30, 2)
    one = frame[(frame["model"] == "small") & (frame["site"] == "attn")]
    plain = one.drop(columns=["model", "site"])
    written = write_report(plain, tmp_path, formats=("md",), n_jobs=1, progress=False, **FAST)
    expected = [f"figures/figure{i}-{key}.png" for i, key in enumerate(_PLAIN, start=1)]
    assert [path for path in written if path.startswith("figures/")] == expected
    text = written["report.md"].read_text()
    assert "grouped by" not in text and "Holm correction across layers" in text


def test_the_heads_figure_stays_readable_at_36_layers_20_heads_and_3_models():
    rng = np.random.default_rng(0)
    layers, heads, names = range(36), range(20), ["a", "b", "c"]
    index = pd.MultiIndex.from_product(
        [names, range(6), layers, heads, range(4)],
        names=["model", "sequence", "layer", "head", "position"],
    )
    frame = index.to_frame(index=False)
    frame["log_norm"] = rng.normal(size=len(frame)) + frame["head"] * 0.05
    frame["model"] = pd.Categorical(frame["model"], categories=names)
    cells = pd.MultiIndex.from_product([names, layers, heads], names=["model", "layer", "head"])
    table = cells.to_frame(index=False).assign(
        method="ols", term="position", estimate=rng.normal(size=len(cells))
    )
    table["p_adjusted"] = rng.uniform(size=len(table))
    fig = figures.plot_heads(frame, table)
    width, height = fig.get_size_inches()
    assert width == 12 and 20 <= height <= 3 * 8.5
    axes = [ax for ax in fig.axes if ax.get_xlabel() == "head"]
    assert len(axes) == 6
    for ax in axes:
        assert len([t for t in ax.get_xticklabels() if t.get_text()]) <= 20
        assert len([t for t in ax.get_yticklabels() if t.get_text()]) <= 18
    assert [ax.get_title().split(":")[0] for ax in axes] == ["a", "a", "b", "b", "c", "c"]
    assert figures.figure_bytes(fig)[:4] == b"\x89PNG"


def test_models_are_drawn_on_a_relative_depth_axis(both):
    fits = models.fit_all(both, trend_methods=["ols"], lag_methods=["ols"], progress=False)
    main = {"site": "attn", "head": -1}
    rows = both[(both["site"] == "attn") & (both["head"] == -1)].drop(columns=["site", "head"])
    trend = fits["position_trend"].tidy
    trend = trend[(trend["site"] == main["site"]) & (trend["head"] == -1)].drop(
        columns=["site", "head"]
    )
    lags = fits["lag_effects"].tidy
    lags = lags[(lags["site"] == "attn") & (lags["head"] == -1)].drop(columns=["site", "head"])
    fig = figures.plot_models(rows, trend, lags)
    slope = next(ax for ax in fig.axes if "position" in ax.get_title())
    xs = [np.asarray(c.lines[0].get_xdata(), dtype=float) for c in slope.containers]
    np.testing.assert_allclose(xs[0] - xs[0].mean() + 0.5, [0, 0.5, 1])  # deep: 3 layers
    assert xs[1].max() - xs[1].min() == pytest.approx(1)  # shallow: 2 layers, same span
    assert slope.get_xlabel().startswith("relative depth")
    with pytest.raises(AttnmagError, match=r"several values of \[.site.\]"):
        figures.plot_models(both[both["head"] == -1], trend, lags, conf_level=0.9)
    assert isinstance(fig, Figure)
    fig = figures.plot_models(rows, trend, lags, layers=[0, 1])
    slope = next(ax for ax in fig.axes if "position" in ax.get_title())
    assert [len(c.lines[0].get_xdata()) for c in slope.containers] == [2, 2]


def test_the_grouped_figures_select_layers(both):
    tables = models.fit_all(both, trend_methods=["ols"], lag_methods=[], progress=False)
    fig = figures.plot_heads(both, tables["position_trend"], layers=[1, 2])
    left = fig.axes[0]
    assert [t.get_text() for t in left.get_yticklabels()] == ["1", "2"]
    fig = figures.plot_sites(both[both["head"] == -1], layers=[0])
    xs = {round(float(x)) for c in fig.axes[1].containers for x in c.lines[0].get_xdata()}
    assert xs == {0}


def test_three_models_of_different_depths_share_the_relative_depth_axis():
    from tests.simulate import simulated_frame

    depths = {"large": 36, "medium": 24, "small": 12}
    both = extract.combine(
        {name: simulated_frame(12, n, length=(4, 8), seed=n) for name, n in depths.items()},
        allow_different_corpora=True,
    )
    tables = models.fit_all(both, trend_methods=["ols"], lag_methods=["ols"], progress=False)
    fig = figures.plot_models(both, tables["position_trend"], tables["lag_effects"])
    for ax in fig.axes:
        xs = [np.asarray(c.lines[0].get_xdata(), dtype=float) for c in ax.containers]
        assert [len(x) for x in xs] == list(depths.values()), ax.get_title()
        low, high = ax.get_xlim()
        assert all(low < x.min() < 0.02 and 0.98 < x.max() < high for x in xs), ax.get_title()
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(depths)
    assert figures.figure_bytes(fig)[:4] == b"\x89PNG"
