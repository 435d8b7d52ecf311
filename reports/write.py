"""The report writer: frame (+ tables) -> ``index.html``, ``report.md``, figures and CSV tables.

Holds ``write_report``, the public entry point, and its steps, one job each:
- ``report_source``: what a report reads: a frame, a shard folder (a ``folder.Folder``) or a
  saved frame's file;
- ``check_inputs``: refuse unknown formats and frames that are not attnmag's;
- ``fit_tables``: the ``position_trend``, ``lag_effects`` and ``glance`` tables a report
  shows, given or fitted;
- ``main_series``, ``series_parts`` (``Series``): the whole attention update of each model,
  which the five plain sections show;
- ``grouped_specs``: the sections a grouped frame adds (models side by side on a relative
  depth axis, sites side by side, heads as layer x head heatmaps); ``tracks`` adds "What
  tracks the magnitude" after the others where the frame has token or sink columns;
- ``figure_specs``: the five figures of a series, with titles and captions, not yet drawn;
- ``drawn_sections``: every section's finding and figure (PNG bytes with its title and
  caption, ``Rendered``);
- ``write_tables``: the tables as CSV;
- ``report_context``: what the templates draw;
- ``write_documents``: ``report.md`` with its figure files, and the self-contained
  ``index.html``;

and ``FORMATS`` and ``TABLES``, the formats and tables there are, and ``NO_GLANCE``, what
the report says where the fits' details are missing. The findings come from
``findings``. A frame without ``model``, ``site`` or ``head`` columns gives the plain report
of five sections; a grouped frame's report opens with the sections comparing its groups, then
gives the five sections for each model's whole attention update. A shard folder gives the
report its frame would give, from DuckDB's aggregates over its shards (see ``folder``).

Usage::

    paths = write_report(frame, "out/")            # fits aggregate/ols/mixed trends and lags
    paths = write_report("norms/", "out/")         # a shard folder, without building its frame
    paths = write_report(frame, "out/", tables={"position_trend": t, "lag_effects": l})
    paths["index.html"], paths["report.md"], paths["position_trend.csv"]
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from attnmag import __version__, models
from attnmag.errors import AttnmagError
from attnmag.extract.frame import COLUMNS
from attnmag.extract.shards import read_frame
from attnmag.models import CONF_LEVEL, MAX_POSITION
from attnmag.models.checks import check_position
from attnmag.reports import figures
from attnmag.reports.findings import (
    GMM_MIN_TOKENS,
    LAG_ROLES,
    METHOD_WORDS,
    Finding,
    findings,
    head_finding,
    model_finding,
    site_finding,
)
from attnmag.reports.folder import (
    SAMPLE_TEXTS,
    Folder,
    drop_columns,
    levels,
    open_folder,
    sample_note,
    where_in,
    with_attrs,
)
from attnmag.reports.front import key_results, report_title
from attnmag.reports.summaries import (
    ALPHA,
    COMPARED,
    GAP_LIMIT,
    SERIES_COLUMNS,
    interval_level,
    lag_comparison,
    ordered_methods,
    percent,
    shared_means,
)
from attnmag.reports.tables import (
    coefficient_display,
    glance_display,
    lag_check_display,
    markdown_table,
    provenance_rows,
    stars_rule,
)
from attnmag.reports.tracks import tracks_spec

__all__ = [
    "FORMATS",
    "NO_GLANCE",
    "TABLES",
    "Rendered",
    "Series",
    "check_inputs",
    "drawn_sections",
    "figure_specs",
    "fit_tables",
    "grouped_specs",
    "main_series",
    "report_context",
    "report_source",
    "series_parts",
    "write_documents",
    "write_report",
    "write_tables",
]

FORMATS = ("html", "md")
#: The tables a report shows and writes as CSV.
TABLES = ("position_trend", "lag_effects", "glance")
TEMPLATES = Path(__file__).parent / "templates"
#: Resolution of the report's PNGs.
DPI = 110
#: What the report says in place of the fits' summary where no glance rows came with the
#: tables (``pd.concat`` of tables drops the rows a ``models`` table carries).
NO_GLANCE = (
    "The tables came without their fit details (glance rows: sizes, fit statistics, "
    "convergence, warnings), so none are shown and no glance.csv is written. Pass what "
    "the fits returned (a models.Fits, or the tables as models returned them), or a glance "
    "table under the key glance."
)


@dataclass(frozen=True)
class Rendered:
    """One figure: its key, file name, title, caption and PNG bytes.

    Examples
    --------
    >>> figure = Rendered("layers", "layers.png", "Figure 2. Layers", "Mean per layer.", b"PNG")
    >>> figure.data_uri
    'data:image/png;base64,UE5H'
    """

    key: str
    filename: str
    title: str
    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI, for inlining in HTML."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def fit_tables(
    frame: pd.DataFrame | Folder,
    *,
    tables: models.Fits | Mapping[str, pd.DataFrame | models.Fits] | None = None,
    trend_methods: Sequence[str] | None = None,
    lag_methods: Sequence[str] | None = None,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, pd.DataFrame | None]:
    """The ``position_trend``, ``lag_effects`` and ``glance`` tables: given ones, else fitted.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame of ``extract``, or a shard folder's view (``reports.folder``), whose
        fits ``models.fit_all`` streams from the folder.
    tables : models.Fits or mapping, optional
        What the fits already gave: a ``Fits`` (its ``position_trend`` and ``lag_effects``
        rows), or by key ``position_trend``, ``lag_effects`` or ``glance`` ``Fits`` or tidy
        tables (``models.fit_all``, ``models.read_fits``, CSV files read back); only the
        missing ones are fitted.
    trend_methods, lag_methods : sequence of str, optional
        Methods to fit; None means every method of ``models.METHODS``.
    max_position : int
        Last position of the trend fits.
    first_position : int
        The first position every fit uses (1: the attention sink, position 0, is left out).
    conf_level : float
        Level of the fitted tables' intervals (carried in their ``conf_level`` column).
    n_jobs : int, optional
        Threads for the fits, as ``models.fit_all`` takes it.
    progress : bool, optional
        Progress bars of the fits that take more than a second (None: where someone
        watches).

    Returns
    -------
    dict
        ``position_trend`` and ``lag_effects`` (tidy tables) and ``glance``: the given
        one, else the glance rows of every fit that has them (a ``Fits``' own, or those a
        ``models`` table carries), else None.

    Examples
    --------
    >>> fitted = fit_tables(frame, conf_level=0.9, trend_methods=["ols"], lag_methods=["ols"])
    >>> sorted(fitted), fitted["position_trend"]["conf_level"].unique().tolist()
    (['glance', 'lag_effects', 'position_trend'], [0.9])
    >>> trend = models.fit(frame, "log_norm ~ position")
    >>> fitted = fit_tables(frame, tables={"position_trend": trend}, lag_methods=["ols"])
    >>> fitted["position_trend"]["fit"].unique().tolist()
    ['log_norm ~ position']
    """
    given = _by_name(tables) if isinstance(tables, models.Fits) else dict(tables or {})
    missing = [name for name in ("position_trend", "lag_effects") if name not in given]
    asked = {
        "trend_methods": trend_methods if "position_trend" in missing else (),
        "lag_methods": lag_methods if "lag_effects" in missing else (),
        "max_position": max_position,
        "first_position": first_position,
        "conf_level": conf_level,
    }
    source = frame.path if isinstance(frame, Folder) else frame  # a folder's fits stream it
    fitted = models.fit_all(source, **asked, n_jobs=n_jobs, progress=progress)
    out: dict[str, pd.DataFrame | None] = {}
    glances = []
    for name in ("position_trend", "lag_effects"):
        part = given[name] if name in given else fitted[name]
        out[name] = _tidy(part)
        glances += [g for g in [_glance(part)] if g is not None]
    glance = given.get("glance")
    out["glance"] = _tidy(glance) if glance is not None else _joined(glances)
    return out


def _by_name(fits: models.Fits) -> dict[str, pd.DataFrame]:
    """A ``Fits``' tidy rows of each named fit it holds (the selections keep its glance
    rows in ``attrs``)."""
    tidy = fits.tidy
    named = {name: tidy[tidy["fit"] == name] for name in ("position_trend", "lag_effects")}
    return {name: table for name, table in named.items() if len(table)}


def _tidy(fitted: pd.DataFrame | models.Fits) -> pd.DataFrame:
    """The tidy table of what a fit gave (a table, or a ``Fits``), without the fit details
    it carries in ``attrs`` (``_glance`` reads them): pandas deep-copies a frame's attrs
    into the result of every operation on it, and the report makes hundreds."""
    table = (fitted.tidy if isinstance(fitted, models.Fits) else fitted).copy(deep=False)
    table.attrs = {}
    return table


def _glance(fitted: pd.DataFrame | models.Fits) -> pd.DataFrame | None:
    """The glance rows of what a fit gave, where it has them."""
    if isinstance(fitted, models.Fits):
        return fitted.glance
    return models.glance(fitted) if fitted.attrs.get("glance") else None


def _joined(glances: Sequence[pd.DataFrame]) -> pd.DataFrame | None:
    """Glance tables as one, or None where there are no rows."""
    rows = [g for g in glances if len(g)]
    return pd.concat(rows, ignore_index=True) if rows else None


def _used(first_position: int) -> str:
    """The positions a caption says were used, from ``first_position``."""
    return f"positions {first_position} and later" if first_position else "every position"


def _lag_caption(lags: pd.DataFrame, first_position: int) -> str:
    """The lag figure's caption: its level, and what each method present estimates."""
    methods = ordered_methods(lags["method"])
    within = [m for m in methods if LAG_ROLES.get(m) == "within texts"]
    parts = [
        f"Coefficients on the log norm one (left) and two (right) positions earlier, per "
        f"layer, with {percent(interval_level(lags, name='lag_effects'))} CIs, one colour per "
        f"method; fitted on {_used(first_position)}."
    ]
    if "ols" in methods:
        parts.append(
            "ols is the pooled regression log_norm ~ lag1 + lag2: it describes how tokens' "
            "magnitudes co-vary across all texts, not persistence within a text."
        )
    if within:
        parts.append(
            f"{' and '.join(within)} estimate persistence within texts (see the methods "
            "below the figure)."
        )
    if set(COMPARED) <= set(methods):
        default, check = COMPARED
        compared = lag_comparison(lags)
        for term, side in (("lag1", "left"), ("lag2", "right")):
            kind, shaded = figures.shaded_layers(compared, term)
            if kind is None:
                apart = int((compared[f"gap_{term}"].abs() > GAP_LIMIT).sum())
                parts.append(
                    f"Not shaded ({side}): {default} and {check} differ by more than "
                    f"{GAP_LIMIT:g} of {check}'s standard errors in {apart} of "
                    f"{len(compared)} layers, half of them."
                )
                continue
            relation = (
                f"differ by more than {GAP_LIMIT:g}"
                if kind == "apart"
                else f"agree within {GAP_LIMIT:g}"
            )
            parts.append(
                f"Shaded ({side}): the {len(shaded)} of {len(compared)} layers where {default} "
                f"and {check} {relation} of {check}'s standard errors"
                + (" (fewer than where they differ)." if kind == "agree" else ".")
            )
    parts.append("Open markers: fits that did not converge.")
    return " ".join(parts)


def figure_specs(
    frame: pd.DataFrame | Folder,
    *,
    trend: pd.DataFrame,
    lags: pd.DataFrame,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> list[tuple[str, str, str, Callable[[], Figure]]]:
    """The report's five figures of one series, not yet drawn.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame, or a shard folder's view (``folder.Folder``).
    trend, lags : pandas.DataFrame
        The ``position_trend`` and ``lag_effects`` tables.
    max_position : int
        The last position drawn.
    first_position : int
        The first position of the violins, the means and the fits drawn.
    conf_level : float
        The level of the means' intervals computed here from ``frame``; the coefficients'
        intervals are those of ``trend`` and ``lags``, and the captions say each one's level.

    Returns
    -------
    list of tuple
        ``(key, title, caption, draw)`` per figure; ``draw()`` returns the figure.

    Examples
    --------
    >>> trend, lags = tables["position_trend"], tables["lag_effects"]
    >>> [key for key, *_ in figure_specs(frame, trend=trend, lags=lags)]
    ['data', 'layers', 'positions', 'trend', 'lags']
    """
    level = percent(conf_level)
    trend_level = percent(interval_level(trend, name="position_trend"))
    present = ordered_methods(trend["method"])
    inference = " and ".join([m for m in figures.INFERENCE_METHODS if m in present] or present)
    note = sample_note(frame)
    specs = [
        (
            "data",
            "Real tokens per text",
            "Left: which positions hold a real token, one row per text, longest first"
            + (f" ({note})" if note else "")
            + ". Right: how many real tokens each text has"
            + (" (every text)." if note else "."),
            lambda: figures.plot_valid_tokens(frame),
        ),
        (
            "layers",
            "Log norms by layer",
            "Top: distribution of the log norm per layer (violins with quartiles, drawn from a "
            f"seeded random sample of tokens; {_used(first_position)})"
            + (f", read from {note}" if note else "")
            + ". Bottom: mean log norm per layer over all those tokens"
            + (" of every text" if note else "")
            + f" with its {level} CI; the tokens of one text are not independent, so the "
            "intervals are cluster-robust by text.",
            lambda: figures.plot_layer_norms(
                frame, first_position=first_position, conf_level=conf_level
            ),
        ),
        (
            "positions",
            "Mean norm by layer and position",
            f"Right: the mean norm at each layer and position 0 to {max_position}, as a percent "
            f"above (red) or below (blue) the layer's own mean over positions 1 to {max_position}, "
            "so that the change along positions shows in every layer whatever its level; the "
            "colour scale stops at the 98th percentile of the differences at positions 1 and "
            "later, so the first token (the attention sink) may run off it. Left: that mean, "
            f"the layer's level, with its {level} CI (cluster-robust by text; often narrower "
            "than the dot), on a log scale.",
            lambda: figures.plot_position_norms(
                frame, max_position=max_position, conf_level=conf_level
            ),
        ),
        (
            "trend",
            "Trend over positions",
            f"The fits of log_norm ~ position over positions {first_position} to {max_position} "
            "by the "
            f"methods for inference ({inference}), one colour per method. Top: the slope per "
            "layer (times 100, about the percent change of the norm per position); bottom: "
            f"the intercept per layer; each with its {trend_level} CI. "
            + (
                "The aggregate fit (of the means of positions) is in the tables, not drawn: "
                "its intervals ignore the texts behind each mean. "
                if "aggregate" in set(trend["method"]) and inference != "aggregate"
                else ""
            )
            + "Open markers: fits that did not converge.",
            lambda: figures.plot_trend_coefficients(trend),
        ),
        (
            "lags",
            "Lag effects",
            _lag_caption(lags, first_position),
            lambda: figures.plot_lag_effects(lags),
        ),
    ]
    return specs


def _rendered(
    specs: Sequence[tuple], pngs: Sequence[bytes], *, start: int, label: str | None
) -> dict[str, Rendered]:
    """Figures of ``(key, title, caption, draw)`` specs, with their ``pngs``, numbered from
    ``start``; a ``label`` goes into each title, and into each key and file name as a
    suffix."""
    suffix = "" if label is None else "-" + _slug(label)
    out = {}
    numbered = enumerate(zip(specs, pngs, strict=True), start=start)
    for number, ((key, title, caption, _), png) in numbered:
        named = title if label is None else f"{title}: {label}"
        filename = f"figure{number}-{key}{suffix}.png"
        out[key] = Rendered(key + suffix, filename, f"Figure {number}. {named}", caption, png)
    return out


def _png(draw: Callable[[], Figure]) -> bytes:
    """The figure ``draw()`` returns, as the report's PNG."""
    return figures.figure_bytes(draw(), dpi=DPI)


def _slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits, dots and dashes."""
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in str(text)).strip("-") or "model"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["markdown_table"] = markdown_table
    return env


SECTIONS = {
    "data": "Texts and tokens",
    "layers": "Norms by layer",
    "positions": "Norms by position",
    "trend": "Trend over positions",
    "lags": "Lag effects",
}


def _checks_note(compared: pd.DataFrame, same: Mapping[str, str]) -> str:
    """What the columns of the lag checks table mean (those it has), and what every layer
    shares, said once."""
    default, check = COMPARED
    notes = []
    if "flagged" in compared:
        notes.append(
            f"Gap: {default} minus {check}, in {check}'s standard errors (! beyond "
            f"{GAP_LIMIT:g}: the two disagree in that layer)."
        )
    if "hansen_j" in compared:
        notes.append(
            f"Hansen J asks whether {check}'s instruments (earlier log norms) are consistent "
            "with one another; a small p says they are not."
        )
    if "ar2_statistic" in compared:
        notes.append(
            "AR(2) asks whether the changes from token to token are correlated two tokens "
            f"apart; a small p says the earlier log norms {check} uses as instruments are not "
            "valid."
        )
    if same:
        listed = "; ".join(f"{label}: {value}" for label, value in same.items())
        notes.append(f"The same in every layer: {listed}.")
    if check in compared.columns.str.removeprefix("texts_"):
        notes.append(f"Texts under {GMM_MIN_TOKENS} tokens drop out of {check}.")
    return " ".join(notes)


def _sections(
    found: Mapping[str, Finding],
    rendered: Mapping[str, Rendered],
    tables: Mapping[str, pd.DataFrame],
    *,
    alpha: float,
    holm: str = "across layers",
    label: str | None = None,
) -> list[dict]:
    """What the templates draw per section: title, finding, figure, tables and their CSV
    (``label``: the series shown, a model's name, added to the titles; ``holm``: what Holm's
    correction ran across, in words)."""
    coefficient = {"trend": "position_trend", "lags": "lag_effects"}
    out = []
    for key, title in SECTIONS.items():
        name = coefficient.get(key)
        section = {
            "id": rendered[key].key,
            "label": label,
            "title": title if label is None else f"{title}: {label}",
            "finding": found[key],
            "figure": rendered[key],
            "tables": None,
            "checks": None,
        }
        if name:
            table = tables[name]
            words = METHOD_WORDS[name]
            section.update(
                tables=coefficient_display(table),
                rule=stars_rule(interval_level(table, name=name), holm=holm, alpha=alpha),
                csv=f"{name}.csv",
                methods={m: words.get(m, m) for m in ordered_methods(table["method"])},
            )
        if key == "lags":
            compared = lag_comparison(tables[name], tables["glance"])
            checks, same = lag_check_display(compared)
            section.update(checks=checks, checks_note=_checks_note(compared, same))
        out.append(section)
    return out


def report_source(
    source: pd.DataFrame | Folder | str | Path, *, sample_texts: int = SAMPLE_TEXTS
) -> pd.DataFrame | Folder:
    """What a report reads: a frame as it is, a shard folder as a ``Folder``, a Parquet file
    as its frame.

    Parameters
    ----------
    source : pandas.DataFrame, Folder, str or pathlib.Path
        A frame, a folder written by ``extract.write_shards``, or a saved frame's file.
    sample_texts : int
        The sample of a folder opened here (see ``reports.folder.open_folder``).

    Returns
    -------
    pandas.DataFrame or Folder
        The frame, or the folder's view.

    Examples
    --------
    >>> report_source(shards).columns
    (...'sequence', 'layer', 'position'...)
    >>> report_source(frame) is frame
    True
    """
    if isinstance(source, pd.DataFrame | Folder):
        return source
    if not isinstance(source, str | Path):
        raise AttnmagError(
            f"a report reads a frame or a shard folder, not a {type(source).__name__}"
        )
    path = Path(source)
    if path.is_dir():
        return open_folder(path, sample_texts=sample_texts)
    return read_frame(path)


def check_inputs(frame: pd.DataFrame | Folder, formats: Sequence[str]) -> None:
    """Refuse an unknown report format, or a frame that is not an attnmag frame.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The frame to report on, or a shard folder's view.
    formats : sequence of str
        The formats asked for, some of ``FORMATS``.

    Raises
    ------
    AttnmagError
        One line naming what is wrong.

    Examples
    --------
    >>> check_inputs(frame, ("html",))
    >>> check_inputs(frame, ("pdf",))
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: ...pdf...
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise AttnmagError(
            f"unknown report formats {unknown or list(formats)}: expected some of {list(FORMATS)}"
        )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise AttnmagError(f"the frame lacks the columns {missing}: expected an attnmag frame")


@dataclass(frozen=True)
class Series:
    """One model's main series, as the plain sections show it: ``label`` (the model's name,
    None for a frame of one), its rows of the frame and of the tables (the grouping columns
    other than ``site`` dropped).

    Examples
    --------
    >>> fitted = fit_tables(frame, trend_methods=["ols"], lag_methods=["ols"])
    >>> [(part.label, len(part.frame) == len(frame)) for part in series_parts(frame, fitted)]
    [(None, True)]
    """

    label: str | None
    frame: pd.DataFrame | Folder
    tables: dict[str, pd.DataFrame | None]


def main_series(frame: pd.DataFrame | Folder) -> dict[str, object]:
    """The values of ``site`` and ``head`` that the plain sections show: the whole attention
    update (site ``attn``, else the frame's first site; head -1).

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame, or a shard folder's view (``folder.Folder``).

    Returns
    -------
    dict
        Column -> value, for the columns of the two the frame has.

    Examples
    --------
    >>> main_series(pd.DataFrame({"site": ["mlp", "attn"], "head": [-1, 0]}))
    {'site': 'attn', 'head': -1}
    """
    out: dict[str, object] = {}
    if "site" in frame.columns:
        sites = levels(frame, "site")
        out["site"] = "attn" if "attn" in sites else sites[0]
    if "head" in frame.columns:
        out["head"] = -1
    return out


def _select(
    data: pd.DataFrame | Folder | None, values: Mapping[str, object]
) -> pd.DataFrame | Folder | None:
    """The rows of ``data`` holding ``values`` (where it has those columns), those columns
    dropped; ``site`` is kept where it is not the attention update (it names what is drawn)."""
    if data is None:
        return None
    present = {c: v for c, v in values.items() if c in data.columns}
    for column, value in present.items():
        data = where_in(data, column, [value])
    return drop_columns(data, [c for c, v in present.items() if not (c == "site" and v != "attn")])


def series_parts(
    frame: pd.DataFrame | Folder, tables: Mapping[str, pd.DataFrame | None]
) -> list[Series]:
    """The main series of each model of ``frame`` (see ``main_series``), with their tables.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame, or a shard folder's view (``folder.Folder``).
    tables : mapping
        ``position_trend``, ``lag_effects`` and ``glance`` (None where there is none).

    Returns
    -------
    list of Series
        One per model (one, labelled None, for a frame without a ``model`` column or with
        one model); a plain frame gives itself and its tables.

    Examples
    --------
    >>> fitted = fit_tables(both, trend_methods=["ols"], lag_methods=["ols"])
    >>> [part.label for part in series_parts(both, fitted)]
    ['gpt2-tiny', 'llama-tiny']
    """
    main = main_series(frame)
    names = levels(frame, "model") if "model" in frame.columns else [None]
    parts = []
    for name in names:
        values = {**main, **({} if name is None else {"model": name})}
        label = None if len(names) == 1 else str(name)
        rows = with_attrs(_select(frame, values), _model_attrs(frame.attrs, name))
        selected = {key: _select(table, values) for key, table in tables.items()}
        parts.append(Series(label, rows, selected))
    return parts


def _model_attrs(attrs: Mapping[str, object], name: object) -> dict:
    """The provenance of model ``name`` of a combined frame (its own, over the shared)."""
    own = attrs.get("models", {}).get(name, {}) if name is not None else {}
    return {**{k: v for k, v in attrs.items() if k != "models"}, **own}


def _default(methods: pd.Series, preferred: str) -> str:
    """``preferred`` where the table has that method, else its first method."""
    present = ordered_methods(methods)
    return preferred if preferred in present else present[0]


def grouped_specs(
    frame: pd.DataFrame | Folder,
    tables: Mapping[str, pd.DataFrame | None],
    *,
    alpha: float = ALPHA,
    first_position: int = 1,
    conf_level: float = CONF_LEVEL,
) -> list[tuple[str, str, Finding, str, object]]:
    """The sections a grouped frame adds, where it allows them: several models side by side,
    the sites side by side, the heads.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame, or a shard folder's view (``folder.Folder``).
    tables : mapping
        ``position_trend`` and ``lag_effects`` fitted on it.
    alpha : float
        The level of the significance marks and counts.
    first_position : int
        The first position of the means and ratios.
    conf_level : float
        The level of the means' and ratios' intervals.

    Returns
    -------
    list of tuple
        ``(key, title, finding, caption, draw)`` per section; ``draw()`` returns the figure.

    Examples
    --------
    >>> fitted = fit_tables(both, trend_methods=["ols"], lag_methods=["gmm"])
    >>> [spec[0] for spec in grouped_specs(both, fitted)]
    ['models']
    """
    trend, lags = tables["position_trend"], tables["lag_effects"]
    level = percent(conf_level)
    several = "model" in frame.columns and len(levels(frame, "model")) > 1
    per_model = " One row per model." if several else ""
    specs = []
    if several:
        main = main_series(frame)
        model_rows = _select(frame, main)
        slope = _select(trend[trend["method"] == _default(trend["method"], "ols")], main)
        lag_method = _default(lags["method"], COMPARED[0])
        lag = _select(lags[lags["method"] == lag_method], main)
        specs.append(
            (
                "models",
                "Models side by side",
                model_finding(slope, lag, alpha=alpha),
                "Each model's layers on a relative depth axis (layer / deepest layer), one "
                f"colour per model. Top left: mean log norm per layer with its {level} CI "
                f"({_used(first_position)}, cluster-robust by text). Top right: the "
                f"{slope['method'].iloc[0]} slope on position per layer. Bottom: the "
                f"{lag_method} lag-1 and lag-2 effects per layer. Coefficients with "
                f"{percent(interval_level(slope, name='position_trend'))} CIs; open markers: "
                "fits that did not converge.",
                lambda: figures.plot_models(
                    model_rows, slope, lag, first_position=first_position, conf_level=conf_level
                ),
            )
        )
    sites = levels(frame, "site") if "site" in frame.columns else []
    if "resid" in sites and len(sites) > 1:
        site_rows = where_in(frame, "head", [-1]) if "head" in frame.columns else frame
        specs.append(
            (
                "sites",
                "Sites side by side",
                site_finding(site_rows, conf_level=conf_level),
                "Left: mean log norm per layer of each site (attn: the attention sub-layer's "
                "update; mlp: the MLP sub-layer's update; resid: the residual stream entering "
                f"the block) with its {level} CI. Right: each update's norm relative to the "
                "residual stream's at the same token, as the mean log difference with its "
                f"{level} CI (cluster-robust by text); 0 is as large as the stream, -2.3 a "
                f"tenth of it.{per_model}",
                lambda: figures.plot_sites(
                    site_rows, first_position=first_position, conf_level=conf_level
                ),
            )
        )
    if "head" in frame.columns and max(levels(frame, "head")) >= 0:
        heads = figures.heads_only(frame)
        method = _default(trend["method"], "ols")
        fitted = figures.heads_only(trend[trend["method"] == method])
        specs.append(
            (
                "heads",
                "Heads",
                head_finding(heads, fitted, alpha=alpha),
                "Left: mean log norm of each head's own contribution W_O^h z_h per layer and "
                f"head ({_used(first_position)}; the output projection's bias is in no head). "
                f"Right: the {method} slope on position per layer and head (blue: falling "
                f"with position, red: rising); a dot marks p < {alpha:g} after Holm's "
                f"correction across every group fitted.{per_model}",
                lambda: figures.plot_heads(
                    frame, fitted, alpha=alpha, first_position=first_position
                ),
            )
        )
    return specs


def drawn_sections(
    frame: pd.DataFrame | Folder,
    fitted: Mapping[str, pd.DataFrame | None],
    *,
    alpha: float,
    max_position: int,
    conf_level: float,
    first_position: int = 1,
) -> tuple[list[dict], dict[str, Rendered]]:
    """Every section of the report, its finding worked out and its figure drawn.

    The sections a grouped frame adds come first, then the five of each model's main
    series, then, where the frame has token or sink columns, what tracks the magnitude
    (``tracks.tracks_spec``).

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The tidy frame, or a shard folder's view.
    fitted : mapping
        ``position_trend``, ``lag_effects`` and ``glance``, as ``fit_tables`` gives them.
    alpha : float
        The level of the significance marks and counts.
    max_position : int
        The last position drawn.
    conf_level : float
        The level of the intervals computed from ``frame``.
    first_position : int
        The first position of the means and fits drawn.

    Returns
    -------
    tuple
        The sections, as the templates take them, and the ``Rendered`` figures by file
        name.

    Examples
    --------
    >>> sections, figures = drawn_sections(
    ...     frame, tables, alpha=0.05, max_position=64, conf_level=0.95
    ... )
    >>> [section["id"] for section in sections]
    ['data', 'layers', 'positions', 'trend', 'lags']
    >>> len(figures)
    5
    """
    grouped = grouped_specs(
        frame, fitted, alpha=alpha, first_position=first_position, conf_level=conf_level
    )
    tracks = tracks_spec(
        frame,
        main_series(frame),
        alpha=alpha,
        first_position=first_position,
        max_position=max_position,
        conf_level=conf_level,
    )
    parts = series_parts(frame, fitted)
    part_specs = [
        figure_specs(
            part.frame,
            trend=part.tables["position_trend"],
            lags=part.tables["lag_effects"],
            max_position=max_position,
            first_position=first_position,
            conf_level=conf_level,
        )
        for part in parts
    ]
    draws = [spec[-1] for spec in grouped] + [spec[-1] for specs in part_specs for spec in specs]
    pngs = iter([_png(draw) for draw in draws])
    found = [
        findings(
            part.frame,
            trend=part.tables["position_trend"],
            lags=part.tables["lag_effects"],
            glance=part.tables["glance"],
            alpha=alpha,
            max_position=max_position,
            conf_level=conf_level,
        )
        for part in parts
    ]
    specs = [(k, t, c, d) for k, t, _, c, d in grouped]
    drawn = _rendered(specs, [next(pngs) for _ in specs], start=1, label=None)
    sections, rendered = [], {}
    for key, title, finding, _, _ in grouped:
        figure = drawn[key]
        sections.append(
            {"id": key, "title": title, "finding": finding, "figure": figure, "tables": None}
            | {"checks": None}
        )
        rendered[figure.filename] = figure
    for part, specs, part_found in zip(parts, part_specs, found, strict=True):
        pictures = [next(pngs) for _ in specs]
        drawn = _rendered(specs, pictures, start=len(rendered) + 1, label=part.label)
        sections += _sections(
            part_found, drawn, part.tables, alpha=alpha, holm=_holm_scope(frame), label=part.label
        )
        rendered.update({figure.filename: figure for figure in drawn.values()})
    if tracks is not None:
        key, title, finding, caption, draw = tracks
        spec = [(key, title, caption, draw)]
        figure = _rendered(spec, [_png(draw)], start=len(rendered) + 1, label=None)[key]
        sections.append(
            {"id": key, "title": title, "finding": finding, "figure": figure, "tables": None}
            | {"checks": None}
        )
        rendered[figure.filename] = figure
    return sections, rendered


def write_tables(tables: Mapping[str, pd.DataFrame | None], out: Path) -> dict[str, Path]:
    """Write each table that is there as ``<name>.csv`` in ``out``.

    Parameters
    ----------
    tables : mapping
        Name -> table; None is skipped (a ``glance`` no fit provided).
    out : pathlib.Path
        An existing folder.

    Returns
    -------
    dict
        File name -> path written.

    Examples
    --------
    >>> Path("out").mkdir()
    >>> write_tables({"position_trend": tables["position_trend"], "glance": None}, Path("out"))
    {'position_trend.csv': PosixPath('out/position_trend.csv')}
    """
    written = {}
    for name, table in tables.items():
        if table is not None:
            path = out / f"{name}.csv"
            table.to_csv(path, index=False)
            written[path.name] = path
    return written


def write_documents(
    context: Mapping[str, object],
    rendered: Mapping[str, Rendered],
    out: Path,
    *,
    formats: Sequence[str],
) -> dict[str, Path]:
    """Write ``report.md`` with its figure files and/or the self-contained ``index.html``.

    Parameters
    ----------
    context : mapping
        What the templates draw (see ``report_context``).
    rendered : mapping
        The rendered figures (see ``drawn_sections``).
    out : pathlib.Path
        An existing folder.
    formats : sequence of str
        Some of ``FORMATS``.

    Returns
    -------
    dict
        Path relative to ``out`` -> path written.

    Examples
    --------
    >>> sections, rendered = drawn_sections(
    ...     frame, tables, alpha=0.05, max_position=30, conf_level=0.95
    ... )
    >>> context = report_context(frame, tables, sections, timings={})
    >>> Path("out").mkdir()
    >>> sorted(write_documents(context, rendered, Path("out"), formats=("md",)))
    ['figures/figure1-data.png', ..., 'figures/figure5-lags.png', 'report.md']
    """
    env = _environment()
    written: dict[str, Path] = {}
    if "md" in formats:
        (out / "figures").mkdir(exist_ok=True)
        for figure in rendered.values():
            path = out / "figures" / figure.filename
            path.write_bytes(figure.png)
            written[f"figures/{figure.filename}"] = path
        path = out / "report.md"
        path.write_text(env.get_template("report.md.j2").render(context), encoding="utf-8")
        written[path.name] = path
    if "html" in formats:
        path = out / "index.html"
        path.write_text(env.get_template("report.html.j2").render(context), encoding="utf-8")
        written[path.name] = path
    return written


def report_context(
    frame: pd.DataFrame | Folder,
    tables: Mapping[str, pd.DataFrame | None],
    sections: Sequence[Mapping[str, object]],
    *,
    timings: Mapping[str, float],
    alpha: float = ALPHA,
) -> dict[str, object]:
    """What the templates draw: title, key results, sections, fit summary, provenance and
    ``alpha``.

    Parameters
    ----------
    frame : pandas.DataFrame or Folder
        The frame (or shard folder) reported on (its ``attrs`` give the provenance; a
        combined frame's ``attrs["models"]`` each model's).
    tables : mapping
        ``position_trend``, ``lag_effects`` and ``glance`` (None where there is none).
    sections : sequence of mapping
        The sections, as ``_sections`` and ``write_report`` build them.
    timings : mapping
        Stage -> seconds, shown with the provenance.
    alpha : float
        The level significance marks are at.

    Returns
    -------
    dict
        The templates' context.

    Examples
    --------
    >>> sections, _ = drawn_sections(frame, tables, alpha=0.05, max_position=30, conf_level=0.95)
    >>> report_context(frame, tables, sections, timings={})["title"]
    'Attention update norms of unnamed on Rotten Tomatoes review snippets (16 texts)'
    """
    glance = tables["glance"]
    several = len({section.get("label") for section in sections} - {None}) > 1
    return {
        "title": report_title(frame.attrs),
        "key_results": key_results(sections, several=several),
        "version": __version__,
        "provenance": _provenance(frame.attrs, timings=timings),
        "scope": _scope(frame),
        "sections": list(sections),
        "glance": None if glance is None else glance_display(glance),
        "no_glance": NO_GLANCE,
        "alpha": alpha,
    }


def _provenance(attrs: Mapping[str, object], *, timings: Mapping[str, float]) -> list:
    """The provenance rows: the run's, then each combined model's, labelled with its name."""
    models_attrs = attrs.get("models") or {}
    shared = {k: v for k, v in attrs.items() if k != "models"}
    rows = provenance_rows(shared, timings=timings)
    for name, own in models_attrs.items():
        rows += [
            (f"{name}: {label}", value)
            for label, value in provenance_rows({k: v for k, v in own.items() if k not in shared})
        ]
    return rows


def _scope(frame: pd.DataFrame | Folder) -> str | None:
    """What a grouped frame's report shows where, or None for a plain frame."""
    groups = [c for c in SERIES_COLUMNS if c in frame.columns]
    if not groups:
        return None
    main = main_series(frame)
    shown = ", ".join(f"{c} {v!r}" if isinstance(v, str) else f"{c} {v}" for c, v in main.items())
    several = "model" in frame.columns and len(levels(frame, "model")) > 1
    return (
        f"The frame is grouped by {', '.join(groups)}. The sections comparing them come first; "
        "then the texts, layers, positions, trend and lags of "
        + ("each model's " if several else "the ")
        + (f"main series ({shown}, the whole sub-layer)" if shown else "frame")
        + ". The CSV tables hold every group's fits."
    )


def _holm_scope(frame: pd.DataFrame | Folder) -> str:
    """The groups Holm's correction ran across, in words."""
    groups = [c for c in SERIES_COLUMNS if c in frame.columns]
    if not groups:
        return "across layers"
    return f"across every group fitted ({', '.join(groups)}, layer)"


def write_report(
    frame: pd.DataFrame | Folder | str | Path,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = FORMATS,
    trend_methods: Sequence[str] | None = None,
    lag_methods: Sequence[str] | None = None,
    max_position: int = MAX_POSITION,
    first_position: int = 1,
    tables: models.Fits | Mapping[str, pd.DataFrame | models.Fits] | None = None,
    timings: Mapping[str, float] | None = None,
    n_jobs: int | None = None,
    alpha: float = ALPHA,
    conf_level: float = CONF_LEVEL,
    progress: bool | None = None,
    sample_texts: int = SAMPLE_TEXTS,
) -> dict[str, Path]:
    """Write the report on ``frame`` into ``out_dir``; return the paths written, by name.

    The steps, each a function of this module: ``check_inputs``, ``fit_tables`` (only the
    tables not given), ``drawn_sections`` (the findings and figures), ``write_tables``,
    ``report_context`` and ``write_documents``.

    A shard folder is reported on without reading its rows into memory: the fits stream
    per-text sums (``models.named``), every mean, interval, length and ratio is computed
    by DuckDB over the shards (``reports.folder``), and only the violins and the token grid
    read rows, those of a seeded sample of ``sample_texts`` texts (their captions say so
    where the folder holds more). The report is the one its frame would give.

    Parameters
    ----------
    frame : pandas.DataFrame, Folder, str or pathlib.Path
        The tidy frame of ``extract``; or a shard folder written by
        ``extract.write_shards`` (its path, or ``reports.folder.open_folder``'s view); a
        path to a Parquet file is read with ``extract.read_frame``.
    out_dir : str or pathlib.Path
        The folder written into (created where missing).
    formats : sequence of str
        ``html`` (one self-contained ``index.html``) and/or ``md`` (``report.md`` with
        ``figures/*.png``).
    trend_methods, lag_methods : sequence of str, optional
        The methods fitted where ``tables`` lacks a table; None means every method of
        ``models.METHODS``.
    max_position : int
        The last position of the trend fits and of the figures.
    first_position : int
        The first position of the fits done here and of the means and fits drawn (1: the
        attention sink, position 0, is left out; 0 keeps it).
    tables : models.Fits or mapping, optional
        What the fits already gave: a ``Fits``, or by key ``position_trend``,
        ``lag_effects`` and ``glance`` ``Fits`` or tidy tables (``models.fit_all``,
        ``models.read_fits``); see ``fit_tables``.
    timings : mapping, optional
        Stage -> seconds, shown with the provenance; the fitting and drawing done here are
        timed and added.
    n_jobs : int, optional
        Threads for the fits (``None`` or -1: one per core), as ``models.fit_all`` takes it.
    alpha : float
        The level of the significance marks and counts (on Holm-adjusted p-values).
    conf_level : float
        The level of the intervals of the tables fitted here and of the means the report
        computes from the frame; a given table's intervals keep the level in its
        ``conf_level`` column, and every caption says its own level.
    progress : bool, optional
        Progress bars of the fits done here, as for ``fit_tables`` (a frame's fits only).
    sample_texts : int
        For a shard folder given by its path: the texts whose rows the violins and the token
        grid draw.

    Returns
    -------
    dict
        Path relative to ``out_dir`` (``index.html``, ``report.md``,
        ``figures/figure1-data.png``, ``position_trend.csv``, ``lag_effects.csv``,
        ``glance.csv`` where there are fit details) -> path written.

    Examples
    --------
    >>> paths = write_report(frame, "out/", progress=False)
    >>> sorted(paths)
    ['figures/figure1-data.png', ..., 'glance.csv', 'index.html', 'lag_effects.csv',
     'position_trend.csv', 'report.md']
    >>> fitted = models.fit_all(frame, trend_methods=["ols"], lag_methods=["ols"])
    >>> paths = write_report(frame, "mine/", tables=fitted, progress=False)
    >>> paths = write_report(shards, "folder/", sample_texts=4, progress=False)
    >>> paths["index.html"]
    PosixPath('folder/index.html')
    """
    check_position("max_position", max_position)
    check_position("first_position", first_position, max_position - 1)
    frame = report_source(frame, sample_texts=sample_texts)
    check_inputs(frame, formats)
    seconds = dict(timings or {})
    start = time.perf_counter()
    given = _by_name(tables) if isinstance(tables, models.Fits) else tables
    fitted = fit_tables(
        frame,
        tables=given,
        trend_methods=trend_methods,
        lag_methods=lag_methods,
        max_position=max_position,
        first_position=first_position,
        conf_level=conf_level,
        n_jobs=n_jobs,
        progress=progress,
    )
    if given is None or {"position_trend", "lag_effects"} - set(given):
        seconds["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    # The figures' algebra (the violins' densities, small solves) is small: OpenBLAS's
    # threads on it wait on each other longer than it takes.
    with threadpool_limits(1, user_api="blas"), shared_means():
        sections, rendered = drawn_sections(
            frame,
            fitted,
            alpha=alpha,
            max_position=max_position,
            conf_level=conf_level,
            first_position=first_position,
        )
    seconds["figures"] = time.perf_counter() - start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = write_tables({name: fitted[name] for name in TABLES}, out)
    context = report_context(frame, fitted, sections, timings=seconds, alpha=alpha)
    written.update(write_documents(context, rendered, out, formats=formats))
    return written
