"""Axes-level plots, seaborn-style: each draws one panel on the Axes it is given.

Holds:
- ``plot_token_grid``: which positions of each text hold a real token;
- ``plot_sequence_lengths``: histogram of real tokens per text;
- ``plot_norm_violins``: distribution of log norms per layer (a seeded sample of tokens);
- ``plot_layer_means``: mean per layer with its cluster-robust interval;
- ``plot_position_heatmap``: layer x position heatmap of the mean norm, each layer
  relative to its own mean;
- ``plot_layer_levels``: each layer's mean norm (the heatmap's reference) with its CI;
- ``plot_position_means``: mean norm by position, per layer and over layers;
- ``plot_head_means``, ``plot_head_coefficients``: layer x head heatmaps of the mean norm
  and of a term's estimate, significant cells marked;
- ``plot_site_ratios``: each site's norm over the residual stream's, per layer;
- ``plot_trend_fits``: log mean norm by position with the fitted lines of a trend table;
- ``plot_coefficients``: one term's estimates per layer with their intervals;
- ``layer_colours``, ``method_colours``, ``hue_colours``: the palettes used throughout;
- ``ordered_levels``, ``hue_column``, ``check_one_series``, ``table_hues``,
  ``matching_rows``: which series a plot draws and what it colours by, shared with the
  figures.

Every plot takes the frame (or a shard folder's view, ``folder.Folder``; or a coefficient
table) first as ``data``, ``layers=`` to draw
some layers only, and ``ax=`` (pyplot's current Axes when None, as seaborn does); it
returns the Axes. Those that can draw several series take ``hue=``: ``model``, ``site`` or
``head`` for a frame, ``method``, ``site`` or ``head`` for a table (left as None, the one
of those columns that holds several values; any other grouping column must hold one
value). Intervals computed from the frame use the ``conf_level`` given;
intervals from a coefficient table are drawn as the table computed them and labelled with
the level it carries. The frame is aggregated before anything is drawn (see
``attnmag.reports.summaries``). Past ``BIN_THRESHOLD`` positions, the position plots draw
means over bins of positions (equal widths, position 0 alone; see
``summaries.position_bin_width``), and their x-axis label says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.patches import Patch

from attnmag import models
from attnmag.errors import AttnmagError
from attnmag.models import CONF_LEVEL, MAX_POSITION
from attnmag.reports.docs import shared_docs
from attnmag.reports.folder import (
    Folder,
    last_position,
    levels,
    positions_between,
    sample_note,
    sample_rows,
    where_in,
)
from attnmag.reports.summaries import (
    ALPHA,
    SERIES_COLUMNS,
    interval_level,
    layer_levels,
    layer_means,
    means_by_position,
    ordered_methods,
    percent,
    position_bin_width,
    position_means,
    position_means_across_layers,
    select_layers,
    sequence_lengths,
    site_ratios,
    takes_fits,
)

__all__ = [
    "check_one_series",
    "hue_colours",
    "hue_column",
    "layer_colours",
    "matching_rows",
    "method_colours",
    "ordered_levels",
    "plot_coefficients",
    "plot_head_coefficients",
    "plot_head_means",
    "plot_layer_levels",
    "plot_layer_means",
    "plot_norm_violins",
    "plot_position_heatmap",
    "plot_position_means",
    "plot_sequence_lengths",
    "plot_site_ratios",
    "plot_token_grid",
    "plot_trend_fits",
    "table_hues",
]

Layers = int | Iterable[int] | None

LAYER_PALETTE = "crest"
#: Which colours of seaborn's 10-colour "colorblind" palette the methods (and the levels of
#: other hues) take, in turn: vermillion comes late, as it is hard to tell from orange.
PALETTE_ORDER = (0, 1, 2, 4, 9, 5, 8, 7, 6, 3)
#: What each site's norm measures, for axis labels.
SITE_WORDS = {"attn": "attention update", "mlp": "MLP update", "resid": "residual stream"}


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or pyplot's current Axes as seaborn's axes-level functions use."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.gca()


def _layer_norm(layers: Iterable[int]) -> Normalize:
    values = list(layers)
    return Normalize(vmin=min(values), vmax=max(max(values), min(values) + 1))


def layer_colours(layers: Iterable[int]) -> dict[int, tuple[float, float, float, float]]:
    """One colour per layer from the sequential layer palette (by layer index).

    Parameters
    ----------
    layers : iterable of int
        The layers drawn.

    Returns
    -------
    dict
        Layer -> RGBA colour; light for early layers, dark for late ones.

    Examples
    --------
    >>> len(layer_colours(range(12)))
    12
    """
    layers = sorted(set(int(x) for x in layers))
    cmap = sns.color_palette(LAYER_PALETTE, as_cmap=True)
    norm = _layer_norm(layers)
    return {layer: cmap(norm(layer)) for layer in layers}


def _layer_colourbar(ax: Axes, layers: Iterable[int]) -> None:
    """A colour bar that keys the layer palette, in place of a 30-entry legend."""
    mappable = mpl.cm.ScalarMappable(
        norm=_layer_norm(layers), cmap=sns.color_palette(LAYER_PALETTE, as_cmap=True)
    )
    bar = ax.figure.colorbar(mappable, ax=ax, label="layer", fraction=0.04, pad=0.02)
    bar.locator = mpl.ticker.MaxNLocator(integer=True)
    bar.update_ticks()


def _palette(n: int) -> list[tuple[float, float, float]]:
    if n > len(PALETTE_ORDER):
        return sns.color_palette("husl", n)
    palette = sns.color_palette("colorblind", 10)
    return [palette[i] for i in PALETTE_ORDER]


def method_colours(methods: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per method: the methods of ``models.METHODS`` keep theirs in every figure.

    Parameters
    ----------
    methods : iterable of str
        The methods drawn; any not in ``models.METHODS`` takes the next colour.

    Returns
    -------
    dict
        Method -> RGB colour, for every method of ``models.METHODS`` and of ``methods``.

    Examples
    --------
    >>> method_colours(["ols"])["ols"] == method_colours(["gmm", "ols"])["ols"]
    True
    """
    known = ordered_methods(m for names in models.METHODS.values() for m in names)
    names = known + [m for m in ordered_methods(methods) if m not in known]
    order = _palette(10)
    return {name: order[i % len(order)] for i, name in enumerate(names)}


def ordered_levels(data: pd.DataFrame | Folder, column: str) -> list:
    """The values of ``column`` in the order plots draw them.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        A frame, a shard folder's view or a coefficient table.
    column : str
        The column.

    Returns
    -------
    list
        Methods in the order of ``models.METHODS``, categories in their categories' order,
        anything else sorted.

    Examples
    --------
    >>> ordered_levels(pd.DataFrame({"method": ["mixed", "ols", "aggregate"]}), "method")
    ['aggregate', 'ols', 'mixed']
    """
    if column == "method":
        return ordered_methods(data[column])
    return levels(data, column)


def hue_colours(column: str, levels: Sequence) -> dict:
    """One colour per level of a hue column (``method``, ``model``, ``site`` or ``head``).

    Parameters
    ----------
    column : str
        The column coloured by; methods keep ``method_colours``' colours.
    levels : sequence
        Its values, in the order they take the palette's colours.

    Returns
    -------
    dict
        Level -> RGB colour.

    Examples
    --------
    >>> list(hue_colours("site", ["attn", "mlp"]))
    ['attn', 'mlp']
    """
    if column == "method":
        return method_colours(levels)
    palette = _palette(len(levels))
    return {level: palette[i] for i, level in enumerate(levels)}


def hue_column(
    data: pd.DataFrame | Folder, hue: str | None, *, choices: Sequence[str]
) -> str | None:
    """The column to colour by: ``hue``, else the one of ``choices`` holding several values.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        What is drawn: a frame, a shard folder's view or a coefficient table.
    hue : str, optional
        The column asked for; it must be one of ``choices`` that ``data`` has.
    choices : sequence of str
        The columns the plot may colour by.

    Returns
    -------
    str or None
        The column, or None where every one of ``choices`` holds one value. Where another
        of them holds several values an ``AttnmagError`` says so, as its series would be
        drawn over one another.

    Examples
    --------
    >>> hue_column(sites, None, choices=("site", "head"))
    'site'
    """
    present = [c for c in choices if c in data.columns]
    several = [c for c in present if len(ordered_levels(data, c)) > 1]
    if hue is not None and hue not in present:
        raise AttnmagError(
            f"hue={hue!r} is not a column to colour by here: choose one of {present or None}"
        )
    if hue is None and several:
        hue = several[0]
    others = [c for c in several if c != hue]
    if others:
        raise AttnmagError(
            f"the data hold several values of {others} and hue={hue!r}; colour by one with "
            f"hue= and select rows of the others, e.g. {_selection(data, others[0])}"
        )
    return hue


def check_one_series(data: pd.DataFrame | Folder, choices: Sequence[str] = SERIES_COLUMNS) -> None:
    """Refuse data of several series, for a plot that draws one.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        What is drawn.
    choices : sequence of str
        The grouping columns that must hold one value each.

    Examples
    --------
    >>> check_one_series(both)
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: this plot draws one series, ... ['model']...
    """
    several = [c for c in choices if c in data.columns and len(ordered_levels(data, c)) > 1]
    if several:
        raise AttnmagError(
            f"this plot draws one series, and the data hold several values of {several}: "
            f"select rows first, e.g. {_selection(data, several[0])}"
        )


def _selection(data: pd.DataFrame | Folder, column: str) -> str:
    """The code that selects the rows of ``column``'s first value, for error messages."""
    return f"data[data[{column!r}] == {ordered_levels(data, column)[0]!r}]"


def _quantity(data: pd.DataFrame | Folder) -> str:
    """What the norms measure, for labels: the attention update unless sites say otherwise."""
    if "site" not in data.columns:
        return SITE_WORDS["attn"]
    sites = ordered_levels(data, "site")
    return SITE_WORDS.get(sites[0], sites[0]) if len(sites) == 1 else "update or stream"


def _bin_width(rows: pd.DataFrame | Folder, max_position: int) -> int:
    """The bin width of the positions of ``rows`` up to ``max_position`` (1: no bins)."""
    last = last_position(positions_between(rows, last=max_position))
    return 1 if last is None else position_bin_width(last)


def _position_label(width: int, *, points: bool = True, first: int = 0) -> str:
    """The x-axis label of a position plot from position ``first``, saying how positions
    are binned (with ``points``, that each bin is drawn at its tokens' mean position)."""
    if width == 1:
        return "position"
    where = ", drawn at the mean position of their tokens" if points else ""
    alone = "; position 0 alone" if first == 0 else ""
    return f"position (means over bins of {width} positions{where}{alone})"


def _layer_ticks(ax: Axes, layers: Sequence[int]) -> None:
    """Integer layer ticks, thinned so that 30+ layers stay legible."""
    layers = sorted(layers)
    step = max(1, int(np.ceil(len(layers) / 16)))
    ax.set_xticks(layers[::step])
    ax.set_xlim(min(layers) - 0.7, max(layers) + 0.7)


def _layer_axis(rows: pd.DataFrame | Folder, data: pd.DataFrame, *, depth: bool) -> np.ndarray:
    """The x of each row: its layer, or with ``depth`` its layer over the deepest layer
    ``data`` holds for its model, so that models of different depths line up."""
    layer = rows["layer"].to_numpy(np.float64)
    if not depth:
        return layer
    if "model" in rows.columns:
        names = ordered_levels(data, "model")
        deepest = {m: ordered_levels(where_in(data, "model", [m]), "layer")[-1] for m in names}
        last = rows["model"].map(deepest).to_numpy(np.float64)
    else:
        last = float(ordered_levels(data, "layer")[-1])
    return layer / np.maximum(last, 1.0)


def _finish_layer_axis(ax: Axes, layers: Sequence[int], *, depth: bool) -> None:
    """Layer ticks, or the relative depth axis from 0 (first layer) to 1 (deepest)."""
    if depth:
        ax.set(xlabel="relative depth (layer / deepest layer)", xlim=(-0.05, 1.05))
    else:
        ax.set_xlabel("layer")
        _layer_ticks(ax, layers)


def _offsets(n: int, width: float = 0.6) -> np.ndarray:
    """Dodge offsets for ``n`` series around each layer."""
    step = width / max(n, 1)
    return (np.arange(n) - (n - 1) / 2) * step


@shared_docs
def plot_token_grid(
    data: pd.DataFrame | Folder, *, layers: Layers = None, ax: Axes | None = None
) -> Axes:
    """Which positions of each text hold a real token, one row per text, longest first.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The tidy frame (or a shard folder's view), of one model (select one where it holds several).
    {layers_read}
    {ax}

    {returns_ax}

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> plot_token_grid(frame, ax=ax) is ax
    True
    """
    check_one_series(data, ("model",))
    ax = _axes(ax)
    rows = select_layers(data, layers)
    note = sample_note(rows)
    if isinstance(rows, Folder) and note:
        rows = where_in(rows, "sequence", rows.picked())
    lengths = sequence_lengths(rows)["length"].sort_values(ascending=False, kind="stable")
    width = int(lengths.max())
    mask = np.arange(width)[None, :] < lengths.to_numpy()[:, None]
    colours = ["#e8e8e8", sns.color_palette(LAYER_PALETTE)[3]]
    ax.imshow(
        mask,
        aspect="auto",
        interpolation="nearest",
        cmap=ListedColormap(colours),
        vmin=0,
        vmax=1,  # fixed, or texts all of one length would take the "no token" colour
        extent=(-0.5, width - 0.5, len(lengths), 0),
    )
    ax.grid(False)
    ax.set(
        xlabel="position (0-based index among the text's real tokens)",
        ylabel=f"text ({len(lengths):,} of {len(data.texts):,} sampled, longest first)"
        if note
        else f"text (n = {len(lengths):,}, longest first)",
        title="Real tokens by text and position",
    )
    ax.legend(
        handles=[
            Patch(color=colours[1], label="real token"),
            Patch(color=colours[0], label="no token"),
        ],
        loc="lower right",
        frameon=True,
    )
    return ax


@shared_docs
def plot_sequence_lengths(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    hue: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Histogram of real tokens per text, with the median marked (per model with ``hue``).

    Parameters
    ----------
    {data}
    {layers_read}
    hue : {"model"}, optional
        Colour by model; None does so where the frame holds several models.
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_sequence_lengths(both, hue="model")
    >>> ax.get_xlabel()
    'sequence length (real tokens)'
    """
    hue = hue_column(data, hue, choices=("model",))
    ax = _axes(ax)
    lengths = sequence_lengths(select_layers(data, layers))
    if hue is None:
        colour = sns.color_palette(LAYER_PALETTE)[3]
        sns.histplot(lengths, x="length", discrete=True, ax=ax, color=colour, edgecolor="white")
        medians = {None: (float(lengths["length"].median()), "black")}
    else:
        levels = ordered_levels(data, hue)
        colours = hue_colours(hue, levels)
        lengths[hue] = pd.Categorical(lengths[hue].astype(object), categories=levels)
        sns.histplot(
            lengths,
            x="length",
            hue=hue,
            hue_order=levels,
            palette=colours,
            discrete=True,
            element="step",
            ax=ax,
        )
        medians = {
            level: (float(part["length"].median()), colours[level])
            for level, part in lengths.groupby(hue, observed=True)
        }
    for i, (level, (median, colour)) in enumerate(medians.items()):
        ax.axvline(median, color=colour, linestyle="--", linewidth=1)
        ax.text(
            median,
            0.97 - 0.06 * i,
            f" median {median:g}" if level is None else f" {level}: median {median:g}",
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="left",
            color=colour,
        )
    ax.set(
        xlabel="sequence length (real tokens)", ylabel="number of texts", title="Sequence lengths"
    )
    return ax


@shared_docs
def plot_norm_violins(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    hue: str | None = None,
    first_position: int = 1,
    sample: int = 1000,
    seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """Violins of the log norm per layer, drawn from a seeded sample of tokens.

    Parameters
    ----------
    {data}
    {layers}
    hue : {"model", "site", "head"}, optional
        Split each layer's violin by this column; None does so by the one holding several
        values, else colours by layer.
    {first_position}
    sample : int
        About how many tokens per layer (and hue level) the violins draw on.
    seed : int
        Seed of the sample.
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_norm_violins(frame, layers=[0, 5, 10])
    >>> [label.get_text() for label in ax.get_xticklabels()]
    ['0', '5', '10']
    """
    hue = hue_column(data, hue, choices=SERIES_COLUMNS)
    ax = _axes(ax)
    rows = select_layers(data, layers)
    rows = positions_between(rows, first=first_position)
    read = dict.fromkeys(["layer", "log_norm", "site", *([hue] if hue else [])])
    rows, note = sample_rows(rows, list(read))  # site: it names what the norms measure
    shown = sorted(rows["layer"].unique().tolist())
    series = len(ordered_levels(rows, hue)) if hue else 1
    n_draw = min(len(rows), sample * len(shown) * series)
    drawn = rows[["layer", "log_norm", *([hue] if hue else [])]].sample(n=n_draw, random_state=seed)
    share = (
        f"a random {n_draw / len(rows):.0%} of the tokens" if n_draw < len(rows) else "every token"
    ) + (f" of {data.sample_texts:,} sampled texts" if note else "")
    which = f"positions {first_position} and later" if first_position else "all positions"
    common = dict(
        data=drawn,
        x="layer",
        y="log_norm",
        order=shown,
        cut=0,
        inner="quart",
        linewidth=0.6,
        density_norm="width",
        native_scale=True,
        ax=ax,
    )
    if hue is None:
        sns.violinplot(
            **common, hue="layer", palette=layer_colours(shown), hue_order=shown, legend=False
        )
    else:
        levels = ordered_levels(rows, hue)
        drawn[hue] = pd.Categorical(drawn[hue].astype(object), categories=levels)
        sns.violinplot(**common, hue=hue, hue_order=levels, palette=hue_colours(hue, levels))
        ax.legend(title=hue, loc="best")
    ax.set(
        xlabel="layer",
        ylabel=f"log of the L2 norm of the {_quantity(rows)}",
        title=f"Distribution per layer ({which}; violins drawn from {share})",
    )
    _layer_ticks(ax, shown)
    return ax


def _mean_series(ax: Axes, part: pd.DataFrame, x: object, colour: object, label: str) -> None:
    """Draw one series of means (``mean``, ``conf_low``, ``conf_high`` columns) at ``x`` as
    points joined by a line, with their intervals as error bars."""
    err = np.vstack([part["mean"] - part["conf_low"], part["conf_high"] - part["mean"]])
    ax.errorbar(
        x,
        part["mean"],
        yerr=err,
        fmt="o-",
        color=colour,
        markersize=4,
        capsize=2,
        linewidth=0.8,
        label=label,
    )


@shared_docs
def plot_layer_means(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    hue: str | None = None,
    value: str = "log_norm",
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
    depth: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Mean per layer with its interval (every token, cluster-robust by text).

    Parameters
    ----------
    {data}
    {layers}
    hue : {"model", "site", "head"}, optional
        One colour per value of this column, dodged; None colours by the one holding
        several values, else by layer.
    value : str
        The column averaged (``log_norm`` or ``norm``).
    {first_position}
    conf_level : float
        The level of the intervals (see ``summaries.layer_means``).
    {depth}
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_layer_means(both, hue="model", conf_level=0.9)
    >>> ax.get_xlabel(), [text.get_text() for text in ax.get_legend().get_texts()]
    ('layer', ['gpt2-tiny', 'llama-tiny'])
    """
    hue = hue_column(data, hue, choices=SERIES_COLUMNS)
    ax = _axes(ax)
    means = layer_means(
        data, value=value, layers=layers, first_position=first_position, conf_level=conf_level
    )
    shown = sorted(means["layer"].unique().tolist())
    x = _layer_axis(means, data, depth=depth)
    step = 1 / max(float(ordered_levels(data, "layer")[-1]), 1.0) if depth else 1.0
    if hue is None:
        colours = layer_colours(shown)
        for row, at in zip(means.itertuples(index=False), x, strict=True):
            ax.errorbar(
                at,
                row.mean,
                yerr=[[row.mean - row.conf_low], [row.conf_high - row.mean]],
                fmt="o",
                color=colours[row.layer],
                markersize=5,
                capsize=3,
            )
        ax.plot(x, means["mean"], color="grey", linewidth=0.8, zorder=0)
    else:
        levels = ordered_levels(data, hue)
        colours = hue_colours(hue, levels)
        for level, offset in zip(levels, _offsets(len(levels)) * step, strict=True):
            where = (means[hue] == level).to_numpy()
            _mean_series(ax, means[where], x[where] + offset, colours[level], str(level))
        ax.legend(title=hue, loc="best")
    scale = "log of the L2 norm" if value == "log_norm" else "L2 norm"
    ax.set(
        ylabel=f"mean {scale}\nof the {_quantity(data)}",
        title=f"Mean per layer with {percent(conf_level)} CI (all tokens, clustered by text)",
    )
    _finish_layer_axis(ax, shown, depth=depth)
    return ax


@shared_docs
def plot_position_heatmap(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    max_position: int = MAX_POSITION,
    percentiles: tuple[float, float] = (2, 98),
    relative: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of the mean norm per layer and position, by default relative to each layer's
    own mean, so that the change along positions shows in every layer whatever its level.

    Relative cells are the percent difference from the layer's mean norm over positions 1 to
    ``max_position``, on a diverging scale centred at 0 whose limits are the ``percentiles[1]``
    percentile of the absolute differences at positions 1 and later (``plot_layer_levels``
    draws those means). Absolute cells are the mean norm, the colour limits the given
    percentiles of the cells at positions 1 and later. Either way the first token (the
    attention sink) may run off the scale. Past ``BIN_THRESHOLD`` positions a cell is a bin of
    positions, labelled by its first and last.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The tidy frame (or a shard folder's view), of one series (select one model, site and
        head where it has several).
    {layers}
    {max_position}
    percentiles : tuple of float
        The percentiles of the cells that bound the colour scale.
    relative : bool
        Each layer relative to its own mean (True), or the mean norm itself.
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_position_heatmap(sites[sites["site"] == "mlp"], max_position=20)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('position', 'layer')
    """
    check_one_series(data)
    ax = _axes(ax)
    cells = position_means(data, layers=layers, max_position=max_position)
    width = int(cells["bin_width"].iloc[0]) if "bin_width" in cells else 1
    column = "position" if width == 1 else "first_position"
    grid = cells.pivot(index="layer", columns=column, values="mean")
    quantity = _quantity(data)
    if relative:
        level = layer_levels(data, layers=layers, max_position=max_position)["mean"]
        grid = 100 * (grid.div(level.reindex(grid.index), axis=0) - 1)
        rest = np.abs(grid.loc[:, grid.columns >= 1].to_numpy())
        limit = float(np.nanpercentile(rest if rest.size else np.abs(grid), percentiles[1]))
        limit = limit if limit > 0 else 1.0
        style = {"cmap": "vlag", "center": 0, "vmin": -limit, "vmax": limit}
        label = "% above (+) or below (-) the layer's own mean"
        title = (
            f"Mean norm at each position relative to the layer's mean over positions 1 to "
            f"{max_position}"
        )
    else:
        rest = grid.loc[:, grid.columns >= 1].to_numpy()
        vmin, vmax = np.nanpercentile(rest if rest.size else grid.to_numpy(), percentiles)
        style = {"cmap": "rocket_r", "vmin": vmin, "vmax": vmax}
        label = f"mean L2 norm of the {quantity}"
        title = (
            f"Mean norm by layer and position (colour limits: percentiles "
            f"{percentiles[0]:g} and {percentiles[1]:g} of the cells at positions >= 1)"
        )
    if width > 1:
        last = cells.groupby("first_position")["last_position"].first()
        grid.columns = [
            f"{first}" if first == last[first] else f"{first}-{last[first]}"
            for first in grid.columns
        ]
    sns.heatmap(
        grid,
        ax=ax,
        **style,
        xticklabels=max(2, int(np.ceil(grid.shape[1] / 16))),
        yticklabels=max(1, len(grid) // 16),
        cbar_kws={"label": label, "extend": "both", "fraction": 0.04, "pad": 0.02},
    )
    ax.set(xlabel=_position_label(width, points=False), ylabel="layer", title=title)
    return ax


@shared_docs
def plot_layer_levels(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
    ax: Axes | None = None,
) -> Axes:
    """Each layer's mean norm over positions 1 to ``max_position`` with its interval, one
    row per layer top to bottom as ``plot_position_heatmap`` draws them, on a log scale: the
    level each relative row of the heatmap is relative to.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The tidy frame (or a shard folder's view), of one series.
    {layers}
    {max_position}
    conf_level : float
        The level of the intervals (cluster-robust by text).
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_layer_levels(frame, max_position=20)
    >>> print(ax.get_xlabel())
    mean L2 norm (log scale),
    95% CI
    """
    check_one_series(data)
    ax = _axes(ax)
    level = layer_levels(
        data, layers=layers, max_position=max_position, conf_level=conf_level
    ).sort_index()
    rows = np.arange(len(level)) + 0.5  # a heatmap's row centres
    ax.errorbar(
        level["mean"],
        rows,
        xerr=[level["mean"] - level["conf_low"], level["conf_high"] - level["mean"]],
        fmt="o",
        color="black",
        markersize=3.5,
        capsize=2,
        linewidth=1,
    )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.set_ylim(len(level), 0)
    step = max(1, len(level) // 16)
    ax.set_yticks(rows[::step], [str(x) for x in level.index[::step]])
    ax.set(
        xlabel=f"mean L2 norm (log scale),\n{percent(conf_level)} CI",
        ylabel="layer",
        title="Level per layer",
    )
    return ax


@shared_docs
def plot_position_means(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    hue: str | None = None,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
    ax: Axes | None = None,
) -> Axes:
    """Mean norm by position on a log scale: each layer, and the mean over layers with its CI.

    Parameters
    ----------
    {data}
    layers : int, iterable of int or None
        The layers drawn and averaged over; None means every layer.
    hue : {"model", "site", "head"}, optional
        One mean over layers per value of this column, in its colour (the layers' own lines
        are then left out); None does so by the one holding several values.
    {max_position}
    conf_level : float
        The level of the intervals of the mean over layers (cluster-robust by text).
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_position_means(sites, hue="site", layers=range(6, 12))
    >>> ax.get_xlabel()
    'position'
    """
    hue = hue_column(data, hue, choices=SERIES_COLUMNS)
    ax = _axes(ax)
    width = _bin_width(select_layers(data, layers), max_position)
    overall = position_means_across_layers(
        data, layers=layers, max_position=max_position, conf_level=conf_level, bin_width=width
    )
    if hue is None:
        cells = position_means(data, layers=layers, max_position=max_position, bin_width=width)
        shown = sorted(cells["layer"].unique().tolist())
        colours = layer_colours(shown)
        for layer, part in cells.groupby("layer"):
            ax.plot(part["position"], part["mean"], color=colours[layer], linewidth=0.8, alpha=0.8)
        series = {f"mean over layers ({percent(conf_level)} CI)": (overall, "black")}
    else:
        levels = ordered_levels(data, hue)
        colours = hue_colours(hue, levels)
        series = {
            f"{level} ({percent(conf_level)} CI)": (overall[overall[hue] == level], colours[level])
            for level in levels
        }
    for label, (part, colour) in series.items():
        ax.fill_between(
            part["position"], part["conf_low"], part["conf_high"], color=colour, alpha=0.25, lw=0
        )
        ax.plot(part["position"], part["mean"], color=colour, linewidth=2, label=label)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.LogFormatter())
    ax.yaxis.set_minor_formatter(mpl.ticker.LogFormatter(minor_thresholds=(2, 0.5)))
    ax.set(
        xlabel=_position_label(width),
        ylabel=f"mean L2 norm of the {_quantity(data)}\n(log scale)",
        title="Mean norm by position: each layer, and the mean over layers"
        if hue is None
        else f"Mean norm by position over layers, per {hue}",
        xlim=(-0.5, max_position + 0.5),
    )
    ax.legend(loc="upper right", title=hue)
    if hue is None:
        _layer_colourbar(ax, shown)
    return ax


@shared_docs
def plot_site_ratios(
    data: pd.DataFrame | Folder,
    *,
    reference: str = "resid",
    layers: Layers = None,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
    ax: Axes | None = None,
) -> Axes:
    """Each site's norm relative to the ``reference`` site's, per layer, one colour per site.

    The points are ``summaries.site_ratios``: the mean over tokens of the difference of log
    norms, with its interval (cluster-robust by text); 0 means as large as ``reference``.

    Parameters
    ----------
    {data}
        Of one model and head, with a ``site`` column holding ``reference`` and another
        site (``extract.update_norms``).
    reference : str
        The site the others are compared with.
    {layers}
    {first_position}
    conf_level : float
        The level of the intervals.
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_site_ratios(sites)
    >>> print(ax.get_ylabel())
    mean log of the norm over
    the residual stream's (0: as large)
    """
    check_one_series(data, ("model", "head"))
    ax = _axes(ax)
    ratios = site_ratios(
        data,
        reference=reference,
        layers=layers,
        first_position=first_position,
        conf_level=conf_level,
    )
    levels = ordered_levels(ratios, "site")
    colours = hue_colours("site", levels)
    for level, offset in zip(levels, _offsets(len(levels), width=0.4), strict=True):
        part = ratios[ratios["site"] == level]
        label = SITE_WORDS.get(level, str(level))
        _mean_series(ax, part, part["layer"] + offset, colours[level], label)
    ax.axhline(0, color="black", linewidth=0.8)
    words = SITE_WORDS.get(reference, reference)
    ax.set(
        xlabel="layer",
        ylabel=f"mean log of the norm over\nthe {words}'s (0: as large)",
        title=f"Relative to the {words}, token by token ({percent(conf_level)} CI)",
    )
    ax.legend(title="site", loc="best")
    _layer_ticks(ax, ratios["layer"].unique().tolist())
    return ax


def _head_heatmap(grid: pd.DataFrame, ax: Axes, *, label: str, **style: object) -> None:
    """Draw a layer x head grid as a heatmap, ticks on at most 16 heads and layers, the
    colour bar labelled ``label``; ``style`` goes to ``seaborn.heatmap`` (cmap, limits)."""
    sns.heatmap(
        grid,
        ax=ax,
        xticklabels=max(1, grid.shape[1] // 16),
        yticklabels=max(1, len(grid) // 16),
        cbar_kws={"label": label, "fraction": 0.04, "pad": 0.02},
        **style,
    )


@shared_docs
def plot_head_means(
    data: pd.DataFrame | Folder,
    *,
    value: str = "log_norm",
    layers: Layers = None,
    first_position: int = 1,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of the mean of ``value`` per layer and head.

    Parameters
    ----------
    {data}
        Of one model and site, with a ``head`` column (``attention_norms(heads=True)``).
    value : str
        The column averaged (``log_norm`` or ``norm``).
    {layers}
    {first_position}
    {ax}

    {returns_ax}

    Examples
    --------
    >>> ax = plot_head_means(heads, layers=range(0, 4, 2))
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('head', 'layer')
    """
    if "head" not in data.columns:
        raise AttnmagError("plot_head_means needs a head column: measure with heads=True")
    check_one_series(data, ("model", "site"))
    ax = _axes(ax)
    means = layer_means(data, value=value, layers=layers, first_position=first_position)
    grid = means.pivot(index="layer", columns="head", values="mean")
    scale = "log of the L2 norm" if value == "log_norm" else "L2 norm"
    _head_heatmap(grid, ax, label=f"mean {scale}", cmap="rocket_r")
    ax.set(xlabel="head", ylabel="layer", title=f"Mean {scale} per layer and head")
    return ax


@takes_fits
@shared_docs
def plot_head_coefficients(
    data: pd.DataFrame,
    *,
    term: str = "position",
    layers: Layers = None,
    alpha: float = ALPHA,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of one term's estimate per layer and head, significant cells marked.

    Parameters
    ----------
    data : pandas.DataFrame
        A coefficient table of one method, model and site, with a ``head`` column (fitted
        on a frame of ``attention_norms(heads=True)``).
    term : str
        The term drawn (the position slope by default).
    {layers}
    alpha : float
        A dot marks ``p_adjusted < alpha`` (Holm across the table's groups).
    {ax}

    {returns_ax}

    Examples
    --------
    >>> trend = models.fit_all(heads, trend_methods=["ols"], lag_methods=[])["position_trend"]
    >>> ax = plot_head_coefficients(trend)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('head', 'layer')
    """
    rows = select_layers(data[data["term"] == term], layers)
    if "head" not in rows.columns or rows.empty:
        raise AttnmagError(
            f"plot_head_coefficients needs {term!r} rows with a head column: fit a frame "
            "measured with heads=True"
        )
    check_one_series(rows, ("method", *(c for c in _table_series(rows) if c != "head")))
    ax = _axes(ax)
    grid = rows.pivot(index="layer", columns="head", values="estimate")
    marked = rows.pivot(index="layer", columns="head", values="p_adjusted") < alpha
    limit = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
    _head_heatmap(grid, ax, label=f"coefficient on {term}", cmap="vlag", vmin=-limit, vmax=limit)
    y, x = np.nonzero(marked.to_numpy())
    ax.scatter(x + 0.5, y + 0.5, s=10, color="black", marker="o", linewidths=0)
    ax.set(
        xlabel="head",
        ylabel="layer",
        title=f"{rows['method'].iloc[0]}: {term} (dot: p_adjusted < {alpha:g})",
    )
    return ax


def _table_series(table: pd.DataFrame) -> list[str]:
    """The grouping columns of a coefficient table: ``model`` (the language model), ``site``
    and ``head`` where it has them."""
    return [column for column in SERIES_COLUMNS if column in table.columns]


def table_hues(table: pd.DataFrame, hue: str | None) -> tuple[str, ...]:
    """What a coefficient table's plot may colour by.

    Parameters
    ----------
    table : pandas.DataFrame
        A coefficient table of ``models``.
    hue : str, optional
        The column asked for.

    Returns
    -------
    tuple of str
        ``method`` and the table's grouping columns (``model``, ``site``, ``head``), and
        ``fit`` (the fit's name) where ``hue`` asks for it.

    Examples
    --------
    >>> table_hues(tables["position_trend"], None)
    ('method',)
    """
    return ("method", *(["fit"] if hue == "fit" else []), *_table_series(table))


def matching_rows(table: pd.DataFrame | Folder, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a coefficient table for the series a frame holds.

    Parameters
    ----------
    table : pandas.DataFrame
        A coefficient table of ``models``.
    frame : pandas.DataFrame or Folder
        The frame drawn beside it.

    Returns
    -------
    pandas.DataFrame
        The rows of ``table`` of the models, sites and heads that ``frame`` has.

    Examples
    --------
    >>> table = pd.concat([tables["position_trend"].assign(model=name) for name in ("a", "b")])
    >>> matching_rows(table, frame.assign(model="a"))["model"].unique().tolist()
    ['a']
    """
    for column in _table_series(table):
        if column in frame.columns:
            table = table[table[column].isin(ordered_levels(frame, column))]
    return table


@takes_fits
@shared_docs
def plot_trend_fits(
    data: pd.DataFrame | Folder,
    trend: pd.DataFrame,
    *,
    layers: Layers = None,
    hue: str | None = None,
    fit_method: str | None = None,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
    ax: Axes | None = None,
) -> Axes:
    """Log norm by position per layer, with the lines one method of ``trend`` fitted.

    With ``aggregate`` the points are the log of the mean norm, otherwise the mean of the log
    norm, each with its interval at ``conf_level`` (cluster-robust by text).

    Parameters
    ----------
    {data}
    {trend}
    {layers}
    hue : {"site", "head"}, optional
        Colour by this column instead of by layer; None does so by the one holding several
        values. The frame must hold one model (fit each model's rows in turn).
    fit_method : str, optional
        The method whose lines are drawn (default: ``aggregate`` where present).
    {max_position}
    first_position : int
        The first position drawn, as the fits' ``first_position``.
    conf_level : float
        The level of the points' intervals.
    {ax}

    {returns_ax}

    Examples
    --------
    >>> trend = tables["position_trend"]
    >>> ax = plot_trend_fits(frame, trend, layers=[0, 5, 11], fit_method="ols")
    >>> ax.get_xlabel()
    'position'
    """
    check_one_series(data, ("model",))  # one language model's points and lines
    hue = hue_column(data, hue, choices=("site", "head"))
    ax = _axes(ax)
    methods = ordered_methods(trend["method"])
    fit_method = fit_method or ("aggregate" if "aggregate" in methods else methods[0])
    if fit_method not in methods:
        raise AttnmagError(f"fit_method={fit_method!r} is not in the trend table: {methods}")
    first = first_position
    rows = positions_between(select_layers(data, layers), first, max_position)
    keys = [*([hue] if hue else []), "layer"]
    width = _bin_width(rows, max_position)
    if fit_method == "aggregate":
        points = position_means(
            rows, max_position=max_position, conf_level=conf_level, bin_width=width
        )
        points = points.rename(columns={"log_mean": "y", "log_low": "low", "log_high": "high"})
        y_label = f"log of the mean L2 norm\nof the {_quantity(data)}"
    else:
        points = means_by_position(
            rows, value="log_norm", by=keys, bin_width=width, conf_level=conf_level
        )
        points = points.rename(columns={"mean": "y", "conf_low": "low", "conf_high": "high"})
        y_label = f"mean log of the L2 norm\nof the {_quantity(data)}"
    fitted = matching_rows(trend[trend["method"] == fit_method], rows)
    fitted = fitted.pivot_table(index=keys, columns="term", values="estimate", observed=True)
    shown = sorted(points["layer"].unique().tolist())
    if hue is None:
        colours = layer_colours(shown)
    else:
        levels = ordered_levels(data, hue)
        by_level = hue_colours(hue, levels)
    t = np.arange(first, max_position + 1)
    for key, part in points.groupby(keys, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        colour = colours[key[-1]] if hue is None else by_level[key[0]]
        err = np.vstack([part["y"] - part["low"], part["high"] - part["y"]])
        ax.errorbar(
            part["position"],
            part["y"],
            yerr=err,
            fmt="o",
            markersize=2.5,
            linewidth=0.7,
            color=colour,
            alpha=0.8,
        )
        index = key if hue else key[0]
        if index in fitted.index:
            line = fitted.loc[index, "Intercept"] + fitted.loc[index, "position"] * t
            ax.plot(t, line, color=colour, linewidth=1.2)
    ax.set(
        xlabel=_position_label(width, first=first),
        ylabel=y_label,
        xlim=(first - 0.7, max_position + 0.7),
        title=f"By position, with {percent(conf_level)} CIs and the lines fitted by '{fit_method}'",
    )
    if hue is None:
        _layer_colourbar(ax, shown)
    else:
        ax.legend(
            handles=[Patch(color=by_level[level], label=str(level)) for level in levels],
            title=hue,
            loc="best",
        )
    return ax


@takes_fits
@shared_docs
def plot_coefficients(
    data: pd.DataFrame,
    *,
    term: str,
    layers: Layers = None,
    hue: str | None = None,
    labels: Mapping[str, str] | None = None,
    zero_line: bool = True,
    legend: bool = True,
    depth: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """One term's estimates per layer with the table's intervals, one colour per hue level.

    Fits that did not converge get an open marker.

    Parameters
    ----------
    data : pandas.DataFrame
        A coefficient table of ``models`` (``position_trend``, ``lag_effects``, ``fit``).
    term : str
        The term drawn (``Intercept``, ``position``, ``lag1``, ...).
    {layers}
    hue : {"method", "model", "site", "head", "fit"}, optional
        One colour per value of this column, dodged; None colours by ``method`` or by the
        grouping column (``model``, ``site``, ``head``) holding several values. ``fit`` (the
        fit's name in a ``models`` table) only where asked for.
    labels : mapping, optional
        Legend labels of hue levels, where they should say more than the level's name.
    zero_line : bool
        Draw a line at zero.
    legend : bool
        Add a legend of the hue levels.
    {depth}
    {ax}

    {returns_ax}

    Examples
    --------
    >>> trend = models.fit_all(frame, trend_methods=["aggregate", "ols"], lag_methods=[])
    >>> ax = plot_coefficients(trend["position_trend"], term="position", hue="method")
    >>> ax.get_xlabel(), len(ax.get_legend().get_texts())
    ('layer', 2)
    """
    rows = select_layers(data[data["term"] == term], layers)
    if rows.empty:
        terms = sorted(data["term"].unique().tolist())
        raise AttnmagError(f"the table has no {term!r} rows: its terms are {terms}")
    hue = hue_column(rows, hue, choices=table_hues(rows, hue))
    hue = hue or ("method" if "method" in rows else None)
    ax = _axes(ax)
    level = percent(interval_level(rows, name=f"{term} coefficient"))
    levels = ordered_levels(rows, hue) if hue else [None]
    colours = hue_colours(hue, levels) if hue else {None: sns.color_palette("colorblind")[0]}
    labels = labels or {}
    step = 1 / max(float(data["layer"].max()), 1.0) if depth else 1.0
    for value, offset in zip(levels, _offsets(len(levels)) * step, strict=True):
        part = (rows if hue is None else rows[rows[hue] == value]).sort_values("layer")
        x = _layer_axis(part, data, depth=depth) + offset
        y = part["estimate"].to_numpy()
        err = np.vstack([y - part["conf_low"].to_numpy(), part["conf_high"].to_numpy() - y])
        bad = ~part["converged"].astype(bool).to_numpy()
        name = labels.get(value, str(value)) if hue else term
        style = dict(capsize=2, linewidth=1, color=colours[value], fmt="o")
        ax.errorbar(x[~bad], y[~bad], yerr=err[:, ~bad], markersize=4, label=name, **style)
        if bad.any():
            ax.errorbar(
                x[bad],
                y[bad],
                yerr=err[:, bad],
                markersize=5,
                markerfacecolor="white",
                label=f"{value if hue else term}: not converged",
                **style,
            )
    if zero_line:
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set(
        ylabel=f"coefficient on {term}",
        title=f"Coefficient on {term} per layer with {level} CI",
    )
    if legend and hue is not None:
        ax.legend(title=hue, loc="best")
    _finish_layer_axis(ax, rows["layer"].unique().tolist(), depth=depth)
    return ax
