"""Tables for the reports: what they show, as text, and as Markdown.

Holds:
- ``coefficient_display``: a coefficient table as one table per term, one row per layer,
  per method its ``estimate (low to high)`` (``*`` where the interval excludes zero) and its
  Holm-adjusted p-value, each header naming the level of that method's intervals;
- ``lag_check_display``: ``summaries.lag_comparison`` as a table to read, what every layer
  shares stated once;
- ``stars_rule``: the rule of the tables' stars and Holm column, in words;
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

from attnmag.reports.numbers import NBSP, column_format, number, p_value
from attnmag.reports.summaries import (
    ALPHA,
    COMPARED,
    GAP_LIMIT,
    interval_level,
    ordered_methods,
    percent,
    takes_fits,
)

__all__ = [
    "coefficient_display",
    "glance_display",
    "lag_check_display",
    "markdown_table",
    "provenance_rows",
    "stars_rule",
]

TERM_LABELS = {
    "Intercept": "intercept",
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
    "weights_format": "weights' format",
    "quantisation": "quantisation",
    "quantisation_mix": "tensor types (share of parameters)",
    "dtype": "weights' dtype as measured",
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


def _whole(value: float) -> str:
    return "" if pd.isna(value) else f"{value:,.0f}"


def _excludes_zero(low: float, high: float) -> bool:
    """Whether an interval lies wholly above or below zero."""
    return bool(low > 0 or high < 0)


@takes_fits
def coefficient_display(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per term: one row per layer, per method its ``estimate (low to high)`` and
    its Holm-adjusted p-value.

    Each method's column shares one format (``numbers.column_format``), so its bounds print
    apart from its estimates. A ``*`` marks an interval that excludes zero (for a Wald
    interval at level 1 - a: the unadjusted p < a); the ``Holm p`` column beside it is the
    p-value Holm-adjusted across layers, which the findings count. A ``†`` marks a fit that
    did not converge.

    Parameters
    ----------
    table : pandas.DataFrame
        A coefficient table of ``models``.

    Returns
    -------
    dict
        Term label (``TERM_LABELS``) -> table with columns ``layer`` and, per method,
        ``<method> (<level> CI)`` and ``<method> Holm p``.

    Raises
    ------
    AttnmagError
        Where a method's rows hold several levels, or none.

    Examples
    --------
    >>> trend = models.position_trend(frame, conf_level=0.9)  # doctest: +SKIP
    >>> list(coefficient_display(trend)["slope (position)"].columns)[:3]  # doctest: +SKIP
    ['layer', 'ols (90% CI)', 'ols Holm p']
    """
    levels = {
        method: percent(interval_level(part, name=f"coefficient ({method})"))
        for method, part in table.groupby("method", sort=False)
    }
    terms = sorted(
        table["term"].unique(),
        key=lambda t: (
            (list(TERM_LABELS).index(t), t) if t in TERM_LABELS else (len(TERM_LABELS), t)
        ),
    )
    out = {}
    for term in terms:
        rows = table[table["term"] == term]
        wide = pd.DataFrame({"layer": sorted(rows["layer"].astype(int).unique())})
        for method in ordered_methods(rows["method"]):
            part = rows[rows["method"] == method]
            part = part.set_index(part["layer"].astype(int))
            part = part.reindex(wide["layer"])
            fmt = column_format(part["estimate"], part["conf_low"], part["conf_high"])
            wide[f"{method} ({levels[method]} CI)"] = [
                ""
                if pd.isna(ok)
                else ("no estimate" if pd.isna(e) else fmt.interval(e, lo, hi))
                + ("*" if _excludes_zero(lo, hi) else "")
                + ("" if ok else "†")
                for e, lo, hi, ok in zip(
                    part["estimate"],
                    part["conf_low"],
                    part["conf_high"],
                    part["converged"].map(lambda v: v if pd.isna(v) else bool(v)),
                    strict=True,
                )
            ]
            wide[f"{method} Holm p"] = part["p_adjusted"].map(p_value).tolist()
        out[TERM_LABELS.get(term, term)] = wide
    return out


def stars_rule(level: float, *, holm: str = "across layers", alpha: float = ALPHA) -> str:
    """The rule of the coefficient tables' marks, in words, for every caption that shows
    intervals and stars together.

    Parameters
    ----------
    level : float
        The intervals' level (a star: the interval excludes zero, the unadjusted
        p < 1 - level).
    holm : str
        What Holm's correction ran across, in words.
    alpha : float
        The level the findings' counts use, on the Holm-adjusted p-values.

    Returns
    -------
    str
        The rule.

    Examples
    --------
    >>> stars_rule(0.95)[:46]
    'Estimate (95% CI). * the 95% CI excludes zero,'
    """
    ci = f"{percent(level)} CI"
    return (
        f"Estimate ({ci}). * the {ci} excludes zero, that is the unadjusted p < "
        f"{1 - level:.10g}; stars and intervals are not corrected for the many layers. "
        f"Holm p: the p-value after Holm's correction {holm}, which the counts in the text use "
        f"(significant below {alpha:g}). † the fit did not converge."
    )


def lag_check_display(compared: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``summaries.lag_comparison`` to read: one row per layer, with what is the same in
    every layer stated once beside the table rather than repeated in it.

    Parameters
    ----------
    compared : pandas.DataFrame
        What ``summaries.lag_comparison`` returns.

    Returns
    -------
    table : pandas.DataFrame
        Per layer: gaps (``initial_conditions`` minus ``gmm`` in ``gmm``'s standard errors,
        ``!`` where beyond ``GAP_LIMIT``), gmm's tests as ``statistic (p)``, and the columns
        of instruments and of texts / rows per method that differ between layers, as text.
    same : dict
        Label -> value of the columns that are the same in every layer (for example
        ``{"gmm texts / rows": "1,066 / 22,560"}``).

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
    tests = (
        ("Hansen J (p)", "hansen_j", "hansen_p"),
        ("AR(2) z (p)", "ar2_statistic", "ar2_p"),
    )
    for label, statistic, p in tests:
        if statistic in compared:
            fmt = column_format(compared[statistic])
            out[label] = [
                "" if pd.isna(x) else f"{fmt.number(x)}{NBSP}({p_value(q)})"
                for x, q in zip(
                    compared[statistic], compared.get(p, pd.Series(np.nan)), strict=False
                )
            ]
    counts = {}
    if "hansen_df" in compared:
        counts["Hansen J df"] = compared["hansen_df"].map(_whole)
    if "n_instruments" in compared:
        counts["instruments"] = compared["n_instruments"].map(_whole)
    methods = [c.removeprefix("texts_") for c in compared.columns if c.startswith("texts_")]
    for method in methods:
        counts[f"{method} texts / rows"] = pd.Series(
            [
                f"{_whole(t)} / {_whole(r)}"
                for t, r in zip(
                    compared[f"texts_{method}"], compared[f"rows_{method}"], strict=True
                )
            ],
            index=compared.index,
        )
    same = {}
    for label, values in counts.items():
        if values.nunique(dropna=False) == 1:
            same[label] = str(values.iloc[0])
        else:
            out[label] = values.to_numpy()
    return out, same


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
                row[f"median {column}"] = number(part[column].median())
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
