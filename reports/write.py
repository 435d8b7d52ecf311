"""The report writer: frame (+ tables) -> ``index.html``, ``report.md``, figures and CSV tables.

Holds:
- ``write_report``: the public entry point; fits what it needs, writes what was asked for;
- ``fit_tables``: the ``position_trend``, ``lag_effects`` and ``glance`` tables a report shows;
- ``render_figures``: the five figures as PNG bytes with titles and captions;
- ``Rendered``: one rendered figure.

Usage::

    paths = write_report(frame, "out/")            # fits aggregate/ols/mixed trends and lags
    paths = write_report(frame, "out/", tables={"position_trend": t, "lag_effects": l})
    paths["index.html"], paths["report.md"], paths["position_trend.csv"]
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from attnmag import __version__, models
from attnmag.errors import AttnmagError
from attnmag.extract.frame import COLUMNS
from attnmag.reports import figures
from attnmag.reports.findings import GMM_MIN_TOKENS, LAG_ROLES, METHOD_WORDS, Finding, findings
from attnmag.reports.summaries import (
    COMPARED,
    GAP_LIMIT,
    interval_level,
    lag_comparison,
    ordered_methods,
    percent,
)
from attnmag.reports.tables import (
    coefficient_display,
    glance_display,
    lag_check_display,
    markdown_table,
    provenance_rows,
)

FORMATS = ("html", "md")
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Rendered:
    """One figure: its key, file name, title, caption and PNG bytes."""

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
    frame: pd.DataFrame,
    *,
    tables: Mapping[str, pd.DataFrame] | None = None,
    trend_methods: Sequence[str] | None = None,
    lag_methods: Sequence[str] | None = None,
    max_position: int = 30,
    conf_level: float = 0.95,
    n_jobs: int | None = None,
) -> dict[str, pd.DataFrame]:
    """The ``position_trend``, ``lag_effects`` and ``glance`` tables: given ones, else fitted.

    Parameters
    ----------
    frame
        The tidy frame of ``extract``.
    tables
        Tables already fitted (keys ``position_trend``, ``lag_effects``, ``glance``); only
        the missing ones are fitted.
    trend_methods, lag_methods
        Methods to fit; None means every method of ``models.METHODS``.
    max_position
        Last position of the trend fits.
    conf_level
        Level of the fitted tables' intervals (carried in their ``conf_level`` column).
    n_jobs
        Worker processes for the fits that use them.

    Returns
    -------
    dict
        The three tables. A missing ``glance`` comes from the fit details the ``models``
        tables carry in ``attrs["glance"]``; it is None where neither table carries them.

    Examples
    --------
    >>> fitted = fit_tables(frame, conf_level=0.9)  # doctest: +SKIP
    """
    out = dict(tables or {})
    if "position_trend" not in out:
        out["position_trend"] = _stack(
            [
                models.position_trend(
                    frame, method=m, max_position=max_position, conf_level=conf_level, n_jobs=n_jobs
                )
                for m in trend_methods or models.METHODS["position_trend"]
            ]
        )
    if "lag_effects" not in out:
        out["lag_effects"] = _stack(
            [
                models.lag_effects(frame, method=m, conf_level=conf_level, n_jobs=n_jobs)
                for m in lag_methods or models.METHODS["lag_effects"]
            ]
        )
    if out.get("glance") is None:
        parts = [
            models.glance(out[name])
            for name in ("position_trend", "lag_effects")
            if out[name].attrs.get("glance")
        ]
        out["glance"] = pd.concat(parts, ignore_index=True) if parts else None
    return out


def _stack(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Tables of several methods as one, their fit details (``attrs["glance"]``) joined."""
    table = pd.concat(tables, ignore_index=True)
    table.attrs["glance"] = [record for t in tables for record in t.attrs.get("glance", [])]
    return table


def _lag_caption(lags: pd.DataFrame) -> str:
    """The lag figure's caption: its level, and what each method present estimates."""
    methods = ordered_methods(lags["method"])
    within = [m for m in methods if LAG_ROLES.get(m) == "within texts"]
    parts = [
        f"Coefficients on the log norm one (left) and two (right) positions earlier, per "
        f"layer, with {percent(interval_level(lags, name='lag_effects'))} CIs, one colour per "
        "method; the first token is left out."
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
        parts.append(
            f"Shaded: layers where {default} and {check} differ by more than {GAP_LIMIT:g} of "
            f"{check}'s standard errors."
        )
    parts.append("Open markers: fits that did not converge.")
    return " ".join(parts)


def render_figures(
    frame: pd.DataFrame,
    *,
    trend: pd.DataFrame,
    lags: pd.DataFrame,
    max_position: int = 30,
    conf_level: float = 0.95,
    dpi: int = 110,
) -> dict[str, Rendered]:
    """The report's five figures, rendered, keyed by section.

    Means computed here from ``frame`` get ``conf_level`` intervals; the coefficients'
    intervals are those of ``trend`` and ``lags``, and the captions say each one's level.
    """
    level = percent(conf_level)
    trend_level = percent(interval_level(trend, name="position_trend"))
    specs = [
        (
            "data",
            "Real tokens per text",
            "Left: which positions hold a real token, one row per text, longest first. "
            "Right: how many real tokens each text has.",
            lambda: figures.plot_valid_tokens(frame),
        ),
        (
            "layers",
            "Log norms by layer",
            "Top: distribution of the log norm per layer (violins with quartiles, drawn from a "
            "seeded random sample of tokens; positions 1 and later). Bottom: mean log norm per "
            f"layer over all those tokens with its {level} CI; the tokens of one text are not "
            "independent, so the intervals are cluster-robust by text.",
            lambda: figures.plot_layer_norms(frame, conf_level=conf_level),
        ),
        (
            "positions",
            "Mean norm by layer and position",
            f"Top: mean norm at each layer and position 0 to {max_position}; the colour scale "
            "stops at the 2nd and 98th percentiles of the cells at positions 1 and later, so the "
            "first token (the attention sink) may run off it. Bottom: the same means, one thin "
            f"line per layer, and their mean over layers with its {level} CI (black), on a log "
            "scale.",
            lambda: figures.plot_position_norms(
                frame, max_position=max_position, conf_level=conf_level
            ),
        ),
        (
            "trend",
            "Trend over positions",
            f"Top: log of the mean norm at positions 1 to {max_position} (points with {level} "
            "CIs) and the line the aggregate method fits to them, one colour per layer. Bottom: "
            f"intercept and slope per layer with {trend_level} CIs, one colour per method. The "
            "aggregate method models the log of the mean norm, ols and mixed the mean of the "
            "log norm, so their intercepts differ by about half the variance of the log norm. "
            "Open markers: fits that did not converge.",
            lambda: figures.plot_position_trend(
                frame, trend, max_position=max_position, conf_level=conf_level
            ),
        ),
        ("lags", "Lag effects", _lag_caption(lags), lambda: figures.plot_lag_effects(lags)),
    ]
    out = {}
    for number, (key, title, caption, draw) in enumerate(specs, start=1):
        png = figures.figure_bytes(draw(), dpi=dpi)
        out[key] = Rendered(
            key, f"figure{number}-{key}.png", f"Figure {number}. {title}", caption, png
        )
    return out


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


def _checks_note(compared: pd.DataFrame) -> str:
    """What the columns of the lag checks table mean (those it has)."""
    default, check = COMPARED
    notes = []
    if "flagged" in compared:
        notes.append(
            f"Gap: {default} minus {check}, in {check}'s standard errors (! beyond "
            f"{GAP_LIMIT:g}: the layer is flagged)."
        )
    if "hansen_j" in compared or "ar2_statistic" in compared:
        notes.append(
            f"Hansen J tests {check}'s overidentifying restrictions; AR(2) tests its "
            "differenced residuals for second-order serial correlation (small p: the "
            "instruments are in doubt)."
        )
    notes.append(
        "Texts / rows: what each estimator used"
        + (
            f"; texts under {GMM_MIN_TOKENS} tokens drop out of {check}."
            if check in compared.columns.str.removeprefix("texts_")
            else "."
        )
    )
    return " ".join(notes)


def _sections(
    found: Mapping[str, Finding],
    rendered: Mapping[str, Rendered],
    tables: Mapping[str, pd.DataFrame],
    *,
    alpha: float,
) -> list[dict]:
    """What the templates draw per section: title, finding, figure, tables and their CSV."""
    coefficient = {"trend": "position_trend", "lags": "lag_effects"}
    out = []
    for key, title in SECTIONS.items():
        name = coefficient.get(key)
        section = {
            "id": key,
            "title": title,
            "finding": found[key],
            "figure": rendered[key],
            "table": None,
            "checks": None,
        }
        if name:
            table = tables[name]
            words = METHOD_WORDS[name]
            section.update(
                table=coefficient_display(table, alpha=alpha),
                level=percent(interval_level(table, name=name)),
                csv=f"{name}.csv",
                methods={m: words.get(m, m) for m in ordered_methods(table["method"])},
            )
        if key == "lags":
            compared = lag_comparison(tables[name], tables["glance"])
            section.update(checks=lag_check_display(compared), checks_note=_checks_note(compared))
        out.append(section)
    return out


def write_report(
    frame: pd.DataFrame,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = FORMATS,
    trend_methods: Sequence[str] | None = None,
    lag_methods: Sequence[str] | None = None,
    max_position: int = 30,
    tables: Mapping[str, pd.DataFrame] | None = None,
    timings: Mapping[str, float] | None = None,
    n_jobs: int | None = None,
    alpha: float = 0.05,
    conf_level: float = 0.95,
) -> dict[str, Path]:
    """Write the report on ``frame`` into ``out_dir``; return the paths written, by name.

    ``formats`` picks ``html`` (one self-contained ``index.html``) and/or ``md``
    (``report.md`` with ``figures/*.png``). The coefficient tables are always written as
    ``position_trend.csv``, ``lag_effects.csv`` and ``glance.csv`` (where there are fit
    details). ``tables`` gives tables already fitted (keys ``position_trend``,
    ``lag_effects``, ``glance``); the missing ones are fitted with
    ``trend_methods``/``lag_methods`` (None: every method of ``models.METHODS``) at
    ``conf_level``. Each table's intervals are labelled with the level the table carries in
    its ``conf_level`` column; the means with intervals that the report computes from the
    frame itself use ``conf_level``. ``timings`` (stage ->
    seconds) joins the provenance; the fitting and drawing done here are timed and added.
    Keys of the result are paths relative to ``out_dir`` (``index.html``, ``report.md``,
    ``figures/figure1-data.png``, ``position_trend.csv``, ...).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise AttnmagError(
            f"unknown report formats {unknown or list(formats)}: expected some of {list(FORMATS)}"
        )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise AttnmagError(f"the frame lacks the columns {missing}: expected an attnmag frame")
    seconds = dict(timings or {})
    start = time.perf_counter()
    fitted = fit_tables(
        frame,
        tables=tables,
        trend_methods=trend_methods,
        lag_methods=lag_methods,
        max_position=max_position,
        conf_level=conf_level,
        n_jobs=n_jobs,
    )
    if tables is None or set(fitted) - set(tables):
        seconds["fit"] = time.perf_counter() - start
    trend, lags, glance = fitted["position_trend"], fitted["lag_effects"], fitted["glance"]
    found = findings(
        frame,
        trend=trend,
        lags=lags,
        glance=glance,
        alpha=alpha,
        max_position=max_position,
        conf_level=conf_level,
    )
    start = time.perf_counter()
    rendered = render_figures(
        frame, trend=trend, lags=lags, max_position=max_position, conf_level=conf_level
    )
    seconds["figures"] = time.perf_counter() - start

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in ("position_trend", "lag_effects", "glance"):
        if fitted[name] is None:
            continue
        path = out / f"{name}.csv"
        fitted[name].to_csv(path, index=False)
        written[path.name] = path
    context = {
        "title": f"Attention update magnitudes: {frame.attrs.get('model', 'unnamed model')}",
        "version": __version__,
        "provenance": provenance_rows(frame.attrs, timings=seconds),
        "sections": _sections(found, rendered, fitted, alpha=alpha),
        "glance": None if glance is None else glance_display(glance),
        "alpha": alpha,
    }
    env = _environment()
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
