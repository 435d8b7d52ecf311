"""The report's five figures, seaborn on matplotlib, each returned as a Figure.

Holds:
- ``plot_valid_tokens``: real tokens per sequence and position, and the length histogram;
- ``plot_layer_norms``: distribution of log norms per layer, and their mean with a CI;
- ``plot_position_norms``: layer x position heatmap of the mean norm, and the mean by position;
- ``plot_position_trend``: log mean norm by position with fitted lines; intercepts and slopes;
- ``plot_lag_effects``: lag-1 and lag-2 coefficients per layer, one colour per method, layers
  where the two within-text estimators disagree shaded;
- ``layer_colours``, ``method_colours``: the palettes used throughout;
- ``figure_bytes``: a Figure rendered to PNG or SVG bytes.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global backend switch)
under a temporary seaborn style. Intervals the figures compute from the frame use the
``conf_level`` they are given; intervals from a coefficient table are drawn as the table
computed them, and labelled with the level it carries. The frame is aggregated before
anything is drawn (see ``attnmag.reports.summaries``), so a million-row frame draws in
about a second per figure.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from attnmag import models
from attnmag.reports.summaries import (
    COMPARED,
    GAP_LIMIT,
    interval_level,
    lag_comparison,
    layer_means,
    mean_ci,
    ordered_methods,
    percent,
    position_means,
    position_means_across_layers,
    sequence_lengths,
)

LAYER_PALETTE = "crest"
FLAG_COLOUR = "#fadbd8"
#: Which colours of seaborn's 10-colour "colorblind" palette the methods take, in turn:
#: vermillion comes late, as it is hard to tell from orange.
PALETTE_ORDER = (0, 1, 2, 4, 9, 5, 8, 7, 6, 3)
LOG_NORM_LABEL = "log of the L2 norm of the attention update"
NORM_LABEL = "mean L2 norm of the attention update"
LAG_WORDS = {"lag1": "one position", "lag2": "two positions"}
LAG_LABELS = {
    "ols": "pooled: co-variation across texts",
    "initial_conditions": "within texts",
    "gmm": "within texts",
}


@contextmanager
def _style() -> Iterator[None]:
    """The seaborn style every figure is drawn under (rcParams restored afterwards)."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        yield


def _layer_norm(layers: Iterable[int]) -> Normalize:
    values = list(layers)
    return Normalize(vmin=min(values), vmax=max(max(values), min(values) + 1))


def layer_colours(layers: Iterable[int]) -> dict[int, tuple[float, float, float, float]]:
    """One colour per layer from the sequential layer palette (by layer index)."""
    layers = sorted(set(int(x) for x in layers))
    cmap = sns.color_palette(LAYER_PALETTE, as_cmap=True)
    norm = _layer_norm(layers)
    return {layer: cmap(norm(layer)) for layer in layers}


def _layer_colourbar(fig: Figure, ax: mpl.axes.Axes, layers: Iterable[int]) -> None:
    """A colour bar that keys the layer palette, in place of a 30-entry legend."""
    mappable = mpl.cm.ScalarMappable(
        norm=_layer_norm(layers), cmap=sns.color_palette(LAYER_PALETTE, as_cmap=True)
    )
    bar = fig.colorbar(mappable, ax=ax, label="layer", fraction=0.04, pad=0.02)
    bar.locator = mpl.ticker.MaxNLocator(integer=True)
    bar.update_ticks()


def method_colours(methods: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per method: the methods of ``models.METHODS`` keep theirs in every figure,
    any other method takes the next colour of the palette."""
    known = ordered_methods(m for names in models.METHODS.values() for m in names)
    names = known + [m for m in ordered_methods(methods) if m not in known]
    palette = sns.color_palette("colorblind", 10)
    order = [palette[i] for i in PALETTE_ORDER]
    return {name: order[i % len(order)] for i, name in enumerate(names)}


def figure_bytes(fig: Figure, *, fmt: str = "png", dpi: int = 110) -> bytes:
    """``fig`` rendered as PNG or SVG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata={"Software": None} if fmt == "png" else {})
    return buffer.getvalue()


def plot_valid_tokens(frame: pd.DataFrame) -> Figure:
    """Real tokens of each sequence by position (sorted by length), and the length histogram."""
    lengths = sequence_lengths(frame).sort_values(ascending=False, kind="stable")
    width = int(lengths.max())
    mask = np.arange(width)[None, :] < lengths.to_numpy()[:, None]
    with _style():
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=(1.3, 1))
        colours = ["#e8e8e8", sns.color_palette(LAYER_PALETTE)[3]]
        left.imshow(
            mask,
            aspect="auto",
            interpolation="nearest",
            cmap=ListedColormap(colours),
            extent=(-0.5, width - 0.5, len(lengths), 0),
        )
        left.grid(False)
        left.set(
            xlabel="position (0-based index among the text's real tokens)",
            ylabel=f"text (n = {len(lengths):,}, longest first)",
            title="Real tokens by text and position",
        )
        left.legend(
            handles=[
                Patch(color=colours[1], label="real token"),
                Patch(color=colours[0], label="no token"),
            ],
            loc="lower right",
            frameon=True,
        )
        sns.histplot(
            x=lengths.to_numpy(), discrete=True, ax=right, color=colours[1], edgecolor="white"
        )
        median = float(lengths.median())
        right.axvline(median, color="black", linestyle="--", linewidth=1)
        right.text(
            median,
            0.97,
            f" median {median:g}",
            transform=right.get_xaxis_transform(),
            va="top",
            ha="left",
        )
        right.set(
            xlabel="sequence length (real tokens)",
            ylabel="number of texts",
            title="Sequence lengths",
        )
    return fig


def plot_layer_norms(
    frame: pd.DataFrame,
    *,
    exclude_first: bool = True,
    sample: int = 1000,
    seed: int = 0,
    conf_level: float = 0.95,
) -> Figure:
    """Violins of log norms per layer (a seeded sample) and the mean per layer with its CI.

    The violins draw on about ``sample`` tokens per layer; the means and intervals use every
    token (cluster-robust by sequence, see ``summaries.mean_ci``).
    """
    rows = frame.loc[frame["position"] >= 1] if exclude_first else frame
    layers = sorted(rows["layer"].unique().tolist())
    colours = layer_colours(layers)
    n_draw = min(len(rows), sample * len(layers))
    drawn = rows[["layer", "log_norm"]].sample(n=n_draw, random_state=seed)
    drawn_words = (
        f"a random {n_draw / len(rows):.0%} of the tokens" if n_draw < len(rows) else "every token"
    )
    means = layer_means(frame, exclude_first=exclude_first, conf_level=conf_level)
    which = "positions 1 and later" if exclude_first else "all positions"
    with _style():
        fig = Figure(figsize=(11, 7.5), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        sns.violinplot(
            data=drawn,
            x="layer",
            y="log_norm",
            hue="layer",
            palette=colours,
            order=layers,
            hue_order=layers,
            legend=False,
            cut=0,
            inner="quart",
            linewidth=0.6,
            density_norm="width",
            native_scale=True,
            ax=top,
        )
        top.set(
            xlabel="",
            ylabel=LOG_NORM_LABEL,
            title=f"Distribution per layer ({which}; violins drawn from {drawn_words})",
        )
        x = means.index.to_numpy()
        for layer, row in means.iterrows():
            bottom.errorbar(
                layer,
                row["mean"],
                yerr=[[row["mean"] - row["conf_low"]], [row["conf_high"] - row["mean"]]],
                fmt="o",
                color=colours[layer],
                markersize=5,
                capsize=3,
            )
        bottom.plot(x, means["mean"], color="grey", linewidth=0.8, zorder=0)
        bottom.set(
            xlabel="layer",
            ylabel="mean log of the L2 norm\nof the attention update",
            title=f"Mean per layer with {percent(conf_level)} CI (all tokens, clustered by text)",
        )
        _layer_ticks(bottom, layers)
    return fig


def _layer_ticks(ax: mpl.axes.Axes, layers: Sequence[int]) -> None:
    """Integer layer ticks, thinned so that 30+ layers stay legible."""
    step = max(1, int(np.ceil(len(layers) / 16)))
    ax.set_xticks(layers[::step])
    ax.set_xlim(min(layers) - 0.7, max(layers) + 0.7)


def plot_position_norms(
    frame: pd.DataFrame,
    *,
    max_position: int = 30,
    percentiles: tuple[float, float] = (2, 98),
    conf_level: float = 0.95,
) -> Figure:
    """Heatmap of the mean norm per layer and position, and the mean by position.

    The heatmap's colour limits are the given percentiles of its cells at positions 1 and
    later, so that the first token (the attention sink) does not wash out the rest; the line
    panel shows each layer (thin, layer palette) and the mean over layers with its CI
    (black), on a log scale.
    """
    cells = position_means(frame, max_position=max_position, conf_level=conf_level)
    grid = cells["mean"].unstack("position")
    vmin, vmax = np.nanpercentile(grid.loc[:, grid.columns >= 1].to_numpy(), percentiles)
    overall = position_means_across_layers(frame, max_position=max_position, conf_level=conf_level)
    layers = grid.index.tolist()
    colours = layer_colours(layers)
    with _style():
        fig = Figure(figsize=(11, 9), layout="constrained")
        top, bottom = fig.subplots(2, 1, height_ratios=(1.1, 1))
        sns.heatmap(
            grid,
            ax=top,
            cmap="rocket_r",
            vmin=vmin,
            vmax=vmax,
            xticklabels=2,
            yticklabels=max(1, len(layers) // 16),
            cbar_kws={"label": NORM_LABEL, "extend": "both", "fraction": 0.04, "pad": 0.02},
        )
        top.set(
            xlabel="position",
            ylabel="layer",
            title=f"Mean norm by layer and position (colour limits: percentiles "
            f"{percentiles[0]:g} and {percentiles[1]:g} of the cells at positions >= 1)",
        )
        for layer in layers:
            part = cells.loc[layer]
            bottom.plot(part.index, part["mean"], color=colours[layer], linewidth=0.8, alpha=0.8)
        bottom.fill_between(
            overall.index,
            overall["conf_low"],
            overall["conf_high"],
            color="black",
            alpha=0.25,
            linewidth=0,
        )
        bottom.plot(
            overall.index,
            overall["mean"],
            color="black",
            linewidth=2,
            label=f"mean over layers ({percent(conf_level)} CI)",
        )
        bottom.set_yscale("log")
        bottom.yaxis.set_major_formatter(mpl.ticker.LogFormatter())
        bottom.yaxis.set_minor_formatter(mpl.ticker.LogFormatter(minor_thresholds=(2, 0.5)))
        bottom.set(
            xlabel="position",
            ylabel=f"{NORM_LABEL}\n(log scale)",
            title="Mean norm by position: each layer, and the mean over layers",
            xlim=(-0.5, max_position + 0.5),
        )
        bottom.legend(loc="upper right")
        _layer_colourbar(fig, bottom, layers)
    return fig


def _dodged(
    ax: mpl.axes.Axes,
    table: pd.DataFrame,
    *,
    term: str,
    methods: Sequence[str],
    zero_line: bool = True,
    labels: dict[str, str] | None = None,
) -> None:
    """Estimates of ``term`` per layer with their intervals, one colour per method, dodged.

    Fits that did not converge get an open marker.
    """
    width = 0.6 / max(len(methods), 1)
    colours = method_colours(methods)
    labels = labels or {}
    for i, method in enumerate(methods):
        part = table[(table["term"] == term) & (table["method"] == method)].sort_values("layer")
        if part.empty:
            continue
        x = part["layer"].to_numpy() + (i - (len(methods) - 1) / 2) * width
        y = part["estimate"].to_numpy()
        err = np.vstack([y - part["conf_low"].to_numpy(), part["conf_high"].to_numpy() - y])
        colour = colours[method]
        bad = ~part["converged"].astype(bool).to_numpy()
        ax.errorbar(
            x[~bad],
            y[~bad],
            yerr=err[:, ~bad],
            fmt="o",
            markersize=4,
            capsize=2,
            linewidth=1,
            color=colour,
            label=labels.get(method, method),
        )
        if bad.any():
            ax.errorbar(
                x[bad],
                y[bad],
                yerr=err[:, bad],
                fmt="o",
                markersize=5,
                capsize=2,
                linewidth=1,
                color=colour,
                markerfacecolor="white",
                label=f"{method}: not converged",
            )
    if zero_line:
        ax.axhline(0, color="black", linewidth=0.8)


def plot_position_trend(
    frame: pd.DataFrame,
    trend: pd.DataFrame,
    *,
    max_position: int = 30,
    exclude_first: bool = True,
    fit_method: str | None = None,
    conf_level: float = 0.95,
) -> Figure:
    """Log norm by position per layer with the fitted lines; intercepts and slopes per layer.

    ``trend`` is a ``models.position_trend`` table (any mix of methods). The top panel shows
    the fit of ``fit_method`` (default: ``aggregate`` where present): with ``aggregate`` the
    points are the log of the mean norm, otherwise the mean of the log norm, each with its
    interval at ``conf_level``. The bottom panels compare the methods' estimates per layer,
    with the intervals ``trend`` holds (at the level of its ``conf_level`` column).
    """
    methods = ordered_methods(trend["method"])
    level = percent(interval_level(trend, name="position_trend"))
    fit_method = fit_method or ("aggregate" if "aggregate" in methods else methods[0])
    first = 1 if exclude_first else 0
    rows = frame.loc[frame["position"].between(first, max_position)]
    if fit_method == "aggregate":
        points = position_means(rows, max_position=max_position, conf_level=conf_level)
        points = points.rename(columns={"log_mean": "y", "log_low": "low", "log_high": "high"})
        y_label = "log of the mean L2 norm\nof the attention update"
    else:
        points = mean_ci(rows, value="log_norm", by=["layer", "position"], conf_level=conf_level)
        points = points.rename(columns={"mean": "y", "conf_low": "low", "conf_high": "high"})
        y_label = "mean log of the L2 norm\nof the attention update"
    fitted = trend[trend["method"] == fit_method].pivot(
        index="layer", columns="term", values="estimate"
    )
    layers = sorted(set(points.index.get_level_values("layer")) | set(trend["layer"]))
    colours = layer_colours(layers)
    t = np.arange(first, max_position + 1)
    with _style():
        fig = Figure(figsize=(11, 10), layout="constrained")
        axes = fig.subplot_mosaic(
            [["trend", "trend"], ["intercept", "position"]], height_ratios=(1.2, 1)
        )
        ax = axes["trend"]
        for layer, part in points.groupby(level="layer"):
            part = part.droplevel("layer")
            err = np.vstack([part["y"] - part["low"], part["high"] - part["y"]])
            ax.errorbar(
                part.index,
                part["y"],
                yerr=err,
                fmt="o",
                markersize=2.5,
                linewidth=0.7,
                color=colours[layer],
                alpha=0.8,
            )
            if layer in fitted.index:
                line = fitted.loc[layer, "intercept"] + fitted.loc[layer, "position"] * t
                ax.plot(t, line, color=colours[layer], linewidth=1.2)
        ax.set(
            xlabel="position",
            ylabel=y_label,
            xlim=(first - 0.7, max_position + 0.7),
            title=f"By position, with {percent(conf_level)} CIs and the lines fitted by "
            f"'{fit_method}'",
        )
        _layer_colourbar(fig, ax, layers)
        for term, label in (
            ("intercept", "intercept (log norm at position 0)"),
            ("position", "slope (change in log norm per position)"),
        ):
            _dodged(axes[term], trend, term=term, methods=methods, zero_line=term != "intercept")
            axes[term].set(
                xlabel="layer",
                ylabel=label,
                title=f"{term.replace('position', 'slope').capitalize()} per layer with {level} CI",
            )
            _layer_ticks(axes[term], layers)
        axes["position"].legend(title="method", loc="best")
    return fig


def plot_lag_effects(lags: pd.DataFrame) -> Figure:
    """Lag-1 and lag-2 coefficients per layer with their intervals, one colour per method.

    ``lags`` is a ``models.lag_effects`` table (any mix of methods); the intervals are the
    table's, labelled with the level of its ``conf_level`` column. The legend says which
    methods describe pooled co-variation and which estimate persistence within texts; where
    both ``initial_conditions`` and ``gmm`` are present, layers where they differ by more
    than ``GAP_LIMIT`` of gmm's standard errors are shaded.

    >>> fig = plot_lag_effects(models.lag_effects(frame, method="gmm"))  # doctest: +SKIP
    """
    methods = ordered_methods(lags["method"])
    level = percent(interval_level(lags, name="lag_effects"))
    layers = sorted(lags["layer"].unique().tolist())
    labels = {m: f"{m} ({LAG_LABELS[m]})" for m in methods if m in LAG_LABELS}
    compared = lag_comparison(lags)
    with _style():
        fig = Figure(figsize=(11, 5.2), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, term in zip(axes, ("lag1", "lag2"), strict=True):
            gap = f"gap_{term}"
            flagged = (
                compared.loc[compared[gap].abs() > GAP_LIMIT, "layer"] if gap in compared else []
            )
            for layer in flagged:
                ax.axvspan(layer - 0.45, layer + 0.45, color=FLAG_COLOUR, linewidth=0, zorder=0)
            _dodged(ax, lags, term=term, methods=methods, labels=labels)
            ax.set(
                xlabel="layer",
                ylabel=f"coefficient on the log norm\n{LAG_WORDS[term]} earlier",
                title=f"{term.replace('lag', 'Lag-')} coefficient with {level} CI",
            )
            _layer_ticks(ax, layers)
        handles, names = axes[1].get_legend_handles_labels()
        if set(COMPARED) <= set(methods):
            default, check = COMPARED
            handles.append(Patch(color=FLAG_COLOUR))
            names.append(f"{default} and {check} > {GAP_LIMIT:g} {check} SEs apart")
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 3))
    return fig
