"""The report's figures: composites of the panels in ``panels``, each a Figure that shows
itself in a notebook.

Holds:
- ``plot_valid_tokens``: real tokens per text and position, and the length histogram;
- ``plot_layer_norms``: distribution of log norms per layer, and their mean with a CI;
- ``plot_position_norms``: layer x position heatmap of the mean norm relative to each
  layer's own mean, beside each layer's level;
- ``plot_position_trend``: log mean norm by position with fitted lines; intercepts and
  slopes;
- ``plot_trend_coefficients``: slopes and intercepts per layer by the inference methods;
- ``plot_lag_effects``: lag-1 and lag-2 coefficients per layer, one colour per method,
  layers where the two within-text estimators disagree shaded;
- ``plot_heads``: per model, layer x head heatmaps of the mean log norm and of the position
  slope, significant cells marked;
- ``plot_sites``: per model, each site's mean log norm per layer, and attention's and the
  MLP's update relative to the residual stream;
- ``plot_models``: models side by side on a relative depth axis: mean log norms, position
  slopes, lag effects;
- ``heads_only``: the rows of a frame or table that hold single heads (of ``attn``);
- ``NotebookFigure``: a Figure that a notebook draws inline when a cell returns it;
- ``figure_bytes``: a Figure rendered to PNG or SVG bytes.

Each composite takes the frame (or a table) first, ``layers=`` and ``hue=`` as the panels
do, and builds its own Figure without pyplot, under a temporary seaborn style.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from attnmag.errors import AttnmagError
from attnmag.models import CONF_LEVEL, MAX_POSITION
from attnmag.reports.docs import shared_docs
from attnmag.reports.folder import Folder, levels, where_in
from attnmag.reports.panels import (
    SITE_WORDS,
    Layers,
    check_one_series,
    hue_column,
    matching_rows,
    ordered_levels,
    plot_coefficients,
    plot_head_coefficients,
    plot_head_means,
    plot_layer_levels,
    plot_layer_means,
    plot_norm_violins,
    plot_position_heatmap,
    plot_position_means,
    plot_sequence_lengths,
    plot_site_ratios,
    plot_token_grid,
    plot_trend_fits,
    table_hues,
)
from attnmag.reports.summaries import (
    ALPHA,
    COMPARED,
    GAP_LIMIT,
    SERIES_COLUMNS,
    interval_level,
    lag_comparison,
    ordered_methods,
    percent,
    select_layers,
    takes_fits,
)

__all__ = [
    "INFERENCE_METHODS",
    "SHADES",
    "NotebookFigure",
    "figure_bytes",
    "heads_only",
    "plot_heads",
    "plot_lag_effects",
    "plot_layer_norms",
    "plot_models",
    "plot_position_norms",
    "plot_position_trend",
    "plot_trend_coefficients",
    "plot_sites",
    "plot_valid_tokens",
    "shaded_layers",
]

#: The shading of layers where the two within-text estimators are apart, or agree.
SHADES = {"apart": "#fadbd8", "agree": "#d8ecf6"}
LAG_WORDS = {"lag1": "one position", "lag2": "two positions"}
LAG_LABELS = {
    "ols": "pooled: co-variation across texts",
    "initial_conditions": "within texts",
    "gmm": "within texts",
}


class NotebookFigure(Figure):
    """A matplotlib Figure that a notebook shows inline when a cell returns it.

    IPython asks an object for ``_repr_png_``; a plain Figure built without pyplot answers
    only once ``%matplotlib inline`` has registered a formatter.

    Examples
    --------
    >>> fig = plot_layer_norms(frame)
    >>> fig._repr_png_()[:4]  # what a notebook shows when a cell ends with ``fig``
    b'\\x89PNG'
    """

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes."""
        return figure_bytes(self)


@contextmanager
def _style() -> Iterator[None]:
    """The seaborn style every composite is drawn under (rcParams restored afterwards).

    Titles sit at the top of their axes (``axes.titley`` 1.0), where no composite draws
    tick labels: matplotlib then need not measure every tick label of a row of axes, at
    each layout pass and draw, to see whether a title must move up above them.
    """
    with (
        sns.axes_style("whitegrid"),
        sns.plotting_context("notebook", font_scale=0.9),
        mpl.rc_context({"axes.titley": 1.0}),
    ):
        yield


def figure_bytes(fig: Figure, *, fmt: str = "png", dpi: int = 110) -> bytes:
    """``fig`` rendered as PNG or SVG bytes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    fmt : {"png", "svg"}
        The format.
    dpi : int
        Resolution of a PNG.

    Returns
    -------
    bytes
        The file's content (PNG without a software stamp, so that it is reproducible).

    Examples
    --------
    >>> figure_bytes(plot_valid_tokens(frame))[:4]
    b'\\x89PNG'
    >>> figure_bytes(plot_valid_tokens(frame), fmt="svg")[:5]
    b'<?xml'
    """
    buffer = io.BytesIO()
    if fmt != "png":
        fig.savefig(buffer, format=fmt, dpi=dpi)
        return buffer.getvalue()
    # ``savefig`` draws a figure with a layout engine twice: once to lay it out, once to
    # paint it. An Agg canvas's ``print_png`` draws once (``Figure.draw`` lays out first),
    # to the same pixels; the figure's own canvas and dpi are restored afterwards.
    canvas, shown = fig.canvas, fig.dpi
    agg = FigureCanvasAgg(fig)
    try:
        fig.set_dpi(dpi)
        agg.print_png(buffer, metadata={"Software": None})
    finally:
        fig.set_dpi(shown)
        fig.set_canvas(canvas)
    return buffer.getvalue()


@shared_docs
def plot_valid_tokens(
    data: pd.DataFrame | Folder, *, layers: Layers = None, hue: str | None = None
) -> NotebookFigure:
    """Real tokens of each text by position, and the length histogram.

    Parameters
    ----------
    {data}
    {layers_read}
    hue : {"model"}, optional
        Where the frame holds several models: one grid per model, the histogram coloured by
        model (the default when it holds several).

    Returns
    -------
    NotebookFigure
        Grids on the left, the histogram on the right.

    Examples
    --------
    >>> fig = plot_valid_tokens(frame)
    >>> len(fig.axes)
    2
    """
    hue = hue_column(data, hue, choices=("model",))
    parts = (
        {None: data}
        if hue is None
        else {level: where_in(data, hue, [level]) for level in ordered_levels(data, hue)}
    )
    with _style():
        fig = NotebookFigure(figsize=(11, 4.2 * max(1, len(parts) * 0.8)), layout="constrained")
        mosaic = [[f"grid{i}", "lengths"] for i in range(len(parts))]
        axes = fig.subplot_mosaic(mosaic, width_ratios=(1.3, 1))
        for i, (level, part) in enumerate(parts.items()):
            grid = plot_token_grid(part, layers=layers, ax=axes[f"grid{i}"])
            if level is not None:
                grid.set_title(f"Real tokens by text and position: {level}")
        plot_sequence_lengths(data, layers=layers, hue=hue, ax=axes["lengths"])
    return fig


@shared_docs
def plot_layer_norms(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    hue: str | None = None,
    first_position: int = 1,
    sample: int = 1000,
    seed: int = 0,
    conf_level: float = CONF_LEVEL,
) -> NotebookFigure:
    """Violins of log norms per layer (a seeded sample) and the mean per layer with its CI.

    The violins draw on about ``sample`` tokens per layer; the means and intervals use every
    token (cluster-robust by text, see ``summaries.mean_ci``).

    Parameters
    ----------
    {data}
    {layers}
    hue : {"model", "site", "head"}, optional
        Colour by this column (see ``plot_layer_means``).
    {first_position}
    sample, seed : int
        The violins' sample size per layer and its seed.
    conf_level : float
        The level of the means' intervals.

    Returns
    -------
    NotebookFigure
        Violins above, means below.

    Examples
    --------
    >>> fig = plot_layer_norms(frame, layers=range(0, 12, 2))
    >>> len(fig.axes)
    2
    """
    with _style():
        fig = NotebookFigure(figsize=(11, 7.5), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        plot_norm_violins(
            data,
            layers=layers,
            hue=hue,
            first_position=first_position,
            sample=sample,
            seed=seed,
            ax=top,
        )
        top.set_xlabel("")
        plot_layer_means(
            data,
            layers=layers,
            hue=hue,
            first_position=first_position,
            conf_level=conf_level,
            ax=bottom,
        )
    return fig


@shared_docs
def plot_position_norms(
    data: pd.DataFrame | Folder,
    *,
    layers: Layers = None,
    hue: str | None = None,
    max_position: int = MAX_POSITION,
    percentiles: tuple[float, float] = (2, 98),
    conf_level: float = CONF_LEVEL,
) -> NotebookFigure:
    """Per layer, the mean norm along positions relative to the layer's own mean (heatmap),
    beside the layer's level (its mean norm with its CI).

    Parameters
    ----------
    {data}
    {layers}
    hue : {"model", "site", "head"}, optional
        One row of panels per value of this column, and below them one mean line per value
        (a few lines, each in its own colour); None does so by the one holding several
        values.
    {max_position}
    percentiles : tuple of float
        The heatmaps' colour limits (see ``plot_position_heatmap``).
    conf_level : float
        The level of the levels' intervals, and of the means over layers.

    Returns
    -------
    NotebookFigure
        Per series, the levels (left) and the relative heatmap (right); with ``hue``, the
        means by position below (log scale).

    Examples
    --------
    >>> fig = plot_position_norms(frame, max_position=20)
    >>> len(fig.axes)
    3
    """
    hue = hue_column(data, hue, choices=SERIES_COLUMNS)
    parts = (
        {None: data}
        if hue is None
        else {level: where_in(data, hue, [level]) for level in ordered_levels(data, hue)}
    )
    rows = len(parts) + (hue is not None)
    with _style():
        fig = NotebookFigure(figsize=(11, 5.5 * len(parts) + 4.5 * (hue is not None)))
        fig.set_layout_engine("constrained")
        axes = fig.subplots(
            rows,
            2,
            width_ratios=(1, 4),
            height_ratios=(1.2,) * len(parts) + (1,) * (hue is not None),
            squeeze=False,
        )
        for (left, right), (level, part) in zip(axes[: len(parts)], parts.items(), strict=False):
            plot_layer_levels(
                part, layers=layers, max_position=max_position, conf_level=conf_level, ax=left
            )
            plot_position_heatmap(
                part, layers=layers, max_position=max_position, percentiles=percentiles, ax=right
            )
            right.sharey(left)
            right.grid(False)
            right.set_ylabel("")
            right.tick_params(labelleft=False)
            if level is not None:
                left.set_title(f"{hue} {level}: " + left.get_title())
        if hue is not None:
            bottom = axes[-1, 0].get_gridspec()[-1, :]
            for ax in axes[-1]:
                ax.remove()
            plot_position_means(
                data,
                layers=layers,
                hue=hue,
                max_position=max_position,
                conf_level=conf_level,
                ax=fig.add_subplot(bottom),
            )
    return fig


@takes_fits
@shared_docs
def plot_position_trend(
    data: pd.DataFrame | Folder,
    trend: pd.DataFrame,
    *,
    layers: Layers = None,
    hue: str | None = None,
    fit_method: str | None = None,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> NotebookFigure:
    """Log norm by position per layer with the fitted lines; intercepts and slopes per layer.

    Parameters
    ----------
    {data}
    {trend}
    {layers}
    hue : {"method", "site", "head"}, optional
        The colour of the lower panels (default ``method``); a grouping column colours the
        upper panel too, and the lower ones then show ``fit_method``'s estimates only. The
        frame must hold one model.
    fit_method : str, optional
        The method whose lines the upper panel draws (see ``plot_trend_fits``).
    {max_position}
    first_position : int
        The first position drawn, as the fits' ``first_position``.
    conf_level : float
        The level of the upper panel's intervals; the lower panels' are the table's.

    Returns
    -------
    NotebookFigure
        The fits above (``plot_trend_fits``), intercepts and slopes below
        (``plot_coefficients``).

    Examples
    --------
    >>> fig = plot_position_trend(frame, tables["position_trend"])
    >>> len(fig.axes)
    4
    """
    methods = ordered_methods(trend["method"])
    fit_method = fit_method or ("aggregate" if "aggregate" in methods else methods[0])
    if hue == "method":
        check_one_series(data)
    check_one_series(data, ("model",))
    series_hue = None if hue == "method" else hue_column(data, hue, choices=("site", "head"))
    table = matching_rows(trend, data)
    if series_hue is not None:
        table = table[table["method"] == fit_method]
    with _style():
        fig = NotebookFigure(figsize=(11, 10), layout="constrained")
        axes = fig.subplot_mosaic(
            [["trend", "trend"], ["Intercept", "position"]], height_ratios=(1.2, 1)
        )
        plot_trend_fits(
            data,
            trend,
            layers=layers,
            hue=series_hue,
            fit_method=fit_method,
            max_position=max_position,
            first_position=first_position,
            conf_level=conf_level,
            ax=axes["trend"],
        )
        for term, label in (
            ("Intercept", "intercept (log norm at position 0)"),
            ("position", "slope (change in log norm per position)"),
        ):
            ax = plot_coefficients(
                table,
                term=term,
                layers=layers,
                hue=series_hue or "method",
                zero_line=term != "Intercept",
                legend=term == "position",
                ax=axes[term],
            )
            level = percent(interval_level(table, name="position_trend"))
            name = "Intercept" if term == "Intercept" else "Slope"
            ax.set(ylabel=label, title=f"{name} per layer with {level} CI")
    return fig


#: The trend methods for inference, drawn in the report's trend figure (``aggregate`` fits
#: means of positions and its intervals ignore the texts behind them).
INFERENCE_METHODS = ("ols", "mixed")


@takes_fits
@shared_docs
def plot_trend_coefficients(
    data: pd.DataFrame, *, layers: Layers = None, methods: Sequence[str] | None = None
) -> NotebookFigure:
    """The position trend by the inference methods: slope (top) and intercept (bottom) per
    layer with their intervals, one colour per method.

    Parameters
    ----------
    data : pandas.DataFrame
        A ``models.position_trend`` table (any mix of methods), of one series.
    {layers}
    methods : sequence of str, optional
        The methods drawn; None means those of ``INFERENCE_METHODS`` the table has (all of
        its methods where it has none of them).

    Returns
    -------
    NotebookFigure
        The slopes above, the intercepts below, on a shared layer axis.

    Examples
    --------
    >>> fig = plot_trend_coefficients(tables["position_trend"])
    >>> len(fig.axes)
    2
    """
    present = ordered_methods(data["method"])
    if methods is None:
        methods = [m for m in INFERENCE_METHODS if m in present] or present
    missing = sorted(set(methods) - set(present))
    if missing:
        raise AttnmagError(f"the trend table has no {missing} rows: its methods are {present}")
    table = data[data["method"].isin(list(methods))]
    level = percent(interval_level(table, name="position_trend"))
    with _style():
        fig = NotebookFigure(figsize=(11, 7.5), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        for ax, term, label in (
            (
                top,
                "position",
                "slope: change in log norm per position\n(x 100: about % per position)",
            ),
            (bottom, "Intercept", "intercept: log norm\nat position 0"),
        ):
            plot_coefficients(
                table,
                term=term,
                layers=layers,
                hue="method",
                zero_line=term == "position",
                legend=term == "position",
                ax=ax,
            )
            name = "Slope" if term == "position" else "Intercept"
            ax.set(ylabel=label, title=f"{name} per layer with {level} CI")
        top.set_xlabel("")
    return fig


def shaded_layers(compared: pd.DataFrame, term: str) -> tuple[str | None, list[int]]:
    """The layers the lag figure shades for ``term``: those where the two within-text
    estimators are apart (by more than ``GAP_LIMIT`` of gmm's standard errors), or, where
    those are most of the layers, those where they agree; shading picks out a minority, so
    where each is exactly half of the layers none is shaded.

    Parameters
    ----------
    compared : pandas.DataFrame
        ``summaries.lag_comparison`` of the table (with ``gap_lag1`` and ``gap_lag2``).
    term : str
        ``lag1`` or ``lag2``.

    Returns
    -------
    tuple
        ``"apart"``, ``"agree"`` or None (nothing shaded), and the layers shaded (fewer than
        half of them).

    Examples
    --------
    >>> gaps = pd.DataFrame({"layer": [0, 1, 2], "gap_lag1": [0.5, 3.0, -2.5]})
    >>> shaded_layers(gaps, "lag1")
    ('agree', [0])
    """
    known = compared.dropna(subset=[f"gap_{term}"])
    apart = known[f"gap_{term}"].abs() > GAP_LIMIT
    layers = known["layer"].astype(int)
    if 2 * int(apart.sum()) < len(known):
        return "apart", layers[apart].tolist()
    if 2 * int((~apart).sum()) < len(known):
        return "agree", layers[~apart].tolist()
    return None, []


@takes_fits
@shared_docs
def plot_lag_effects(
    data: pd.DataFrame, *, layers: Layers = None, hue: str | None = None
) -> NotebookFigure:
    """Lag-1 and lag-2 coefficients per layer with their intervals, one colour per method.

    The intervals are the table's, labelled with the level of its ``conf_level`` column. The
    legend says which methods describe pooled co-variation and which estimate persistence
    within texts; where both ``initial_conditions`` and ``gmm`` are present, the minority of
    layers where they differ by more than ``GAP_LIMIT`` of gmm's standard errors, or where
    they agree, is shaded (``shaded_layers``).

    Parameters
    ----------
    data : pandas.DataFrame
        A ``models.lag_effects`` table (any mix of methods).
    {layers}
    hue : {"method", "site", "head", "model"}, optional
        The colour (default ``method``); a grouping column needs a table of one method.

    Returns
    -------
    NotebookFigure
        Lag 1 on the left, lag 2 on the right, a shared legend below.

    Examples
    --------
    >>> fig = plot_lag_effects(tables["lag_effects"])
    >>> len(fig.axes)
    2
    """
    rows = select_layers(data, layers)
    hue = hue_column(rows, hue, choices=table_hues(rows, hue))
    methods = ordered_methods(rows["method"])
    labels = {m: f"{m} ({LAG_LABELS[m]})" for m in methods if m in LAG_LABELS}
    shade = hue == "method" and set(COMPARED) <= set(methods)
    compared = lag_comparison(rows) if shade else pd.DataFrame()
    with _style():
        fig = NotebookFigure(figsize=(11, 5.2), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        shaded_kinds = set()
        for ax, term in zip(axes, ("lag1", "lag2"), strict=True):
            kind, shaded = shaded_layers(compared, term) if shade else (None, [])
            shaded_kinds.add(kind)
            for layer in shaded if kind else []:
                ax.axvspan(layer - 0.45, layer + 0.45, color=SHADES[kind], linewidth=0, zorder=0)
            plot_coefficients(rows, term=term, hue=hue, labels=labels, legend=False, ax=ax)
            ax.set(
                ylabel=f"coefficient on the log norm\n{LAG_WORDS[term]} earlier",
                title=f"{term.replace('lag', 'Lag-')} coefficient with "
                f"{percent(interval_level(rows, name='lag_effects'))} CI",
            )
        handles, names = axes[1].get_legend_handles_labels()
        default, check = COMPARED
        for kind in ("apart", "agree"):
            if kind in shaded_kinds:
                handles.append(Patch(color=SHADES[kind]))
                names.append(
                    f"{default} and {check} > {GAP_LIMIT:g} {check} SEs apart"
                    if kind == "apart"
                    else f"{default} and {check} within {GAP_LIMIT:g} {check} SEs"
                )
        fig.legend(handles, names, loc="outside lower center", ncols=2 if len(names) > 4 else 3)
    return fig


def _by_model(
    data: pd.DataFrame | Folder, layers: Layers = None
) -> dict[object, pd.DataFrame | Folder]:
    """``data``'s rows at ``layers`` (each model those of them it has) per language model, in
    the column's order, or all under None; models with none of the layers are left out."""
    data = select_layers(data, layers)
    if "model" not in data.columns:
        return {None: data}
    return {level: where_in(data, "model", [level]) for level in ordered_levels(data, "model")}


def _titled(ax: object, model: object, title: str) -> None:
    """Give ``ax`` a short ``title``, after the model's name where there is one (the panels'
    own titles are too long to share a row with a name)."""
    if model is not None:
        ax.set_title(f"{model}: {title}")


@takes_fits
@shared_docs
def plot_heads(
    data: pd.DataFrame | Folder,
    trend: pd.DataFrame,
    *,
    term: str = "position",
    layers: Layers = None,
    first_position: int = 1,
    alpha: float = ALPHA,
) -> NotebookFigure:
    """Per model, layer x head heatmaps: the mean log norm, and one term's estimate with its
    significance.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The tidy frame (or a shard folder's view), with a ``head`` column (``heads=True``):
        the rows of heads 0 and up are drawn, of the ``attn`` site where the frame has sites.
    trend : pandas.DataFrame
        A ``models.position_trend`` table of one method fitted on it.
    term : str
        The term whose estimates the right-hand heatmaps show (the slope by default).
    {layers}
    {first_position}
    alpha : float
        A dot marks ``p_adjusted < alpha``.

    Returns
    -------
    NotebookFigure
        One row per model: mean log norms on the left, ``term``'s estimates on the right.

    Examples
    --------
    >>> trend = models.fit_all(heads, trend_methods=["ols"], lag_methods=[])["position_trend"]
    >>> fig = plot_heads(heads, trend)
    >>> len(fig.axes)
    4
    """
    rows = heads_only(data)
    table = heads_only(trend)
    parts = _by_model(rows, layers)
    n_layers = max(len(levels(part, "layer")) for part in parts.values())
    height = max(3.6, 0.17 * n_layers + 1.6)
    with _style():
        fig = NotebookFigure(figsize=(12, height * len(parts)), layout="constrained")
        axes = fig.subplots(len(parts), 2, squeeze=False)
        for (model, part), (left, right) in zip(parts.items(), axes, strict=True):
            plot_head_means(part, first_position=first_position, ax=left)
            fitted = table if model is None else table[table["model"] == model]
            fitted = fitted[fitted["layer"].isin(levels(part, "layer"))]
            plot_head_coefficients(fitted, term=term, alpha=alpha, ax=right)
            _titled(left, model, "mean log norm per layer and head")
            method = fitted["method"].iloc[0]
            _titled(right, model, f"{method} {term} estimate (dot: p_adjusted < {alpha:g})")
    return fig


@takes_fits
def heads_only(data: pd.DataFrame | Folder) -> pd.DataFrame | Folder:
    """The rows of heads 0 and up (of the ``attn`` site where there are sites).

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        A frame (or a shard folder's view) or a coefficient table with a ``head`` column.

    Returns
    -------
    pandas.DataFrame
        Its rows of single heads.

    Examples
    --------
    >>> heads_only(pd.DataFrame({"head": [-1, 0, 1]}))["head"].tolist()
    [0, 1]
    """
    if "head" not in data.columns:
        raise AttnmagError("plot_heads needs a head column: measure with heads=True")
    rows = where_in(data, "head", [h for h in levels(data, "head") if h >= 0])
    return where_in(rows, "site", ["attn"]) if "site" in rows.columns else rows


@shared_docs
def plot_sites(
    data: pd.DataFrame | Folder,
    *,
    reference: str = "resid",
    layers: Layers = None,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> NotebookFigure:
    """Per model, the sites side by side: the mean log norm per layer of each site, and each
    site's norm relative to the ``reference`` site's (the log difference, with its CI).

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        The tidy frame (or a shard folder's view) of ``extract.update_norms``, with
        ``reference`` and another site; the whole sub-layers' rows (``head`` -1) are drawn
        where it has heads.
    reference : str
        The site the others are compared with.
    {layers}
    {first_position}
    conf_level : float
        The level of the intervals (cluster-robust by text).

    Returns
    -------
    NotebookFigure
        One row per model: means by site on the left, ratios to ``reference`` on the right.

    Examples
    --------
    >>> fig = plot_sites(sites)
    >>> len(fig.axes)
    2
    """
    rows = where_in(data, "head", [-1]) if "head" in data.columns else data
    parts = _by_model(rows, layers)
    with _style():
        fig = NotebookFigure(figsize=(12, 4.6 * len(parts)), layout="constrained")
        axes = fig.subplots(len(parts), 2, squeeze=False)
        for (model, part), (left, right) in zip(parts.items(), axes, strict=True):
            options = {"first_position": first_position, "conf_level": conf_level}
            plot_layer_means(part, hue="site", **options, ax=left)
            plot_site_ratios(part, reference=reference, **options, ax=right)
            level = percent(conf_level)
            _titled(left, model, f"mean log norm per layer ({level} CI)")
            words = SITE_WORDS.get(reference, reference)
            _titled(right, model, f"relative to the {words} ({level} CI)")
    return fig


@takes_fits
@shared_docs
def plot_models(
    data: pd.DataFrame | Folder,
    trend: pd.DataFrame,
    lags: pd.DataFrame,
    *,
    layers: Layers = None,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> NotebookFigure:
    """Models side by side on a relative depth axis, one colour per model: the mean log norm
    per layer, the position slope, and the lag-1 and lag-2 effects.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        A frame of several models (``extract.combine``), one series per model (select one
        site and head first).
    trend, lags : pandas.DataFrame
        ``models.position_trend`` and ``models.lag_effects`` tables of one method each,
        fitted on ``data``.
    {layers}
    {first_position}
    conf_level : float
        The level of the means' intervals; the coefficients' are the tables'.

    Returns
    -------
    NotebookFigure
        Means and slopes above, lag-1 and lag-2 effects below.

    Examples
    --------
    >>> tables = models.fit_all(both, trend_methods=["ols"], lag_methods=["gmm"], n_jobs=1)
    >>> fig = plot_models(both, tables["position_trend"], tables["lag_effects"])
    >>> len(fig.axes)
    4
    """
    with _style():
        fig = NotebookFigure(figsize=(12, 9), layout="constrained")
        axes = fig.subplot_mosaic([["means", "position"], ["lag1", "lag2"]])
        plot_layer_means(
            data,
            hue="model",
            depth=True,
            layers=layers,
            first_position=first_position,
            conf_level=conf_level,
            ax=axes["means"],
        )
        for term, table in (("position", trend), ("lag1", lags), ("lag2", lags)):
            ax = axes[term]
            options = {"hue": "model", "depth": True, "legend": False, "layers": layers}
            plot_coefficients(table, term=term, **options, ax=ax)
            ax.set_title(f"{table['method'].iloc[0]}: {ax.get_title()}")
        axes["means"].set_title(f"Mean log norm per layer ({percent(conf_level)} CI)")
    return fig
