"""Aggregates of the tidy frame and of the coefficient tables: what the figures draw.

Holds:
- ``ALPHA``: the significance level of the reports' counts and marks (the last position
  shown and the level of intervals default to ``models.MAX_POSITION`` and
  ``models.CONF_LEVEL``);
- ``SERIES_COLUMNS``: the grouping columns other than ``layer`` (``model``, ``site``,
  ``head``); every aggregate keeps the ones a frame has;
- ``takes_fits``: a report function's decorator, so that it takes a ``models.Fits`` (or a
  mapping of them) wherever it takes a coefficient table;
- ``select_layers``: the rows of some layers of a frame or table;
- ``mean_ci``: token-weighted means with cluster-robust (CR1, by sequence) t intervals;
- ``sequence_lengths``: real tokens per sequence (per model where there are several);
- ``layer_means``: mean of a column per layer;
- ``layer_levels``: each layer's mean norm over the positions a report shows, the level
  that its position heatmap is relative to;
- ``position_means``: mean per layer and position, with the log of the mean and of its
  interval;
- ``shared_means``: a context in which ``position_means`` and ``layer_levels`` compute each
  table once per frame (a report's figures and findings ask for the same ones);
- ``position_means_across_layers``: mean per position over all layers;
- ``BIN_THRESHOLD``, ``position_bin_width``, ``means_by_position``: past
  ``BIN_THRESHOLD`` positions, the position aggregates pool positions into bins of equal
  width (position 0 alone), so that figures of long texts stay readable;
- ``site_ratios``: each site's norm over the residual stream's at the same token (the
  difference of log norms), per layer;
- ``interval_level`` and ``percent``: the level a coefficient table's intervals carry, and
  that level as text (0.95 -> "95%");
- ``ordered_methods``: methods in the order of ``models.METHODS``;
- ``lag_comparison``: per layer, the within-text lag estimators side by side (their gap in
  ``gmm``'s standard errors), ``gmm``'s specification tests, and the texts and rows each
  lag estimator used.

Every interval of a mean treats the sequence as the unit that was sampled: tokens of one
text are not independent, so the standard error of a mean is the cluster-robust one of an
intercept-only regression (what ``models``' ``ols`` method uses), with G - 1 degrees of
freedom for G sequences. The aggregates return tidy frames (the grouping columns as
columns), ready for ``seaborn``'s ``data=``. Each takes the frame, or a shard folder's view
(``folder.Folder``), whose aggregates DuckDB computes over its shards (see ``folder``): the
same tables, without reading its rows.

Bins of positions have equal width, a power of two, with position 0 (the attention sink)
alone: the trend fits are linear in position, and a bin's mean over its tokens is the
fitted line at the mean position of those tokens, so each bin is drawn there and lines and
points stay comparable; equal widths give every stretch of the text the same room, as the
fits do, where log-spaced bins would pool most of a long text into a few wide bins.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import numpy as np
import pandas as pd
from scipy import stats

from attnmag import models
from attnmag.errors import AttnmagError
from attnmag.extract.frame import GROUP_COLUMNS
from attnmag.models import CONF_LEVEL, MAX_POSITION
from attnmag.reports.docs import shared_docs
from attnmag.reports.folder import Folder, last_position, levels, positions_between, where_in

__all__ = [
    "ALPHA",
    "BIN_THRESHOLD",
    "COMPARED",
    "GAP_LIMIT",
    "GMM_TESTS",
    "SERIES_COLUMNS",
    "interval_level",
    "lag_comparison",
    "layer_levels",
    "layer_means",
    "mean_ci",
    "means_by_position",
    "ordered_methods",
    "percent",
    "position_bin_width",
    "position_means",
    "position_means_across_layers",
    "select_layers",
    "sequence_lengths",
    "shared_means",
    "site_ratios",
    "takes_fits",
]

Function = TypeVar("Function", bound=Callable)

#: The significance level of the reports' counts and marks (on Holm-adjusted p-values).
ALPHA = 0.05
#: The most positions the position aggregates show one by one; past it they pool them into
#: at most this many bins (and position 0 alone).
BIN_THRESHOLD = 64
#: The grouping columns a frame may have besides ``layer``: one series per combination.
SERIES_COLUMNS = tuple(column for column in GROUP_COLUMNS if column != "layer")
#: The lag estimators compared layer by layer: the default, and the check with fewer
#: assumptions whose standard errors measure the gap.
COMPARED = ("initial_conditions", "gmm")
#: How far apart (in ``gmm``'s standard errors) the two may be before a layer is flagged.
GAP_LIMIT = 2.0
#: ``gmm``'s specification tests, as ``glance`` names them.
GMM_TESTS = ("hansen_j", "hansen_df", "hansen_p", "ar2_statistic", "ar2_p", "n_instruments")


def takes_fits(function: Function) -> Function:
    """``function``, taking a ``models.Fits`` wherever it takes a coefficient table.

    Parameters
    ----------
    function : callable
        A report function whose arguments include coefficient tables.

    Returns
    -------
    callable
        ``function`` with each ``Fits`` argument turned into its tidy table (which carries
        its glance rows), a mapping of them (as ``models.fit_all`` returns) into their
        tables stacked, and a ``glance`` parameter left at None filled with their glance
        rows.

    Examples
    --------
    >>> sizes = takes_fits(lambda table, glance=None: (len(table), len(glance)))
    >>> sizes(models.lag_effects(frame, n_jobs=1))
    (72, 12)
    """
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        bound = signature.bind(*args, **kwargs)
        glances = []
        for name, value in bound.arguments.items():
            if _is_fits(value):
                fits = list(value.values()) if isinstance(value, Mapping) else [value]
                bound.arguments[name] = (
                    fits[0] if len(fits) == 1 else models.Fits.concat(fits)
                ).tidy
                glances += [item.glance for item in fits if len(item.glance)]
        if glances and "glance" in signature.parameters and bound.arguments.get("glance") is None:
            bound.arguments["glance"] = pd.concat(glances, ignore_index=True)
        return function(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]


#: The tables ``shared`` functions computed in the current ``shared_means`` block, by
#: function, frame and options (each with its frame, so that the frame's id stays its own).
_SHARED: ContextVar[dict | None] = ContextVar("attnmag_shared_means", default=None)


@contextmanager
def shared_means() -> Iterator[None]:
    """Within the block, ``position_means`` and ``layer_levels`` compute each table once per
    frame (the same object) and options, and give copies of it after.

    A report's figures and findings ask for the same tables of one frame, which does not
    change while it is written; outside the block every call computes afresh.

    Parameters
    ----------
    None
        The block shares the tables of every frame asked about in it.

    Returns
    -------
    context manager
        Entering it starts the sharing; leaving it forgets the tables.

    Examples
    --------
    >>> with shared_means():
    ...     first = layer_levels(frame)
    ...     again = layer_levels(frame)
    >>> again.equals(first) and again is not first
    True
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared(function: Function) -> Function:
    """``function(frame, **options)``, its table computed once per frame and options (the
    defaults filled in) inside a ``shared_means`` block."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(frame: object, **options: object) -> pd.DataFrame:
        tables = _SHARED.get()
        bound = signature.bind(frame, **options)
        bound.apply_defaults()
        chosen = tuple(bound.arguments.items())[1:]  # the options, after the frame
        key = (function.__name__, id(frame), chosen)
        try:
            hash(key)
        except TypeError:  # an option such as a list of layers: computed afresh
            tables = None
        if tables is None:
            return function(frame, **options)
        if key not in tables:
            tables[key] = (frame, function(frame, **options))
        return tables[key][1].copy()

    return wrapper  # type: ignore[return-value]


def _is_fits(value: object) -> bool:
    """Whether ``value`` is a ``models.Fits`` or a non-empty mapping of them."""
    if isinstance(value, Mapping):
        return bool(value) and all(isinstance(item, models.Fits) for item in value.values())
    return isinstance(value, models.Fits)


def _series(data: pd.DataFrame) -> list[str]:
    """The columns of ``SERIES_COLUMNS`` that ``data`` has."""
    return [column for column in SERIES_COLUMNS if column in data.columns]


@takes_fits
@shared_docs
def select_layers(
    data: pd.DataFrame | Folder, layers: int | Iterable[int] | None
) -> pd.DataFrame | Folder:
    """The rows of ``data`` (a frame or a coefficient table) at ``layers``.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        Anything with a ``layer`` column.
    {layers_kept}

    Returns
    -------
    pandas.DataFrame
        The rows at those layers (``data`` itself when ``layers`` is None).

    Raises
    ------
    AttnmagError
        Where a layer asked for is not in ``data``.

    Examples
    --------
    >>> select_layers(frame, range(0, 12, 5))["layer"].unique().tolist()
    [0, 5, 10]
    """
    if layers is None:
        return data
    wanted = [layers] if isinstance(layers, int | np.integer) else list(layers)
    present = set(levels(data, "layer"))
    missing = sorted(set(wanted) - present)
    if missing or not wanted:
        raise AttnmagError(
            f"layers {missing or wanted} are not in the data, which holds layers "
            f"{min(present)} to {max(present)}"
            if present
            else "the data hold no layers"
        )
    return where_in(data, "layer", wanted)


def mean_ci(
    data: pd.DataFrame | Folder,
    *,
    value: str,
    by: str | Sequence[str],
    cluster: str = "sequence",
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """Mean of ``value`` per ``by`` group with a t interval, clustered by ``cluster``.

    The standard error is the CR1 cluster-robust one of an intercept-only regression on the
    group's rows (statsmodels' ``cov_type="cluster"``), the interval a t interval on G - 1
    degrees of freedom for G clusters.

    Parameters
    ----------
    data : pandas.DataFrame or Folder
        Rows with the columns ``value``, ``by`` and ``cluster``.
    value : str
        The column averaged.
    by : str or sequence of str
        The grouping columns.
    cluster : str
        The column whose values are the sampled units (a text by default).
    conf_level : float
        The level of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``n`` (rows), ``n_groups`` (clusters),
        ``mean``, ``std_error``, ``conf_low``, ``conf_high`` and ``conf_level``. Intervals
        are NaN for a group with a single cluster.

    Examples
    --------
    >>> cells = mean_ci(frame, value="log_norm", by=["layer"])
    >>> cells.columns.tolist(), len(cells)
    (['layer', 'n', 'n_groups', 'mean', 'std_error', 'conf_low', 'conf_high', 'conf_level'], 12)
    """
    keys = [by] if isinstance(by, str) else list(by)
    if isinstance(data, Folder):
        sums = data.cluster_sums(value, keys, cluster=cluster)
        if sums.empty:
            raise AttnmagError(f"no rows to average {value} over (by {keys})")
        return _intervals(sums, keys, conf_level)
    if data.empty:
        raise AttnmagError(f"no rows to average {value} over (by {keys})")
    grouper = data.groupby(keys, sort=True, observed=True)
    group = grouper.ngroup().to_numpy()
    y = data[value].to_numpy(np.float64)
    n = np.bincount(group)
    mean = np.bincount(group, weights=y) / n
    clusters = pd.factorize(data[cluster])[0].astype(np.int64)
    width = int(clusters.max()) + 1
    pair_of_row, pairs = pd.factorize(group * width + clusters)  # hashed: no sort of the rows
    cluster_sums = np.bincount(pair_of_row, weights=y - mean[group])
    group_of_pair = pairs // width
    meat = np.bincount(group_of_pair, weights=cluster_sums**2, minlength=len(n))
    g = np.bincount(group_of_pair, minlength=len(n))
    sums = grouper.size().index.to_frame(index=False).assign(n=n, n_groups=g, mean=mean, meat=meat)
    return _intervals(sums, keys, conf_level)


def _intervals(sums: pd.DataFrame, keys: list[str], conf_level: float) -> pd.DataFrame:
    """``mean_ci``'s table from per-group sums: the ``keys``, ``n``, ``n_groups``, ``mean`` and
    ``meat`` (the sum over clusters of the squared sums of deviations from the mean)."""
    n = sums["n"].to_numpy(np.float64)
    g = sums["n_groups"].to_numpy(np.float64)
    mean = sums["mean"].to_numpy(np.float64)
    meat = sums["meat"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(g > 1, np.sqrt(meat / n**2 * g / (g - 1)), np.nan)
        half = stats.t.ppf(0.5 + conf_level / 2, g - 1) * se
    return (
        sums[keys]
        .reset_index(drop=True)
        .assign(
            n=sums["n"].to_numpy(np.int64),
            n_groups=g.astype(np.int64),
            mean=mean,
            std_error=se,
            conf_low=mean - half,
            conf_high=mean + half,
            conf_level=conf_level,
        )
    )


@shared_docs
def sequence_lengths(frame: pd.DataFrame | Folder) -> pd.DataFrame:
    """Number of real tokens per sequence, per model where the frame has several.

    Parameters
    ----------
    {frame}

    Returns
    -------
    pandas.DataFrame
        Columns ``model`` (where the frame has it), ``sequence`` and ``length``, read off one
        series (the first layer, site and head) per model.

    Examples
    --------
    >>> lengths = sequence_lengths(frame)
    >>> len(lengths), bool((lengths["length"] > 0).all())
    (16, True)
    """
    keys = [*(["model"] if "model" in frame.columns else []), "sequence"]
    if isinstance(frame, Folder):
        return _folder_lengths(frame, keys)
    keep = frame["layer"].to_numpy() == frame["layer"].min()
    for column in ("site", "head"):
        if column in frame.columns:
            keep &= (frame[column] == frame[column].iloc[0]).to_numpy()
    rows = frame.loc[keep]
    lengths = rows.groupby(keys, sort=True, observed=True).size().rename("length").reset_index()
    # pandas widens an int32 key grouped with another to int64; keep the frame's dtype.
    return lengths.astype({"sequence": frame["sequence"].dtype})


def _folder_lengths(folder: Folder, keys: list[str]) -> pd.DataFrame:
    """``sequence_lengths`` of a folder: its rows counted per text in one series (every
    series of a model holds the same tokens)."""
    one = where_in(folder, "layer", levels(folder, "layer")[:1])
    for column in ("site", "head"):
        if column in folder.columns:
            one = where_in(one, column, levels(one, column)[:1])
    where, parameters = one.where()
    names = ", ".join(f'"{c}"' for c in keys)
    lengths = folder.query(
        f"SELECT {names}, count(*) AS length FROM frame WHERE {where} GROUP BY ALL", parameters
    )
    lengths = lengths.sort_values(keys, kind="stable").reset_index(drop=True)
    return lengths.astype({"length": np.int64})


@shared_docs
def layer_means(
    frame: pd.DataFrame | Folder,
    *,
    value: str = "log_norm",
    layers: int | Iterable[int] | None = None,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """Mean of ``value`` per layer (and per model, site and head) with its interval.

    Parameters
    ----------
    {frame}
    value : str
        The column averaged (``log_norm`` or ``norm``).
    {layers_kept}
    first_position : int
        The first position used (1: the attention sink, position 0, is left out).
    {conf_level_means}

    Returns
    -------
    pandas.DataFrame
        The grouping columns the frame has (``model``, ``site``, ``layer``, ``head``) and the
        columns of ``mean_ci``.

    Examples
    --------
    >>> import seaborn as sns
    >>> means = layer_means(frame, value="norm")
    >>> len(means)
    12
    >>> ax = sns.pointplot(means, x="layer", y="mean")
    """
    rows = select_layers(frame, layers)
    rows = positions_between(rows, first=first_position)
    by = [c for c in GROUP_COLUMNS if c in frame.columns]
    return mean_ci(rows, value=value, by=by, conf_level=conf_level)


@_shared
@shared_docs
def position_means(
    frame: pd.DataFrame | Folder,
    *,
    value: str = "norm",
    layers: int | Iterable[int] | None = None,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
    bin_width: int | None = None,
) -> pd.DataFrame:
    """Mean of ``value`` per layer and position (0 to ``max_position``) with its interval.

    Parameters
    ----------
    {frame}
    value : str
        The column averaged; for ``norm`` the logs of the mean and of its interval are added.
    {layers_kept}
    {max_position_averaged}
    {conf_level_means}
    bin_width : int, optional
        Positions per bin (see ``means_by_position``); None: one by one up to
        ``BIN_THRESHOLD`` positions, in bins past that.

    Returns
    -------
    pandas.DataFrame
        The grouping columns the frame has, ``position`` (see ``means_by_position`` for
        bins), the columns of ``mean_ci`` and, for ``norm``, ``log_mean``, ``log_low`` and
        ``log_high``: an interval for the log of the mean (``log_low`` NaN where the interval
        reaches zero).

    Examples
    --------
    >>> import seaborn as sns
    >>> cells = position_means(frame, layers=[0, 5], max_position=20)
    >>> cells["layer"].unique().tolist(), int(cells["position"].max()) <= 20
    ([0, 5], True)
    >>> ax = sns.lineplot(cells, x="position", y="mean", hue="layer")
    """
    by = [c for c in GROUP_COLUMNS if c in frame.columns]
    out = _position_means(frame, value, by, layers, max_position, conf_level, bin_width)
    if value == "norm":
        with np.errstate(divide="ignore", invalid="ignore"):
            out["log_mean"] = np.log(out["mean"])
            out["log_low"] = np.log(out["conf_low"].where(out["conf_low"] > 0))
            out["log_high"] = np.log(out["conf_high"])
    return out


@_shared
@shared_docs
def layer_levels(
    frame: pd.DataFrame | Folder,
    *,
    layers: int | Iterable[int] | None = None,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """Each layer's mean norm over positions 1 to ``max_position`` (every token, interval
    cluster-robust by text), indexed by layer: the level a layer's cells of the position
    heatmap are relative to.

    Parameters
    ----------
    {frame}
    {layers_kept}
    {max_position_averaged}
    {conf_level_means}

    Returns
    -------
    pandas.DataFrame
        ``layer_means`` of ``norm`` over those positions, indexed by layer.

    Examples
    --------
    >>> layer_levels(frame, max_position=20)["mean"].index.tolist()[:3]
    [0, 1, 2]
    """
    rows = positions_between(frame, last=max_position)
    means = layer_means(rows, value="norm", layers=layers, conf_level=conf_level)
    return means.set_index("layer")


@shared_docs
def position_means_across_layers(
    frame: pd.DataFrame | Folder,
    *,
    value: str = "norm",
    layers: int | Iterable[int] | None = None,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
    bin_width: int | None = None,
) -> pd.DataFrame:
    """Mean of ``value`` per position (0 to ``max_position``) over layers, per series.

    Parameters
    ----------
    {frame}
    value : str
        The column averaged.
    layers : int, iterable of int or None
        The layers averaged over; None means every layer.
    {max_position_averaged}
    {conf_level_means}
    bin_width : int, optional
        Positions per bin (see ``means_by_position``); None: one by one up to
        ``BIN_THRESHOLD`` positions, in bins past that.

    Returns
    -------
    pandas.DataFrame
        The frame's ``model``, ``site`` and ``head`` columns where it has them,
        ``position`` (see ``means_by_position`` for bins) and the columns of ``mean_ci``.

    Examples
    --------
    >>> cells = position_means_across_layers(frame, layers=range(6, 12))
    >>> cells.columns.tolist()
    ['position', 'n', 'n_groups', 'mean', 'std_error', 'conf_low', 'conf_high', 'conf_level']
    """
    return _position_means(
        frame, value, _series(frame), layers, max_position, conf_level, bin_width
    )


def _position_means(
    frame: pd.DataFrame | Folder,
    value: str,
    by: list[str],
    layers: int | Iterable[int] | None,
    max_position: int,
    conf_level: float,
    bin_width: int | None,
) -> pd.DataFrame:
    """``means_by_position`` of ``value`` by ``by``, over the rows of ``layers`` up to
    ``max_position``."""
    rows = positions_between(select_layers(frame, layers), last=max_position)
    return means_by_position(rows, value=value, by=by, bin_width=bin_width, conf_level=conf_level)


def position_bin_width(last_position: int, *, threshold: int = BIN_THRESHOLD) -> int:
    """The width of the bins that positions 0 to ``last_position`` are pooled into.

    Parameters
    ----------
    last_position : int
        The last position shown.
    threshold : int
        The most positions shown one by one, and the most bins of positions 1 and later.

    Returns
    -------
    int
        1 (no bins) where the positions number ``threshold`` or fewer; else the smallest
        power of two, 2 at least, that cuts positions 1 to ``last_position`` into
        ``threshold`` bins or fewer.

    Examples
    --------
    >>> position_bin_width(30), position_bin_width(1023), position_bin_width(4095)
    (1, 16, 64)
    """
    if last_position + 1 <= threshold:
        return 1
    return max(2, 2 ** math.ceil(math.log2(last_position / threshold)))


def means_by_position(
    rows: pd.DataFrame | Folder,
    *,
    value: str,
    by: Sequence[str] = (),
    bin_width: int | None = None,
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """``mean_ci`` of ``value`` per ``by`` group and position, or per bin of positions.

    A bin's mean is over all its tokens and its interval cluster-robust by text, as any
    other mean of ``mean_ci``: the tokens of one text in one bin are one cluster.

    Parameters
    ----------
    rows : pandas.DataFrame or Folder
        Rows with ``position``, ``sequence``, ``value`` and the ``by`` columns.
    value : str
        The column averaged.
    by : sequence of str
        The grouping columns besides position.
    bin_width : int, optional
        Positions per bin (position 0 is always alone; 1: no bins); None chooses it with
        ``position_bin_width`` from the last position of ``rows``.
    conf_level : float
        The level of the intervals.

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, ``position`` and the columns of ``mean_ci``. With bins,
        ``position`` is the mean position of the bin's tokens (float), and ``first_position``,
        ``last_position`` and ``bin_width`` say which positions the bin holds.

    Examples
    --------
    >>> long = means_by_position(frame, value="log_norm", by=["layer"], bin_width=5)
    >>> long[["first_position", "last_position"]].drop_duplicates().head(3)
       first_position  last_position
    0               0              0
    1               1              5
    2               6             10
    """
    by = list(by)
    last = last_position(rows)
    if last is None:
        raise AttnmagError(f"no rows to average {value} over (by {[*by, 'position']})")
    width = position_bin_width(last) if bin_width is None else bin_width
    if width == 1:
        return mean_ci(rows, value=value, by=[*by, "position"], conf_level=conf_level)
    if isinstance(rows, Folder):
        sums = rows.cluster_sums(value, [*by, "position"], bin_width=width)
        out = _intervals(sums, [*by, "position_bin"], conf_level)
        where = sums["at_position"]
    else:
        positions = rows["position"].to_numpy(np.int64)
        binned = rows.assign(position_bin=np.where(positions > 0, (positions - 1) // width + 1, 0))
        out = mean_ci(binned, value=value, by=[*by, "position_bin"], conf_level=conf_level)
        group = binned.groupby([*by, "position_bin"], sort=True, observed=True)
        where = group["position"].mean()
    bins = out["position_bin"].to_numpy(np.int64)
    out.insert(len(by), "position", where.to_numpy(np.float64))
    out.insert(len(by) + 1, "first_position", np.where(bins > 0, (bins - 1) * width + 1, 0))
    out.insert(len(by) + 2, "last_position", np.minimum(bins * width, last))
    out.insert(len(by) + 3, "bin_width", width)
    return out.drop(columns="position_bin")


@shared_docs
def site_ratios(
    frame: pd.DataFrame | Folder,
    *,
    reference: str = "resid",
    layers: int | Iterable[int] | None = None,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """Each site's norm relative to the ``reference`` site's at the same token, per layer.

    The ratio is taken token by token as a difference of log norms (``log_norm`` of the site
    minus that of ``reference`` at the same text, layer and position) and averaged with a
    cluster-robust interval (see ``mean_ci``): ``exp(mean)`` is the geometric mean ratio.

    Parameters
    ----------
    {frame}
        It needs a ``site`` column holding ``reference`` and at least one other site.
    reference : str
        The site the others are compared with (the residual stream by default).
    {layers_kept}
    {first_position}
    {conf_level_means}

    Returns
    -------
    pandas.DataFrame
        The frame's ``model`` column where it has it, ``site`` (the sites other than
        ``reference``), ``layer``, ``head`` where the frame has it, and the columns of
        ``mean_ci`` for the log ratio.

    Raises
    ------
    AttnmagError
        Where the frame has no ``site`` column, or lacks ``reference`` or any other site.

    Examples
    --------
    >>> ratios = site_ratios(sites)
    >>> ratios["site"].unique().tolist()
    ['attn', 'mlp']
    >>> geometric = np.exp(ratios["mean"])  # geometric mean ratios
    """
    sites = levels(frame, "site") if "site" in frame.columns else []
    others = [s for s in sites if s != reference]
    if reference not in sites or not others:
        raise AttnmagError(
            f"site ratios need a site column with {reference!r} and another site; "
            f"the frame holds sites {sites or None}"
        )
    rows = select_layers(frame, layers)
    rows = positions_between(rows, first=first_position)
    if isinstance(rows, Folder):
        return _folder_ratios(rows, reference, conf_level)
    keys = [c for c in ("model", "sequence", "layer", "head", "position") if c in rows.columns]
    wide = rows.pivot_table(
        index=keys, columns="site", values="log_norm", observed=True, aggfunc="first"
    ).astype(np.float64)  # the differences in float64 (log_norm is float32), as a folder's
    long = (
        wide[others]
        .sub(wide[reference], axis=0)
        .rename_axis(columns="site")
        .stack()
        .rename("log_ratio")
        .reset_index()
    )
    by = [c for c in ("model", "site", "layer", "head") if c in long.columns]
    return mean_ci(long, value="log_ratio", by=by, conf_level=conf_level)


def _folder_ratios(folder: Folder, reference: str, conf_level: float) -> pd.DataFrame:
    """``site_ratios`` of a folder: each site's log norm minus the ``reference`` site's at
    the same token, joined and averaged in DuckDB."""
    keys = [c for c in ("model", "sequence", "layer", "head", "position") if c in folder.columns]
    where, parameters = folder.where()
    on = " AND ".join(f'o."{c}" = r."{c}"' for c in keys)
    source = f"""(
        SELECT {", ".join(f'o."{c}"' for c in keys)}, o."site",
            o.log_norm::DOUBLE - r.log_norm::DOUBLE AS log_ratio
        FROM (SELECT * FROM frame WHERE {where} AND "site" <> ?) o
        JOIN (SELECT * FROM frame WHERE {where} AND "site" = ?) r ON {on}
    )"""
    by = [c for c in ("model", "site", "layer", "head") if c in folder.columns]
    sums = folder.cluster_sums(
        "log_ratio", by, source=source, parameters=[*parameters, reference, *parameters, reference]
    )
    return _intervals(sums, by, conf_level)


@takes_fits
def interval_level(table: pd.DataFrame, *, name: str = "table") -> float:
    """The level of ``table``'s intervals, from its ``conf_level`` column.

    Parameters
    ----------
    table : pandas.DataFrame
        A coefficient table of ``models``.
    name : str
        The table's name in the error message.

    Returns
    -------
    float
        The one level the table's intervals were computed at.

    Raises
    ------
    AttnmagError
        Where the column is missing or holds more than one level, so that no caption can
        print a level the intervals were not computed at.

    Examples
    --------
    >>> interval_level(models.fit_all(frame, lag_methods=[], conf_level=0.8)["position_trend"])
    0.8
    """
    if "conf_level" not in table.columns:
        raise AttnmagError(
            f"the {name} table has no conf_level column, so its intervals' level is unknown; "
            "refit it with this attnmag"
        )
    levels = table["conf_level"].dropna().unique()
    if len(levels) != 1:
        raise AttnmagError(
            f"the {name} table holds intervals at {len(levels)} levels "
            f"({sorted(float(x) for x in levels)}); a report shows one level per table"
        )
    return float(levels[0])


def percent(level: float) -> str:
    """A level as a percentage.

    Parameters
    ----------
    level : float
        A level between 0 and 1.

    Returns
    -------
    str
        The percentage without trailing zeros.

    Examples
    --------
    >>> percent(0.95), percent(0.975)
    ('95%', '97.5%')
    """
    return f"{round(100 * level, 6):g}%"


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """``methods`` without repeats, in the order ``models.METHODS`` lists them, unknown last.

    Parameters
    ----------
    methods : iterable of str
        Method names, e.g. a table's ``method`` column.

    Returns
    -------
    list of str
        The distinct methods in a stable order.

    Examples
    --------
    >>> ordered_methods(["gmm", "ols", "gmm"])
    ['ols', 'gmm']
    """
    known = list(dict.fromkeys(m for names in models.METHODS.values() for m in names))
    found = list(dict.fromkeys(methods))
    return [m for m in known if m in found] + sorted(m for m in found if m not in known)


@takes_fits
def lag_comparison(lags: pd.DataFrame, glance: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per layer: the lag estimators side by side, ``gmm``'s tests, and what each one used.

    Parameters
    ----------
    lags : pandas.DataFrame
        A ``models.lag_effects`` table of one series (any mix of methods).
    glance : pandas.DataFrame, optional
        Its glance rows, for ``gmm``'s specification tests.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``; ``texts_<method>`` and ``rows_<method>`` for each method in
        ``lags``; where both ``initial_conditions`` and ``gmm`` are present, ``gap_lag1``
        and ``gap_lag2`` (their difference in ``gmm``'s standard errors) and ``flagged``
        (either gap beyond ``GAP_LIMIT``); and the ``gmm`` rows' Hansen J and AR(2) tests
        from ``glance`` where it carries them.

    Examples
    --------
    >>> lags = models.fit_all(frame, trend_methods=[], lag_methods=["initial_conditions", "gmm"])
    >>> compared = lag_comparison(lags["lag_effects"])
    >>> len(compared)
    12
    """
    keys = ["layer", "method"]
    sizes = lags.drop_duplicates(keys).pivot(
        index="layer", columns="method", values=["n_groups", "n_obs"]
    )
    out = pd.DataFrame(index=pd.Index(sorted(lags["layer"].unique()), name="layer"))
    for method in ordered_methods(lags["method"]):
        out[f"texts_{method}"] = sizes["n_groups"][method]
        out[f"rows_{method}"] = sizes["n_obs"][method]
    if set(COMPARED) <= set(lags["method"]):
        default, check = COMPARED
        for term in ("lag1", "lag2"):
            rows = lags[lags["term"] == term].pivot(
                index="layer", columns="method", values=["estimate", "std_error"]
            )
            gap = (rows["estimate"][default] - rows["estimate"][check]) / rows["std_error"][check]
            out[f"gap_{term}"] = gap
        out["flagged"] = (out[["gap_lag1", "gap_lag2"]].abs() > GAP_LIMIT).any(axis=1)
    if glance is not None and "method" in glance:
        tests = glance[(glance["method"] == COMPARED[1])]
        if "fit" in tests:
            tests = tests[tests["fit"] == "lag_effects"]
        present = [c for c in GMM_TESTS if c in tests]
        if present and len(tests):
            out = out.join(tests.set_index("layer")[present].astype(float))
    return out.reset_index()
