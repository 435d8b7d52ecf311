"""Tables for the reports: what they show, as text, and as Markdown.

Holds:
- ``coefficient_display``: a coefficient table as one row per layer and term, one column per
  method, cells ``estimate [low, high]`` marked where significant after Holm correction,
  each header naming the level of that method's intervals;
- ``lag_check_display``: ``summaries.lag_comparison`` as a table to read;
- ``glance_display``: a ``glance`` table summarised per fit and method (and model);
- ``provenance_rows``: ``frame.attrs`` and stage timings as (label, value) rows;
- ``markdown_table``: a DataFrame as a GitHub Markdown table (no ``tabulate`` needed).

HTML tables are drawn by the ``table`` macro of ``templates/report.html.j2`` from the same
DataFrames; CSV files are the full tables as ``models`` returns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from attnmag.reports.summaries import (
    ALPHA,
    COMPARED,
    GAP_LIMIT,
    interval_level,
    ordered_methods,
    percent,
)

__all__ = [
    "coefficient_display",
    "glance_display",
    "lag_check_display",
    "markdown_table",
    "provenance_rows",
]

TERM_LABELS = {
    "intercept": "intercept",
    "lag1": "lag-1",
    "lag2": "lag-2",
    "position": "slope (position)",
    "y1": "y1 (log norm at position 1)",
    "y2": "y2 (log norm at position 2)",
}
PROVENANCE_LABELS = {
    "model": "model",
    "model_revision": "model revision",
    "model_type": "model type",
    "family": "architecture family",
    "dtype": "weights dtype",
    "device": "device",
    "n_model_layers": "layers in the model",
    "layers": "layers measured",
    "corpus": "corpus",
    "split": "split",
    "corpus_sample": "corpus sample",
    "n_texts": "texts given",
    "n_sequences": "texts measured",
    "n_skipped_empty": "empty texts skipped",
    "n_truncated": "texts truncated",
    "max_length": "maximum length (tokens)",
    "n_tokens": "tokens measured",
    "batch_size": "batch size",
}


def _format(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.3g}"


def _whole(value: float) -> str:
    return "" if pd.isna(value) else f"{value:,.0f}"


def coefficient_display(table: pd.DataFrame, *, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per layer and term, one column per method: ``estimate [low, high]``.

    Parameters
    ----------
    table : pandas.DataFrame
        A coefficient table of ``models``.
    alpha : float
        A ``*`` marks ``p_adjusted < alpha``; a ``†`` marks a fit that did not converge.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``term`` and one per method, each header saying the level of that
        method's intervals, read from the table's ``conf_level``.

    Raises
    ------
    AttnmagError
        Where a method's rows hold several levels, or none.

    Examples
    --------
    >>> trend = models.position_trend(frame, conf_level=0.9)  # doctest: +SKIP
    >>> coefficient_display(trend).columns[2]  # doctest: +SKIP
    'ols (90% CI)'
    """
    levels = {
        method: percent(interval_level(part, name=f"coefficient ({method})"))
        for method, part in table.groupby("method", sort=False)
    }
    cells = table.assign(
        cell=[
            ("no estimate" if pd.isna(e) else f"{_format(e)} [{_format(lo)}, {_format(hi)}]")
            + ("*" if p < alpha else "")
            + ("" if ok else "†")
            for e, lo, hi, p, ok in zip(
                table["estimate"],
                table["conf_low"],
                table["conf_high"],
                table["p_adjusted"],
                table["converged"].astype(bool),
                strict=True,
            )
        ],
        term_order=table["term"]
        .map({t: i for i, t in enumerate(TERM_LABELS)})
        .fillna(len(TERM_LABELS)),
    )
    wide = cells.pivot(index=["layer", "term_order", "term"], columns="method", values="cell")
    wide = wide[ordered_methods(wide.columns)].sort_index()
    wide = wide.reset_index().drop(columns="term_order")
    wide["term"] = wide["term"].map(TERM_LABELS).fillna(wide["term"])
    wide.columns = ["layer", "term"] + [f"{m} ({levels[m]} CI)" for m in wide.columns[2:]]
    return wide.fillna("")


def lag_check_display(compared: pd.DataFrame) -> pd.DataFrame:
    """``summaries.lag_comparison`` to read: one row per layer, gaps, tests, texts and rows.

    Parameters
    ----------
    compared : pandas.DataFrame
        What ``summaries.lag_comparison`` returns.

    Returns
    -------
    pandas.DataFrame
        Gaps (``initial_conditions`` minus ``gmm`` in ``gmm``'s standard errors, with a
        ``!`` where beyond ``GAP_LIMIT``), tests as ``statistic (p)``, and texts / rows per
        method, as text.

    Examples
    --------
    >>> lag_check_display(lag_comparison(lags, models.glance(lags)))  # doctest: +SKIP
    """
    out = pd.DataFrame({"layer": compared["layer"].astype(int)})
    default, check = COMPARED
    for term in ("lag1", "lag2"):
        column = f"gap_{term}"
        if column in compared:
            out[f"{term.replace('lag', 'lag-')} gap ({check} SEs)"] = [
                "" if pd.isna(g) else f"{g:+.2f}" + ("!" if abs(g) > GAP_LIMIT else "")
                for g in compared[column]
            ]
    if "hansen_j" in compared:
        out["Hansen J (df; p)"] = [
            "" if pd.isna(j) else f"{j:.3g} ({df:g}; {_format(p)})"
            for j, df, p in zip(
                compared["hansen_j"],
                compared.get("hansen_df", np.nan),
                compared.get("hansen_p", np.nan),
                strict=True,
            )
        ]
    if "ar2_statistic" in compared:
        out["AR(2) z (p)"] = [
            "" if pd.isna(z) else f"{z:.3g} ({_format(p)})"
            for z, p in zip(compared["ar2_statistic"], compared.get("ar2_p", np.nan), strict=True)
        ]
    if "n_instruments" in compared:
        out["instruments"] = compared["n_instruments"].map(_format)
    methods = [c.removeprefix("texts_") for c in compared.columns if c.startswith("texts_")]
    for method in methods:
        out[f"{method} texts / rows"] = [
            f"{t:,.0f} / {r:,.0f}"
            for t, r in zip(compared[f"texts_{method}"], compared[f"rows_{method}"], strict=True)
        ]
    return out


def glance_display(glance: pd.DataFrame) -> pd.DataFrame:
    """One row per fit and method (and model): fits, converged, median sizes and fit, seconds.

    Parameters
    ----------
    glance : pandas.DataFrame
        A ``models.glance`` table (one row per fit).

    Returns
    -------
    pandas.DataFrame
        The summary, as text where it is formatted; its counts are of layers, or of groups
        where the fits ran per site or head as well.

    Examples
    --------
    >>> glance_display(models.glance(trend))  # doctest: +SKIP
    """
    rows = []
    names = ("position_trend", "lag_effects", *ordered_methods(glance["method"]))
    order = {name: i for i, name in enumerate(names)}
    keys = ["fit", "method", *(["model"] if "model" in glance else [])]
    noun = "groups" if {"site", "head"} & set(glance.columns) else "layers"
    glance = glance.sort_values(["fit", "method"], key=lambda c: c.map(order), kind="stable")
    for values, part in glance.groupby(keys, sort=False):
        row: dict[str, Any] = {
            **dict(zip(keys, values, strict=True)),
            noun: len(part),
            "converged": f"{int(part['converged'].astype(bool).sum())} of {len(part)}",
            "median n_obs": _whole(part["n_obs"].median()),
            "median n_groups": _whole(part["n_groups"].median()),
        }
        for column in ("r2", "sigma"):
            if column in part:
                row[f"median {column}"] = _format(part[column].median())
        if "seconds" in part:
            row[f"seconds (all {noun})"] = f"{part['seconds'].sum():.2f}"
        if "warnings" in part:
            row[f"{noun} with warnings"] = int(part["warnings"].map(_has_text).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _has_text(value: object) -> bool:
    """Whether a glance ``warnings`` cell holds a message."""
    return isinstance(value, str) and bool(value.strip())


def _provenance_value(value: object) -> str:
    """A provenance value as short text (lists of layers as ranges, mappings as k=v)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
        if list(value) == list(range(value[0], value[0] + len(value))) and len(value) > 2:
            return f"{value[0]} to {value[-1]} ({len(value)})"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def provenance_rows(
    attrs: Mapping[str, Any], *, timings: Mapping[str, float] | None = None
) -> list[tuple[str, str]]:
    """The run's provenance as (label, value) rows: known keys first, then the rest.

    Parameters
    ----------
    attrs : mapping
        A frame's ``attrs``.
    timings : mapping, optional
        Stage -> seconds; they win over the ``seconds_<stage>`` keys of ``attrs``.

    Returns
    -------
    list of tuple
        (label, value) pairs as text: ``versions`` becomes one row of package versions, the
        stage seconds one row of wall times.

    Examples
    --------
    >>> provenance_rows({"model": "gpt2", "n_truncated": 3})
    [('model', 'gpt2'), ('texts truncated', '3')]
    """
    rows = [
        (label, _provenance_value(attrs[key]))
        for key, label in PROVENANCE_LABELS.items()
        if attrs.get(key) not in (None, "", [], {})
    ]
    seconds = {
        k.removeprefix("seconds_"): v
        for k, v in attrs.items()
        if k.startswith("seconds_") and isinstance(v, int | float)
    }
    seconds.update(timings or {})
    skip = set(PROVENANCE_LABELS) | {"versions"} | {f"seconds_{k}" for k in seconds}
    rows += [
        (key.replace("_", " "), _provenance_value(value))
        for key, value in attrs.items()
        if key not in skip and value not in (None, "", [], {})
    ]
    if isinstance(attrs.get("versions"), Mapping):
        rows.append(("package versions", _provenance_value(attrs["versions"])))
    if seconds:
        rows.append(("wall time", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())))
    return rows


def _markdown_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub Markdown table, numbers right-aligned.

    Parameters
    ----------
    table : pandas.DataFrame
        Any table; ``|`` and line breaks in cells are escaped.

    Returns
    -------
    str
        The Markdown table.

    Examples
    --------
    >>> print(markdown_table(pd.DataFrame({"layer": [0], "term": ["lag1"]})))
    | layer | term |
    | ---: | --- |
    | 0 | lag1 |
    """
    header = [_markdown_cell(c) for c in table.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(table[c]) else "---" for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += [
        "| " + " | ".join(_markdown_cell(v) for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)
