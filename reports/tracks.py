"""The report section "What tracks the magnitude": token-level covariates and the first
token's share, where the frame has those columns (``token_columns=``, ``sink=True``).

Holds:
- ``tracks_formula``: ``log_norm ~ position + surprisal + log_frequency + C(word_start) +
  C(punct)``, with the token columns the frame has;
- ``tracks_table``: that formula fitted per layer by OLS (CR1 by text, Holm across layers)
  on the main series;
- ``sink_means``: per layer, the mean ``sink_weight`` and the mean share ``sink_norm / norm``;
- ``tracks_finding``: the section's sentences and numbers;
- ``plot_tracks``: one panel per covariate's coefficient by layer, and the sink's weight
  against its share;
- ``tracks_spec``: the section as the report's ``grouped_specs`` takes it, or None.

Usage::

    spec = tracks_spec(frame, main={"site": "attn"}, first_position=1, max_position=30)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from attnmag import models
from attnmag.models import CONF_LEVEL, MAX_POSITION
from attnmag.models.source import open_source
from attnmag.reports.findings import Finding
from attnmag.reports.folder import Folder, run_query
from attnmag.reports.numbers import number
from attnmag.reports.panels import layer_colours, plot_coefficients
from attnmag.reports.summaries import ALPHA

__all__ = [
    "TERMS",
    "plot_tracks",
    "sink_means",
    "tracks_finding",
    "tracks_formula",
    "tracks_spec",
    "tracks_table",
]

#: Each token column and how the formula enters it.
TERMS = {
    "surprisal": "surprisal",
    "log_frequency": "log_frequency",
    "word_start": "C(word_start)",
    "punct": "C(punct)",
}
#: What each coefficient's term is called in the tables (statsmodels' names) and in words.
WORDS = {
    "surprisal": ("surprisal", "surprisal (per nat)"),
    "log_frequency": ("log_frequency", "log frequency"),
    "word_start": ("C(word_start)[T.True]", "a word start"),
    "punct": ("C(punct)[T.True]", "punctuation"),
}


def tracks_formula(columns: object) -> str | None:
    """The section's formula with the token columns among ``columns``, or None without any.

    Parameters
    ----------
    columns : iterable of str
        The frame's columns.

    Returns
    -------
    str or None
        ``log_norm ~ position + ...``.

    Examples
    --------
    >>> tracks_formula(["layer", "position", "punct", "surprisal"])
    'log_norm ~ position + surprisal + C(punct)'
    """
    present = [term for name, term in TERMS.items() if name in set(columns)]
    return "log_norm ~ " + " + ".join(["position", *present]) if present else None


def tracks_table(
    frame: pd.DataFrame | Folder,
    main: Mapping[str, object],
    *,
    first_position: int = 1,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
) -> pd.DataFrame:
    """``tracks_formula`` fitted per layer by OLS (CR1 by text), on the main series.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame with token columns, or a shard folder's view.
    main : mapping
        The main series' ``site`` and ``head`` (``write.main_series``), selected from the
        table.
    first_position, max_position : int
        The positions fitted.
    conf_level : float
        The intervals' level.

    Returns
    -------
    pandas.DataFrame
        The tidy table (``p_adjusted``: Holm across the groups fitted).
    """
    source = frame.source if isinstance(frame, Folder) else frame
    formula = tracks_formula(frame.columns)
    positions = (first_position, max_position)
    table = models.fit(source, formula, positions=positions, conf_level=conf_level).tidy
    for column, value in main.items():
        table = table[table[column] == value]
    return table.reset_index(drop=True)


def sink_means(
    frame: pd.DataFrame | Folder,
    main: Mapping[str, object],
    *,
    first_position: int = 1,
    max_position: int = MAX_POSITION,
) -> pd.DataFrame:
    """Per layer (and model), the mean ``sink_weight`` and the mean ``sink_norm / norm``
    (the first token's part of the update relative to the whole) at the positions given.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame with the sink columns, or a shard folder's view.
    main : mapping
        The main series' ``site`` and ``head``.
    first_position, max_position : int
        The positions averaged.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``sink_weight``, ``sink_share`` (and ``model`` where the frame has it).
    """
    if isinstance(frame, Folder):
        source = frame.source
    else:
        columns = ["layer", "position", "norm", "sink_weight", "sink_norm", *main]
        columns += ["model"] if "model" in frame.columns else []
        source = open_source(frame[columns])
    keys = ["model", "layer"] if "model" in frame.columns else ["layer"]
    where = [f"position BETWEEN {int(first_position)} AND {int(max_position)}"]
    where += [f"CAST({column} AS VARCHAR) = '{value}'" for column, value in main.items()]
    query = (
        f"SELECT {', '.join(keys)}, avg(sink_weight) AS sink_weight, "
        "avg(sink_norm / norm) AS sink_share FROM frame "
        f"WHERE {' AND '.join(where)} GROUP BY ALL ORDER BY ALL"
    )
    return run_query(source, query)


def tracks_finding(
    table: pd.DataFrame | None, sink: pd.DataFrame | None, *, alpha: float = ALPHA
) -> Finding:
    """What tracks the magnitude, in sentences: per covariate, in how many layers its
    coefficient is significantly positive or negative (Holm), with its median over layers;
    and where the first token takes the most attention, how large its part of the update is.

    Parameters
    ----------
    table : pandas.DataFrame or None
        ``tracks_table``'s table.
    sink : pandas.DataFrame or None
        ``sink_means``' table.
    alpha : float
        The significance level, on Holm-adjusted p-values.

    Returns
    -------
    Finding
        ``numbers``: per covariate ``n_layers``, ``n_positive``, ``n_negative``,
        ``median``; and ``sink`` (the layer of the largest mean weight, that weight and the
        share there).
    """
    numbers: dict = {}
    parts = []
    for name, (term, words) in WORDS.items():
        rows = table[table["term"] == term] if table is not None else pd.DataFrame()
        if rows.empty:
            continue
        significant = rows["p_adjusted"] < alpha
        entry = {
            "n_layers": int(len(rows)),
            "n_positive": int((significant & (rows["estimate"] > 0)).sum()),
            "n_negative": int((significant & (rows["estimate"] < 0)).sum()),
            "median": float(rows["estimate"].median()),
        }
        numbers[name] = entry
        parts.append(
            f"{words} raises the log norm in {entry['n_positive']} and lowers it in "
            f"{entry['n_negative']} of {entry['n_layers']} layers (median coefficient "
            f"{number(entry['median'])})"
        )
    sentences = (
        [
            "With position and the other token columns held fixed (significant after Holm's "
            f"correction at {alpha:g}): " + "; ".join(parts) + "."
        ]
        if parts
        else []
    )
    if sink is not None and not sink.empty:
        top = sink.loc[sink["sink_weight"].idxmax()]
        numbers["sink"] = {
            "layer": int(top["layer"]),
            "weight": float(top["sink_weight"]),
            "share": float(top["sink_share"]),
        }
        reading = (
            "its weight overstates its contribution there"
            if top["sink_share"] < top["sink_weight"]
            else "its contribution there is no smaller than its weight"
        )
        sentences.append(
            f"The first token takes the most attention in layer {int(top['layer'])} "
            f"(mean weight {number(top['sink_weight'])}); its part of the update there is "
            f"{number(top['sink_share'])} of the update's norm on average: {reading}."
        )
    return Finding(numbers, sentences)


def plot_tracks(table: pd.DataFrame | None, sink: pd.DataFrame | None) -> Figure:
    """One panel per covariate (its OLS coefficient per layer with the table's interval),
    then the first token's mean weight against its mean share of the update, a dot per layer.

    Parameters
    ----------
    table : pandas.DataFrame or None
        ``tracks_table``'s table.
    sink : pandas.DataFrame or None
        ``sink_means``' table.

    Returns
    -------
    matplotlib.figure.Figure
        The panels side by side.
    """
    terms = [] if table is None else [(t, w) for t, w in WORDS.values() if t in set(table["term"])]
    panels = len(terms) + (sink is not None)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        columns = min(panels, 3)
        rows = -(-panels // columns)
        fig = Figure(figsize=(4.2 * columns, 3.6 * rows), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax in axes[panels:]:
            ax.remove()
        for ax, (term, words) in zip(axes, terms, strict=False):
            plot_coefficients(table, term=term, legend=False, ax=ax)
            ax.set_title(words)
        if sink is not None:
            ax = axes[panels - 1]
            colours = layer_colours(sink["layer"])
            ax.scatter(
                sink["sink_weight"],
                sink["sink_share"],
                c=[colours[int(layer)] for layer in sink["layer"]],
                s=28,
            )
            top = float(max(sink["sink_weight"].max(), sink["sink_share"].max(), 0.05))
            # Each label sits a line above those of the earlier dots within 4% of the axes'
            # span of its own, on the lowest line free there: near dots' numbers never merge.
            points = sink[["sink_weight", "sink_share"]].to_numpy()
            lines: list[int] = []
            for i, (layer, point) in enumerate(zip(sink["layer"], points, strict=True)):
                near = (abs(points[:i] - point) < 0.04 * top).all(axis=1)
                taken = {lines[j] for j in near.nonzero()[0]}
                lines.append(min(set(range(len(taken) + 1)) - taken))
                ax.annotate(
                    str(int(layer)),
                    tuple(point),
                    fontsize=7,
                    xytext=(3, 3 + 8 * lines[-1]),
                    textcoords="offset points",
                )
            ax.plot([0, top], [0, top], color="0.6", linewidth=0.8, linestyle="--")
            ax.set_xlabel("mean attention weight on the first token")
            ax.set_ylabel("its part of the update / the update's norm")
            ax.set_title("First token: weight vs contribution")
    return fig


def tracks_spec(
    frame: pd.DataFrame | Folder,
    main: Mapping[str, object],
    *,
    alpha: float = ALPHA,
    first_position: int = 1,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
) -> tuple[str, str, Finding, str, Callable[[], Figure]] | None:
    """The section "What tracks the magnitude", where the frame has token or sink columns.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame, or a shard folder's view.
    main : mapping
        The main series' ``site`` and ``head`` (``write.main_series``).
    alpha, first_position, max_position, conf_level
        As the report takes them.

    Returns
    -------
    tuple or None
        ``(key, title, finding, caption, draw)``; None where the frame has neither.
    """
    formula = tracks_formula(frame.columns)
    has_sink = {"sink_weight", "sink_norm"} <= set(frame.columns)
    if formula is None and not has_sink:
        return None
    span = {"first_position": first_position, "max_position": max_position}
    table = None
    if formula is not None:
        table = tracks_table(frame, main, conf_level=conf_level, **span)
    sink = sink_means(frame, main, **span) if has_sink else None
    caption = (
        f"Positions {first_position} to {max_position}. "
        + (
            f"The coefficients of {formula} per layer, by OLS with "
            f"{round(conf_level * 100):g}% CIs cluster-robust by text (CR1); significance "
            f"after Holm's correction across layers at {alpha:g}. "
            if formula
            else ""
        )
        + (
            "Last panel: per layer, the mean attention weight from a token to the first token "
            "(over heads) against the mean norm of the first token's part of the update "
            "relative to the update's norm; on the dashed line the weight equals the share."
            if has_sink
            else ""
        )
    )
    return (
        "tracks",
        "What tracks the magnitude",
        tracks_finding(table, sink, alpha=alpha),
        caption.strip(),
        lambda: plot_tracks(table, sink),
    )
