"""The report's findings: numbers computed from the frame and tables, and sentences from them.

Holds:
- ``Finding``: one section's numbers, sentences and warnings;
- ``findings``: every section's ``Finding``, keyed ``data``, ``layers``, ``positions``,
  ``trend`` and ``lags``;
- ``data_finding``, ``layer_finding``, ``position_finding``, ``trend_finding``,
  ``lag_finding``: one section each;
- ``head_finding``, ``site_finding``, ``model_finding``: the sections of a grouped frame
  (heads, sites, several models), one sentence per model;
- ``median_layer``: the row of a method's term whose estimate is the median over layers;
- ``layer_ranges``: layers as runs (``0–3, 5``);
- ``LAG_MEANING``: what lag-1 means, in plain words;
- ``METHOD_WORDS``: what each fitting method is, in words, per model (``position_trend``,
  ``lag_effects``); ``LAG_ROLES``: what each lag method estimates, in a few words.

The layer, trend and lag findings each carry a one-sentence ``headline`` (a number, its
interval) for the report's key results. Counts of significant layers use ``p_adjusted``
(Holm across layers, per term and method) at level ``alpha``; every sentence is built from
the ``numbers`` beside it, so a test can check the one against the other and both against
the tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from attnmag.models import CONF_LEVEL, MAX_POSITION
from attnmag.models.leading import LEADING_LAST, LEADING_T
from attnmag.reports.docs import shared_docs
from attnmag.reports.folder import Folder, levels, row_count, where_in
from attnmag.reports.numbers import interval, number
from attnmag.reports.summaries import (
    ALPHA,
    COMPARED,
    GAP_LIMIT,
    lag_comparison,
    layer_levels,
    layer_means,
    ordered_methods,
    percent,
    position_means,
    sequence_lengths,
    site_ratios,
    takes_fits,
)

__all__ = [
    "GMM_MIN_TOKENS",
    "LAG_MEANING",
    "LAG_ROLES",
    "METHOD_WORDS",
    "Finding",
    "data_finding",
    "findings",
    "head_finding",
    "lag_finding",
    "layer_finding",
    "layer_ranges",
    "median_layer",
    "model_finding",
    "position_finding",
    "site_finding",
    "trend_finding",
]

METHOD_WORDS = {
    "position_trend": {
        "aggregate": "OLS of the log of the mean norm on position, one point per position",
        "ols": "pooled OLS on every token, standard errors cluster-robust (CR1) by text",
        "mixed": "a linear mixed model (REML, statsmodels MixedLM) with a random intercept "
        "per text",
    },
    "lag_effects": {
        "ols": "pooled OLS of log_norm on lag1 and lag2 over every text (standard errors "
        "cluster-robust by text): a description of how tokens' magnitudes co-vary, not of "
        "persistence within a text, since lasting differences between texts enter the lags",
        "initial_conditions": "within-text persistence: a linear mixed model (maximum "
        "likelihood) with a random intercept per text and the text's first two log norms "
        "(y1, y2) and position as covariates (Wooldridge's initial conditions), standard "
        "errors cluster-robust by text over the coefficients and the variance components "
        "together (Mancl-DeRouen bias-corrected)",
        "gmm": "within-text persistence: Arellano-Bond difference GMM (two-step, Windmeijer's "
        "standard errors, collapsed lags 2-6 as instruments, a position term), the check with "
        "fewer assumptions and wider intervals",
    },
}
#: What each lag method estimates, in a few words (the findings' sentences open with it).
LAG_ROLES = {
    "ols": "a pooled description",
    "initial_conditions": "within texts",
    "gmm": "within texts",
}
#: Texts shorter than this have no lagged differences for ``gmm`` to instrument.
GMM_MIN_TOKENS = 5


@dataclass(frozen=True)
class Finding:
    """One section's findings: the numbers, the sentences made from them, warnings, and the
    section's headline for the report's key results (None where it has none).

    Examples
    --------
    >>> found = data_finding(frame)
    >>> found.numbers["n_sequences"], found.headline is None, len(found.sentences) > 0
    (16, True, True)
    """

    numbers: dict[str, Any]
    sentences: list[str]
    warnings: list[str] = field(default_factory=list)
    headline: str | None = None

    @property
    def text(self) -> str:
        """The sentences as one paragraph."""
        return " ".join(self.sentences)


def _count(value: int, noun: str) -> str:
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def _signed(value: float) -> str:
    """``value`` as ``number`` prints it, with its sign either way ('' for a missing one)."""
    return number(value) if pd.isna(value) or value <= 0 else "+" + number(value)


def _layer_list(layers: Sequence[int]) -> str:
    return ", ".join(str(int(x)) for x in layers)


@shared_docs
def data_finding(frame: pd.DataFrame | Folder) -> Finding:
    """How many texts, tokens and layers, and how long the texts are.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame or a shard folder's view (its ``attrs`` give the texts skipped and
        truncated).

    {returns_finding}.

    Examples
    --------
    >>> data_finding(frame).numbers["n_sequences"]
    16
    """
    lengths = sequence_lengths(frame)["length"]
    attrs = frame.attrs
    numbers = {
        "n_sequences": int(len(lengths)),
        "n_tokens": int(lengths.sum()),
        "n_layers": len(levels(frame, "layer")),
        "n_rows": row_count(frame),
        "median_length": float(lengths.median()),
        "min_length": int(lengths.min()),
        "max_length": int(lengths.max()),
        "n_skipped_empty": attrs.get("n_skipped_empty"),
        "n_truncated": attrs.get("n_truncated"),
    }
    sentences = [
        f"The frame holds {_count(numbers['n_tokens'], 'real token')} from "
        f"{_count(numbers['n_sequences'], 'text')}, measured at "
        f"{_count(numbers['n_layers'], 'layer')} ({numbers['n_rows']:,} rows).",
        f"Texts are {numbers['min_length']} to {numbers['max_length']} tokens long "
        f"(median {numbers['median_length']:g}).",
    ]
    if numbers["n_skipped_empty"] is not None or numbers["n_truncated"] is not None:
        sentences.append(
            f"{_count(int(numbers['n_skipped_empty'] or 0), 'empty text')} skipped and "
            f"{_count(int(numbers['n_truncated'] or 0), 'text')} truncated to "
            f"{_limit(attrs.get('max_length'))} before measuring."
        )
    return Finding(numbers, sentences)


def _limit(max_length: object) -> str:
    """The length texts were cut to, as the provenance records it."""
    return f"{int(max_length):,} tokens" if max_length else "the model's context"


@shared_docs
def layer_finding(frame: pd.DataFrame | Folder, *, conf_level: float = CONF_LEVEL) -> Finding:
    """Which layers have the largest and smallest mean norm (first token left out).

    Parameters
    ----------
    {frame}
    conf_level : float
        The level of the means' intervals (cluster-robust by text).

    {returns_finding}.

    Examples
    --------
    >>> print(layer_finding(frame, conf_level=0.9).text)
    Leaving out the first token, layer ... has the largest mean norm, ... and layer ... the
    smallest, ...; the largest is ... times the smallest.
    """
    means = layer_means(frame, value="norm", conf_level=conf_level).set_index("layer")
    top, bottom = int(means["mean"].idxmax()), int(means["mean"].idxmin())
    numbers = {
        "layer_largest_mean_norm": top,
        "largest_mean_norm": float(means.loc[top, "mean"]),
        "largest_conf": (float(means.loc[top, "conf_low"]), float(means.loc[top, "conf_high"])),
        "layer_smallest_mean_norm": bottom,
        "smallest_mean_norm": float(means.loc[bottom, "mean"]),
        "smallest_conf": (
            float(means.loc[bottom, "conf_low"]),
            float(means.loc[bottom, "conf_high"]),
        ),
        "ratio": float(means.loc[top, "mean"] / means.loc[bottom, "mean"]),
    }
    level = f"{percent(conf_level)} CI"
    sentences = [
        f"Leaving out the first token, layer {top} has the largest mean norm, "
        f"{interval(numbers['largest_mean_norm'], *numbers['largest_conf'], label=level)} and "
        f"layer {bottom} the smallest, "
        f"{interval(numbers['smallest_mean_norm'], *numbers['smallest_conf'], label=level)}; "
        "the largest is "
        f"{number(numbers['ratio'])} times the smallest."
    ]
    headline = (
        f"Leaving out the first token, the mean norm of the attention update is largest in "
        f"layer {top}, "
        f"{interval(numbers['largest_mean_norm'], *numbers['largest_conf'], label=level)}, and "
        f"smallest in layer {bottom}, "
        f"{interval(numbers['smallest_mean_norm'], *numbers['smallest_conf'], label=level)}; "
        f"the largest is {number(numbers['ratio'])} times the smallest."
    )
    return Finding(numbers, sentences, headline=headline)


@shared_docs
def position_finding(frame: pd.DataFrame | Folder, *, max_position: int = MAX_POSITION) -> Finding:
    """The first token against the rest, and how many texts reach the last position shown.

    Parameters
    ----------
    {frame}
    max_position : int
        The last position shown.

    {returns_finding}.

    Examples
    --------
    >>> position_finding(frame).numbers["n_layers_first_larger"]
    12
    """
    cells = position_means(frame, max_position=max_position).set_index(["layer", "position"])
    first = cells["mean"].unstack("position")[0]
    ratio = first / layer_levels(frame, max_position=max_position)["mean"]
    lengths = sequence_lengths(frame)["length"]
    reach = int((lengths > max_position).sum())
    numbers = {
        "n_layers": int(len(ratio)),
        "n_layers_first_larger": int((ratio > 1).sum()),
        "median_first_ratio": float(ratio.median()),
        "max_position": max_position,
        "n_sequences_reaching_max": reach,
        "n_sequences": int(len(lengths)),
    }
    sentences = [
        f"The first token's mean norm exceeds the mean of positions 1 to {max_position} in "
        f"{numbers['n_layers_first_larger']} of {_count(numbers['n_layers'], 'layer')} "
        f"(median ratio {number(numbers['median_first_ratio'])}); the models leave it out.",
        f"Position {max_position} exists in {reach:,} of {len(lengths):,} texts, so means at "
        "late positions rest on fewer, longer texts.",
    ]
    return Finding(numbers, sentences)


def _significance(table: pd.DataFrame, *, term: str, alpha: float) -> pd.DataFrame:
    """Per method and layer, the sign of ``term``: ``-``/``+`` significantly below/above zero,
    ``0`` neither, ``?`` no estimate (a failed fit)."""
    rows = table[table["term"] == term]
    below = (rows["p_adjusted"] < alpha) & (rows["estimate"] < 0)
    above = (rows["p_adjusted"] < alpha) & (rows["estimate"] > 0)
    sign = np.select([rows["estimate"].isna(), below, above], ["?", "-", "+"], default="0")
    return rows.assign(sign=sign)[["method", "layer", "estimate", "sign"]]


def _not_converged(table: pd.DataFrame) -> dict[str, list[int]]:
    """Layers whose fit did not converge, per method."""
    bad = table[~table["converged"].astype(bool)]
    return {m: sorted(set(part["layer"].astype(int))) for m, part in bad.groupby("method")}


def _fit_warnings(table: pd.DataFrame, glance: pd.DataFrame | None, *, fit: str) -> list[str]:
    """Non-convergence from the table, and the glance table's warnings for the fit ``fit``."""
    out = [
        f"The {method} fit did not converge in {_count(len(layers), 'layer')} "
        f"({_layer_list(layers)}); its estimates there are shown but flagged "
        "(converged = False in the table)."
        for method, layers in _not_converged(table).items()
    ]
    if glance is not None and "warnings" in glance:
        part = glance if "fit" not in glance else glance[glance["fit"] == fit]
        for method, rows in part.groupby("method", sort=False):
            messages: dict[str, list[int]] = {}
            for layer, value in zip(rows["layer"], rows["warnings"], strict=True):
                for text in _warning_texts(value):
                    messages.setdefault(text, []).append(int(layer))
            if messages:
                listed = "; ".join(
                    f"{text} ({'layer' if len(layers) == 1 else 'layers'} {_layer_list(layers)})"
                    for text, layers in messages.items()
                )
                out.append(f"The {method} fits warned: {listed}.")
    return out


def _leading_warning(glance: pd.DataFrame | None) -> list[str]:
    """The sentence of the leading-position diagnostic (``models.leading``), where it flags a
    position in any layer: the positions, their layers, and the ``first_position`` that
    leaves them out."""
    if glance is None or "leading_flagged" not in glance:
        return []
    rows = glance[glance["leading_flagged"].fillna(False).astype(bool)]
    rows = rows.drop_duplicates("layer") if "layer" in rows else rows
    if rows.empty:
        return []
    parts = []
    for k in range(LEADING_LAST + 1):
        layers = rows.loc[rows[f"leading_t{k}"].abs() > LEADING_T, "layer"]
        if len(layers):
            parts.append(f"position {k} ({_layers(list(layers))})")
    suggested = int(rows["suggested_first_position"].max())
    return [
        "A leading position stands off the line through the later positions (|t| > "
        f"{LEADING_T:g}, cluster-robust): {'; '.join(parts)}. Such a position (a second "
        f"sink, say) pulls the fits; first_position={suggested} leaves it out."
    ]


def _warning_texts(value: object) -> list[str]:
    """A glance ``warnings`` cell (messages joined by '; ', or empty) as texts."""
    if not isinstance(value, str):
        return []
    return [item.strip() for item in value.split("; ") if item.strip()]


@takes_fits
@shared_docs
def trend_finding(
    trend: pd.DataFrame,
    *,
    glance: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> Finding:
    """Per method: how many layers have a slope below, above or not distinguishable from zero.

    Parameters
    ----------
    trend : pandas.DataFrame
        A ``models.position_trend`` table.
    glance : pandas.DataFrame, optional
        Its glance rows, whose warnings become the finding's warnings.
    alpha : float
        The significance level, on Holm-adjusted p-values.

    {returns_finding}, and warnings (fits that did not
        converge or warned, and leading positions that stand off the rest, with the
        ``first_position`` that leaves them out: ``models.leading``).

    Examples
    --------
    >>> print(trend_finding(tables["position_trend"]).text)
    After Holm correction across layers (alpha = 0.05), the slope is significantly below zero in
    ... of 12 layers with ols, above zero in ... and indistinguishable from zero in ... (median
    slope ... per position, ...% of the norm per position).
    """
    signs = _significance(trend, term="position", alpha=alpha)
    numbers: dict[str, Any] = {"alpha": alpha}
    clauses = []
    for method, part in signs.groupby("method", sort=False):
        counts = part["sign"].value_counts()
        median = float(part["estimate"].median())
        numbers[method] = {
            "n_layers": int(len(part)),
            "n_below_zero": int(counts.get("-", 0)),
            "n_above_zero": int(counts.get("+", 0)),
            "n_not_significant": int(counts.get("0", 0)),
            "n_no_estimate": int(counts.get("?", 0)),
            "median_slope": median,
            "median_percent_per_position": float(100 * np.expm1(median)),
        }
        n = numbers[method]
        clauses.append(
            f"below zero in {n['n_below_zero']} of {_count(n['n_layers'], 'layer')} with "
            f"{method}, above zero in {n['n_above_zero']} and indistinguishable from zero in "
            f"{n['n_not_significant']} (median slope "
            f"{number(median)} per position, {_signed(n['median_percent_per_position'])}% of "
            "the norm "
            "per position)"
            + (f", with no estimate in {n['n_no_estimate']}" if n["n_no_estimate"] else "")
        )
    sentences = [
        f"After Holm correction across layers (alpha = {alpha:g}), the slope is "
        "significantly " + "; ".join(clauses) + "."
    ]
    warnings = _fit_warnings(trend, glance, fit="position_trend") + _leading_warning(glance)
    headline = _trend_headline(trend, numbers, alpha=alpha)
    aggregate = trend.loc[trend["method"] == "aggregate", "n_obs"]
    if len(aggregate):
        warnings.append(
            f"The aggregate fit has one point per position ({int(aggregate.median())} per "
            "layer); its "
            "standard errors treat those means as independent, though the same texts stand "
            "behind every point, and ignore how many texts each mean rests on."
        )
    return Finding(numbers, sentences, warnings, headline=headline)


@takes_fits
def median_layer(table: pd.DataFrame, *, method: str, term: str) -> pd.Series | None:
    """The row of ``method``'s ``term`` whose estimate is the median over layers.

    Parameters
    ----------
    table : pandas.DataFrame
        A coefficient table of ``models``.
    method, term : str
        The rows looked at.

    Returns
    -------
    pandas.Series or None
        The row (the lower of the middle two for an even count), or None where no layer has
        an estimate and interval.

    Examples
    --------
    >>> int(median_layer(tables["position_trend"], method="ols", term="position")["layer"])
    8
    """
    rows = table[(table["method"] == method) & (table["term"] == term)].dropna(
        subset=["estimate", "conf_low", "conf_high"]
    )
    if rows.empty:
        return None
    ordered = rows.sort_values(["estimate", "layer"], kind="stable")
    return ordered.iloc[(len(ordered) - 1) // 2]


def _trend_headline(trend: pd.DataFrame, numbers: Mapping[str, Any], *, alpha: float) -> str:
    """The trend in one sentence: with the preferred inference method, how many layers' norms
    fall or rise along positions, and the median layer's change per position."""
    present = ordered_methods(trend["method"])
    method = next((m for m in ("ols", "mixed") if m in present), present[0])
    row = median_layer(trend, method=method, term="position")
    n = numbers[method]
    text = (
        f"With {method}, the norm falls along positions in {n['n_below_zero']} of "
        f"{_count(n['n_layers'], 'layer')} and rises in {n['n_above_zero']} (Holm-adjusted "
        f"p < {alpha:g})"
    )
    if row is None:
        return text + "."
    level = f"{percent(row['conf_level'])} CI"
    change = [100 * np.expm1(row[c]) for c in ("estimate", "conf_low", "conf_high")]
    return text + (
        f"; in the median layer, layer {int(row['layer'])}, it changes by "
        f"{interval(*change, label=level)} percent per position."
    )


def _lag_signs(lags: pd.DataFrame, method: str, *, alpha: float) -> dict[str, Any]:
    """One lag method's sign counts per term, medians, sizes and commonest sign pattern."""
    entry: dict[str, Any] = {}
    per_layer = {}
    rows = lags[lags["method"] == method]
    for term in ("lag1", "lag2"):
        part = _significance(rows, term=term, alpha=alpha)
        counts = part["sign"].value_counts()
        entry[term] = {
            "n_positive": int(counts.get("+", 0)),
            "n_negative": int(counts.get("-", 0)),
            "n_not_significant": int(counts.get("0", 0)),
            "n_no_estimate": int(counts.get("?", 0)),
            "median": float(part["estimate"].median()),
        }
        per_layer[term] = part.set_index("layer")["sign"]
    patterns = (per_layer["lag1"] + per_layer["lag2"]).value_counts()
    sizes = rows.drop_duplicates("layer")
    entry.update(
        n_layers=int(len(per_layer["lag1"])),
        pattern=str(patterns.index[0]),
        n_layers_pattern=int(patterns.iloc[0]),
        median_texts=float(sizes["n_groups"].median()),
        median_rows=float(sizes["n_obs"].median()),
    )
    return entry


def _lag_counts(method: str, entry: Mapping[str, Any]) -> str:
    """One method's lag-1 and lag-2 sign counts and medians, as a clause."""
    one, two = entry["lag1"], entry["lag2"]
    return (
        f"with {method}, lag-1 is positive in {one['n_positive']} of "
        f"{_count(entry['n_layers'], 'layer')} and negative in {one['n_negative']} (median "
        f"{number(one['median'])}), lag-2 positive in {two['n_positive']} and negative in "
        f"{two['n_negative']} (median {number(two['median'])})"
    )


def _pooled_against_within(lags: pd.DataFrame) -> dict[str, Any] | None:
    """How the pooled lag-1 compares with the default within-text one, layer by layer."""
    default = COMPARED[0]
    if not {"ols", default} <= set(lags["method"]):
        return None
    rows = lags[lags["term"] == "lag1"].pivot(index="layer", columns="method", values="estimate")
    gap = (rows["ols"] - rows[default]).dropna()
    return {
        "against": default,
        "n_layers": int(len(gap)),
        "n_layers_pooled_larger": int((gap > 0).sum()),
        "median_difference": float(gap.median()),
    }


def _gmm_tests(compared: pd.DataFrame, *, alpha: float) -> dict[str, Any]:
    """Layers where gmm's Hansen J or AR(2) test rejects at ``alpha``."""
    out: dict[str, Any] = {}
    for name, column in (("hansen", "hansen_p"), ("ar2", "ar2_p")):
        if column in compared:
            tested = compared.dropna(subset=[column])
            out[f"n_layers_{name}_tested"] = int(len(tested))
            out[f"{name}_rejects"] = (
                tested.loc[tested[column] < alpha, "layer"].astype(int).tolist()
            )
    return out


def layer_ranges(layers: Sequence[int]) -> str:
    """Layers as runs joined by en dashes.

    Parameters
    ----------
    layers : sequence of int
        Layer numbers, in any order.

    Returns
    -------
    str
        Runs of consecutive layers as ``first–last``, the rest one by one.

    Examples
    --------
    >>> layer_ranges([0, 1, 2, 3, 5, 7, 8])
    '0–3, 5, 7–8'
    """
    runs: list[list[int]] = []
    for layer in sorted(int(x) for x in layers):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def _layers(layers: Sequence[int]) -> str:
    return f"{'layer' if len(layers) == 1 else 'layers'} {layer_ranges(layers)}"


#: What lag-1 means, in words a reader without econometrics follows.
LAG_MEANING = (
    "The lag-1 coefficient says how much of a token's log norm carries over to the next token "
    "of the same text: at 0.2, a token whose norm is 10% above its text's usual level is "
    "followed by one about 2% above it; lag-2 is the same two tokens on."
)


def _trust(
    compared: pd.DataFrame, numbers: dict[str, Any], *, alpha: float
) -> tuple[list[str], list[int]]:
    """What gmm's comparison and tests say about trusting the default estimate: sentences
    (each test explained where it is first named), and the layers where neither estimate
    should be read."""
    default, check = COMPARED
    n = len(compared)
    flagged = compared.loc[compared["flagged"], "layer"].astype(int).tolist()
    numbers["flagged_layers"] = flagged
    numbers["n_layers_compared"] = int(n)
    for term in ("lag1", "lag2"):
        apart = compared[f"gap_{term}"].abs() > GAP_LIMIT
        numbers[f"flagged_{term}"] = compared.loc[apart, "layer"].astype(int).tolist()
    tests = _gmm_tests(compared, alpha=alpha)
    numbers.update(tests)
    sentences = [
        f"{check} estimates the same persistence with fewer assumptions and wider intervals; "
        + (
            f"the two differ by more than {GAP_LIMIT:g} of {check}'s standard errors in "
            f"{len(flagged)} of {_count(n, 'layer')}."
            if flagged
            else f"the two agree within {GAP_LIMIT:g} of {check}'s standard errors in every "
            f"one of the {_count(n, 'layer')}."
        )
    ]
    explained = {
        "hansen": "Hansen's J test asks whether the earlier log norms it uses as instruments "
        "agree with one another",
        "ar2": "the AR(2) test asks whether the changes from token to token are correlated two "
        "tokens apart, which would make those instruments invalid",
    }
    parts = [
        f"{explained[name]}; it rejects (p < {alpha:g}) in {len(tests[f'{name}_rejects'])} of "
        f"{tests[f'n_layers_{name}_tested']} layers"
        for name in ("hansen", "ar2")
        if f"{name}_rejects" in tests
    ]
    if parts:
        sentences.append(f"Of {check}'s own checks, " + "; ".join(parts) + ".")
    doubtful = set(tests.get("hansen_rejects", [])) | set(tests.get("ar2_rejects", []))
    agree = [layer for layer in compared["layer"].astype(int) if layer not in flagged]
    passed = [layer for layer in flagged if layer not in doubtful]
    failed = [layer for layer in flagged if layer in doubtful]
    verdict = []
    if agree:
        verdict.append(f"read {default} in {_layers(agree)}, where the two agree")
    if passed:
        verdict.append(f"read {check}'s wider intervals in {_layers(passed)}")
    if failed:
        verdict.append(
            f"in {_layers(failed)} the two disagree and {check}'s checks fail as well, so "
            "neither estimate should be read as the text's dynamics there"
        )
    sentences.append("So " + "; ".join(verdict) + ".")
    return sentences, failed


def _slope_test(glance: pd.DataFrame | None, *, alpha: float) -> tuple[dict[str, Any], list[str]]:
    """Where ``initial_conditions``' likelihood-ratio test of a random lag-1 slope rejects at
    ``alpha``: its numbers (layers tested, layers rejecting) and the sentence saying so."""
    if glance is None or "lag1_slope_p" not in glance:
        return {}, []
    tested = glance[glance["method"] == COMPARED[0]].dropna(subset=["lag1_slope_p"])
    rejects = tested.loc[tested["lag1_slope_p"] < alpha, "layer"].astype(int).tolist()
    numbers = {"n_layers_slope_tested": int(len(tested)), "slope_rejects": rejects}
    if not rejects:
        return numbers, []
    sentence = (
        f"Texts differ in their lag-1 in {len(rejects)} of {_count(len(tested), 'layer')} "
        f"({_layers(rejects)}): there a likelihood-ratio test of a lag-1 that varies between "
        f"texts rejects one lag-1 for all (p < {alpha:g}), which both within-text estimates "
        "assume, so their lag-1 is a summary over texts that persist differently, not every "
        "text's, and can stand above the texts' mean."
    )
    return numbers, [sentence]


@takes_fits
@shared_docs
def lag_finding(
    lags: pd.DataFrame | Folder,
    frame: pd.DataFrame,
    *,
    glance: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> Finding:
    """The lag effects in one paragraph of plain words: what lag-1 means, which estimate to
    read, what the checks say about trusting it, and the fits' warnings.

    ``numbers`` holds one entry per method (sign counts per term, medians, median texts and
    rows per layer), ``pooled_vs_within`` (ols' lag-1 against ``initial_conditions``'),
    ``flagged_layers`` (where ``initial_conditions`` and ``gmm`` differ by more than
    ``GAP_LIMIT`` of gmm's standard errors in lag-1 or lag-2), ``hansen_rejects`` and
    ``ar2_rejects`` (layers where gmm's tests reject at ``alpha``), ``unread_layers``
    (flagged layers where gmm's tests reject too), and ``slope_rejects`` (layers where
    ``initial_conditions``' test of a random lag-1 slope rejects at ``alpha``, with a sentence
    saying what that means).

    Parameters
    ----------
    lags : pandas.DataFrame
        A ``models.lag_effects`` table (any mix of methods).
    frame : pandas.DataFrame or Folder
        The tidy frame (or shard folder's view) the lags were fitted on.
    glance : pandas.DataFrame, optional
        Its glance rows (warnings, and gmm's tests).
    alpha : float
        The significance level, on Holm-adjusted p-values.

    {returns_finding}; its warnings are sentences of the paragraph, so the list is empty.

    Examples
    --------
    >>> lags = models.fit_all(frame, trend_methods=[], lag_methods=["initial_conditions", "gmm"])
    >>> print(lag_finding(lags["lag_effects"], frame).text)
    The lag-1 coefficient says how much of a token's log norm carries over to the next token of
    the same text: ... Read initial_conditions: it compares tokens within each text. ...
    """
    numbers: dict[str, Any] = {
        "alpha": alpha,
        "median_length": float(sequence_lengths(frame)["length"].median()),
    }
    methods = ordered_methods(lags["method"])
    for method in methods:
        numbers[method] = _lag_signs(lags, method, alpha=alpha)
    default, check = COMPARED
    within = [m for m in COMPARED if m in methods]
    read = within[0] if within else methods[0]
    sentences = [LAG_MEANING]
    pooled = _pooled_against_within(lags)
    numbers["pooled_vs_within"] = pooled
    if within:
        sentences.append(
            f"Read {read}: it compares tokens within each text."
            + (
                f" The pooled ols fit lets lasting differences between texts pass for "
                f"persistence: its lag-1 exceeds that of {pooled['against']} in "
                f"{pooled['n_layers_pooled_larger']} of {_count(pooled['n_layers'], 'layer')} "
                f"(median difference {_signed(pooled['median_difference'])})."
                if pooled is not None
                else ""
            )
        )
    else:
        sentences.append(
            "No within-text estimator was fitted: the pooled coefficients describe how tokens' "
            "magnitudes co-vary across all texts, and are biased as measures of persistence "
            "within a text wherever texts differ in their level."
        )
    sentences.append(
        f"After Holm's correction across layers (p < {alpha:g}), {_lag_counts(read, numbers[read])}"
        + (" (the other methods' counts are in the tables below)." if len(methods) > 1 else ".")
    )
    compared = lag_comparison(lags, glance)
    unread: list[int] = []
    if "flagged" in compared:
        trust, unread = _trust(compared, numbers, alpha=alpha)
        sentences += trust
    numbers["unread_layers"] = unread
    slope_numbers, slope_sentences = _slope_test(glance, alpha=alpha)
    numbers.update(slope_numbers)
    sentences += slope_sentences
    if {default, check} <= set(methods):
        dropped = numbers[default]["median_texts"] - numbers[check]["median_texts"]
        numbers["texts_left_out_of_gmm"] = dropped
    sentences += _fit_warnings(lags, glance, fit="lag_effects")
    headline = _lag_headline(lags, numbers, read=read, alpha=alpha)
    return Finding(numbers, sentences, headline=headline)


def _lag_headline(
    lags: pd.DataFrame, numbers: Mapping[str, Any], *, read: str, alpha: float
) -> str:
    """The lags in one sentence: the estimate to read, its median layer, and how far the
    checks let it be trusted."""
    entry = numbers[read]
    role = "Within texts" if LAG_ROLES.get(read) == "within texts" else "Pooled over texts"
    text = (
        f"{role} ({read}), a token's log norm carries over to the next token: lag-1 is "
        f"positive in {entry['lag1']['n_positive']} of {_count(entry['n_layers'], 'layer')} "
        f"(Holm-adjusted p < {alpha:g})"
    )
    row = median_layer(lags, method=read, term="lag1")
    if row is not None:
        level = f"{percent(row['conf_level'])} CI"
        text += (
            f", {interval(row['estimate'], row['conf_low'], row['conf_high'], label=level)} "
            f"in the median layer, layer {int(row['layer'])}"
        )
    flagged, unread = numbers.get("flagged_layers", []), numbers.get("unread_layers", [])
    if flagged:
        check = COMPARED[1]
        text += (
            f"; but {check}, which assumes less, disagrees in {len(flagged)} of "
            f"{numbers['n_layers_compared']} layers, and in {len(unread)} of those its own "
            "checks fail too, so neither estimate should be read there"
        )
    return text + "."


@takes_fits
def findings(
    frame: pd.DataFrame | Folder,
    *,
    trend: pd.DataFrame,
    lags: pd.DataFrame,
    glance: pd.DataFrame | None = None,
    alpha: float = ALPHA,
    max_position: int = MAX_POSITION,
    conf_level: float = CONF_LEVEL,
) -> Mapping[str, Finding]:
    """Every section's findings, keyed data, layers, positions, trend and lags.

    Parameters
    ----------
    {frame}
    trend, lags : pandas.DataFrame
        The ``position_trend`` and ``lag_effects`` tables fitted on it.
    glance : pandas.DataFrame, optional
        Their glance rows.
    alpha : float
        The significance level, on Holm-adjusted p-values.
    max_position : int
        The last position shown.
    conf_level : float
        The level of the means' intervals computed from the frame.

    Returns
    -------
    mapping
        Section key -> ``Finding``.

    Examples
    --------
    >>> trend, lags = tables["position_trend"], tables["lag_effects"]
    >>> list(findings(frame, trend=trend, lags=lags))
    ['data', 'layers', 'positions', 'trend', 'lags']
    """
    return {
        "data": data_finding(frame),
        "layers": layer_finding(frame, conf_level=conf_level),
        "positions": position_finding(frame, max_position=max_position),
        "trend": trend_finding(trend, glance=glance, alpha=alpha),
        "lags": lag_finding(lags, frame, glance=glance, alpha=alpha),
    }


def _model_parts(data: pd.DataFrame | Folder) -> list[tuple[object, pd.DataFrame | Folder]]:
    """``data``'s rows per language model, or all of them under None."""
    if "model" not in data.columns:
        return [(None, data)]
    return [(name, where_in(data, "model", [name])) for name in levels(data, "model")]


def _named(model: object, sentence: str) -> str:
    """``sentence``, opened with the model's name where there is one."""
    return sentence if model is None else f"{model}: {sentence[0].lower()}{sentence[1:]}"


@takes_fits
@shared_docs
def head_finding(
    frame: pd.DataFrame | Folder,
    trend: pd.DataFrame,
    *,
    alpha: float = ALPHA,
    term: str = "position",
) -> Finding:
    """Per model, the heads with the largest and smallest mean log norm, and in how many
    layer x head cells ``term``'s estimate is significant.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The rows of heads 0 and up (``heads=True``), of one site.
    trend : pandas.DataFrame
        A ``position_trend`` table of one method, of the same rows.
    alpha : float
        The significance level, on Holm-adjusted p-values (Holm across every group fitted).
    term : str
        The term counted.

    {returns_finding}; ``numbers`` is keyed by model (None for a frame of one).

    Examples
    --------
    >>> trend = models.fit_all(heads, trend_methods=["ols"], lag_methods=[])["position_trend"]
    >>> print(head_finding(heads, trend).text)
    Head ... of layer ... has the largest mean log norm (...) and head ... of layer ... the
    smallest (...); the ols estimate on position is significantly negative in ... and positive
    in ... of 20 layer-head cells. Significance: p < 0.05 after Holm's correction across every
    group fitted.
    """
    numbers: dict[str, Any] = {}
    sentences = []
    method = trend["method"].iloc[0]
    for model, part in _model_parts(frame):
        means = layer_means(part).set_index(["layer", "head"])["mean"]
        rows = trend[trend["term"] == term]
        rows = rows if model is None else rows[rows["model"] == model]
        significant = rows["p_adjusted"] < alpha
        entry = {
            "largest": tuple(int(x) for x in means.idxmax()),
            "largest_mean": float(means.max()),
            "smallest": tuple(int(x) for x in means.idxmin()),
            "smallest_mean": float(means.min()),
            "n_cells": int(len(rows)),
            "n_negative": int((significant & (rows["estimate"] < 0)).sum()),
            "n_positive": int((significant & (rows["estimate"] > 0)).sum()),
        }
        numbers[model] = entry
        (top_layer, top_head), (low_layer, low_head) = entry["largest"], entry["smallest"]
        sentences.append(
            _named(
                model,
                f"Head {top_head} of layer {top_layer} has the largest mean log norm "
                f"({number(entry['largest_mean'])}) and head {low_head} of layer {low_layer} the "
                f"smallest ({number(entry['smallest_mean'])}); the {method} estimate on {term} is "
                f"significantly negative in {entry['n_negative']} and positive in "
                f"{entry['n_positive']} of {entry['n_cells']} layer-head cells.",
            )
        )
    sentences.append(
        f"Significance: p < {alpha:g} after Holm's correction across every group fitted."
    )
    return Finding(numbers, sentences)


@shared_docs
def site_finding(
    frame: pd.DataFrame | Folder, *, reference: str = "resid", conf_level: float = CONF_LEVEL
) -> Finding:
    """Per model and site, how large the site's norm is relative to ``reference``'s: the
    geometric mean ratio over tokens, its median and range over layers, and the layers where
    the interval lies below or above 1.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        A frame with a ``site`` column holding ``reference`` and another site, one head.
    reference : str
        The site compared with.
    conf_level : float
        The level of the ratios' intervals (cluster-robust by text).

    {returns_finding}; ``numbers`` is keyed by (model, site).

    Examples
    --------
    >>> print(site_finding(sites).text)
    Token by token, the attn norm is a median ... times the resid norm over layers (...); the
    mlp norm is a median ... times the resid norm over layers (...).
    """
    ratios = site_ratios(frame, reference=reference, conf_level=conf_level)
    numbers: dict[Any, Any] = {}
    sentences = []
    for model, part in _model_parts(ratios):
        described = []
        for site, rows in part.groupby("site", sort=False, observed=True):
            rows = rows.set_index("layer")
            ratio = np.exp(rows["mean"])
            entry = {
                "median_ratio": float(ratio.median()),
                "min_ratio": float(ratio.min()),
                "layer_min": int(ratio.idxmin()),
                "max_ratio": float(ratio.max()),
                "layer_max": int(ratio.idxmax()),
                "n_layers": int(len(rows)),
                "n_below": int((rows["conf_high"] < 0).sum()),
                "n_above": int((rows["conf_low"] > 0).sum()),
            }
            numbers[(model, site)] = entry
            described.append(
                f"the {site} norm is a median {number(entry['median_ratio'])} times the "
                f"{reference} norm over layers ({number(entry['min_ratio'])} at layer "
                f"{entry['layer_min']} to "
                f"{number(entry['max_ratio'])} at layer {entry['layer_max']}; "
                f"smaller in {entry['n_below']} and larger in {entry['n_above']} of "
                f"{entry['n_layers']} layers by its {percent(conf_level)} CI)"
            )
        sentences.append(_named(model, "Token by token, " + "; ".join(described) + "."))
    return Finding(numbers, sentences)


@takes_fits
@shared_docs
def model_finding(trend: pd.DataFrame, lags: pd.DataFrame, *, alpha: float = ALPHA) -> Finding:
    """Per model, how many layers' position slopes are significantly negative or positive,
    and the median lag-1 and lag-2 effects over layers.

    Parameters
    ----------
    trend, lags : pandas.DataFrame
        ``position_trend`` and ``lag_effects`` tables of one method each, with a ``model``
        column.
    alpha : float
        The significance level, on Holm-adjusted p-values.

    {returns_finding}; ``numbers`` is keyed by model.

    Examples
    --------
    >>> tables = models.fit_all(both, trend_methods=["ols"], lag_methods=["gmm"], n_jobs=1)
    >>> print(model_finding(tables["position_trend"], tables["lag_effects"]).text)
    gpt2-tiny: the ols slope on position is significantly negative in ... of 12 layers; the gmm
    lag-1 effect has a median of ... over layers, lag-2 .... llama-tiny: the ols slope on
    position is significantly negative in ... of 3 layers; ...
    """
    numbers: dict[Any, Any] = {}
    sentences = []
    slope_method, lag_method = trend["method"].iloc[0], lags["method"].iloc[0]
    for model, part in _model_parts(trend):
        signs = _significance(part, term="position", alpha=alpha)["sign"]
        own = lags[lags["model"] == model]
        entry = {
            "n_layers": int(len(signs)),
            "n_negative": int((signs == "-").sum()),
            "n_positive": int((signs == "+").sum()),
            "median_lag1": float(own.loc[own["term"] == "lag1", "estimate"].median()),
            "median_lag2": float(own.loc[own["term"] == "lag2", "estimate"].median()),
        }
        numbers[model] = entry
        sentences.append(
            f"{model}: the {slope_method} slope on position is significantly negative in "
            f"{entry['n_negative']} and positive in {entry['n_positive']} of "
            f"{_count(entry['n_layers'], 'layer')}; the {lag_method} lag-1 effect has a median "
            f"of {number(entry['median_lag1'])} over layers, lag-2 {number(entry['median_lag2'])}."
        )
    return Finding(numbers, sentences)
