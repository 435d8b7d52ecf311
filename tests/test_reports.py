"""write_report: the files it writes, a self-contained HTML page, and the Markdown beside it."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import matplotlib.text
import pandas as pd
import pytest

from attnmag import AttnmagError, models, reports
from attnmag.models.tidy import TIDY_COLUMNS
from attnmag.reports import figures, write_report
from attnmag.reports.summaries import ordered_methods
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables, grouped_frame

FIGURES = [
    f"figures/figure{i}-{key}.png"
    for i, key in enumerate(("data", "layers", "positions", "trend", "lags"), start=1)
]
CSVS = ["position_trend.csv", "lag_effects.csv", "glance.csv"]


class _Resources(HTMLParser):
    """Every tag with its attributes, and the text of style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frame = simulated_frame(150, 3, lag1=0.3, seed=1)
    frame.attrs.update(
        n_skipped_empty=2,
        n_truncated=1,
        device="cpu",
        versions={"pandas": pd.__version__},
        seconds_extract=12.5,
    )
    return frame


@pytest.fixture(scope="module")
def tables(frame) -> dict:
    return fake_tables(frame, unconverged=(2,), gmm_apart=(1,), gmm_rejects=(0,))


@pytest.fixture(scope="module")
def written(frame, tables, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report")
    return write_report(frame, out, tables=tables, timings={"load": 1.5})


def test_writes_the_report_figures_and_tables(written):
    assert set(written) == {"index.html", "report.md", *FIGURES, *CSVS}
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    for name in FIGURES:
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_tables_are_the_full_tables(written, tables):
    for name in ("position_trend", "lag_effects"):
        read = pd.read_csv(written[f"{name}.csv"])
        assert list(read.columns) == TIDY_COLUMNS
        pd.testing.assert_frame_equal(read, tables[name].reset_index(drop=True), check_dtype=False)
    assert len(pd.read_csv(written["glance.csv"])) == len(tables["glance"])


def test_html_is_self_contained(written):
    text = written["index.html"].read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(text)
    tags = parser.tags
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in tags:
        for key in ("src", "href", "srcset", "data", "poster"):
            value = attrs.get(key) or ""
            assert not re.match(r"\s*(https?:)?//", value, re.I), (tag, key, value)
            if key == "href" and value:
                assert value.startswith("#"), value
    assert not re.search(r"url\(|@import", " ".join(parser.styles))
    images = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert len(images) == len(FIGURES)
    for src, name in zip(images, FIGURES, strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == written[name].read_bytes()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_html_holds_provenance_findings_warnings_and_tables(written):
    text = written["index.html"].read_text(encoding="utf-8")
    for needle in (
        "simulated",
        "empty texts skipped",
        "texts truncated",
        "extract 12.5 s",
        "load 1.5 s",
        "figures",
        "After Holm correction",
        "did not converge",
        "Coefficient table",
        "lag-2",
        "the two differ by more than 2 of gmm&#39;s standard errors in 1 of 3 layers",
        "Hansen&#39;s J test asks whether",
        "gmm texts / rows",
        '<td class="number">-5.00!</td>',
        "* the 95% CI excludes zero, that is the unadjusted p &lt; 0.05",
        "not persistence within a text",
    ):
        assert needle in text, needle


def test_markdown_report_links_its_figures_and_holds_the_tables(written):
    text = written["report.md"].read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == FIGURES
    assert "http" not in text
    assert "did not converge" in text and "differ by more than 2 of gmm's standard errors" in text
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, re.M):
        widths = {line.count(" | ") for line in block.splitlines()}
        assert len(widths) == 1, block
    trend_methods = ["aggregate", "ols", "mixed"]
    header = "| layer | " + " | ".join(f"{m} (95% CI) | {m} Holm p" for m in trend_methods) + " |"
    assert "**slope (position)**\n\n" + header in text
    lag_methods = ordered_methods(["gmm", "initial_conditions", "ols"])
    header = "| layer | " + " | ".join(f"{m} (95% CI) | {m} Holm p" for m in lag_methods) + " |"
    assert "**lag-1**\n\n" + header in text
    assert "Hansen J (p)" in text and "| 0 | " in text.split("Hansen J (p)")[1]


def test_formats_pick_the_files(tmp_path):
    frame = simulated_frame(30, 2, seed=2)
    tables = {k: v for k, v in fake_tables(frame).items() if k != "glance"}
    written = write_report(frame, tmp_path / "md", formats=("md",), tables=tables)
    assert "index.html" not in written and "report.md" in written
    written = write_report(frame, tmp_path / "html", formats=("html",), tables=tables)
    assert "report.md" not in written and not (tmp_path / "html" / "figures").exists()
    assert "glance.csv" not in written  # no glance given, none carried by the tables
    html = written["index.html"].read_text(encoding="utf-8")
    fits = html.split('id="fits"')[1].split("<section")[0]
    assert "came without their fit details" in fits and "<table" not in fits


def test_bad_input_is_a_clear_error(frame, tmp_path):
    with pytest.raises(AttnmagError, match="unknown report formats"):
        write_report(frame, tmp_path, formats=("pdf",), tables=fake_tables(frame))
    with pytest.raises(AttnmagError, match="lacks the columns"):
        write_report(frame.drop(columns="lag2"), tmp_path)


def _figure_texts(monkeypatch) -> list[list[str]]:
    """Record every text drawn in each figure that ``write_report`` renders."""
    drawn: list[list[str]] = []
    render = figures.figure_bytes

    def recording(fig, **kwargs):
        drawn.append([t.get_text() for t in fig.findobj(matplotlib.text.Text)])
        return render(fig, **kwargs)

    monkeypatch.setattr(figures, "figure_bytes", recording)
    return drawn


def _says_80_never_95(written: dict, drawn: list[list[str]]) -> None:
    for name in ("index.html", "report.md"):
        text = written[name].read_text(encoding="utf-8")
        assert "95%" not in text and "95 %" not in text, name
        assert text.count("80% CI") >= 9, name  # 3 captions, 2 notes, 6 table headers
    assert len(drawn) == 5
    for number, texts in enumerate(drawn[1:], start=2):  # figure 1 shows no interval
        joined = " ".join(texts)
        assert "80% CI" in joined and "95%" not in joined, number


def test_a_report_at_80_percent_says_80_everywhere_and_never_95(frame, tmp_path, monkeypatch):
    drawn = _figure_texts(monkeypatch)
    tables = fake_tables(frame, conf_level=0.8)
    written = write_report(frame, tmp_path, tables=tables, conf_level=0.8, n_jobs=1)
    _says_80_never_95(written, drawn)
    html = written["index.html"].read_text(encoding="utf-8")
    for caption in (
        "mean log norm per layer over all those tokens with its 80% CI",
        "the intercept per layer; each with its 80% CI",
        "the layer&#39;s level, with its 80% CI",
        "per layer, with 80% CIs",
    ):
        assert caption in html, caption


def test_captions_take_each_level_from_where_its_intervals_come_from(frame, tmp_path, monkeypatch):
    """Tables at 80%, means from the frame at 90%: each caption says its own level."""
    drawn = _figure_texts(monkeypatch)
    written = write_report(
        frame, tmp_path, tables=fake_tables(frame, conf_level=0.8), conf_level=0.9, n_jobs=1
    )
    html = written["index.html"].read_text(encoding="utf-8")
    assert "the layer&#39;s level, with its 90% CI" in html
    assert "the intercept per layer; each with its 80% CI" in html
    assert "over all those tokens with its 90% CI" in html and "ols (80% CI)" in html
    trend_titles = " ".join(drawn[3])
    assert "Slope per layer with 80% CI" in trend_titles
    assert "90% CI" in " ".join(drawn[2])  # the levels beside the heatmap
    assert "Lag-1 coefficient with 80% CI" in drawn[4]


def test_a_table_without_one_level_is_a_clear_error(frame, tmp_path):
    tables = fake_tables(frame)
    mixed = tables["lag_effects"].copy()
    mixed.loc[mixed["method"] == "gmm", "conf_level"] = 0.9
    with pytest.raises(AttnmagError, match=r"lag_effects table holds intervals at 2 levels"):
        write_report(frame, tmp_path, tables={**tables, "lag_effects": mixed})
    bare = tables["position_trend"].drop(columns="conf_level")
    with pytest.raises(AttnmagError, match=r"position_trend table has no conf_level column"):
        write_report(frame, tmp_path, tables={**tables, "position_trend": bare})


def test_write_report_fits_what_it_needs(tmp_path, monkeypatch):
    drawn = _figure_texts(monkeypatch)
    frame = simulated_frame(60, 2, lag1=0.3, seed=3)
    written = write_report(frame, tmp_path, max_position=20, conf_level=0.8, n_jobs=1)
    trend = pd.read_csv(written["position_trend.csv"])
    lags = pd.read_csv(written["lag_effects.csv"])
    assert set(trend["method"]) == set(models.METHODS["position_trend"])
    assert set(lags["method"]) == set(models.METHODS["lag_effects"])
    assert set(trend["term"]) == {"Intercept", "position"}
    assert {"lag1", "lag2"} <= set(lags["term"])
    assert (trend["conf_level"] == 0.8).all() and (lags["conf_level"] == 0.8).all()
    assert "fit " in written["index.html"].read_text(encoding="utf-8")
    _says_80_never_95(written, drawn)


@pytest.mark.parametrize(
    "module",
    [
        "docs",
        "figures",
        "findings",
        "folder",
        "front",
        "numbers",
        "panels",
        "summaries",
        "tables",
        "write",
    ],
)
def test_every_public_function_of_the_reports_modules_is_declared_and_documented(module):
    import importlib
    import inspect

    mod = importlib.import_module(f"attnmag.reports.{module}")
    defined = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == mod.__name__
    }
    assert defined <= set(mod.__all__), defined - set(mod.__all__)
    assert all(hasattr(mod, name) for name in mod.__all__)
    for name in sorted(defined):
        value = getattr(mod, name)
        if inspect.isfunction(value):
            doc = inspect.getdoc(value)
            returns = inspect.signature(value).return_annotation not in (None, "None")
            assert "Parameters\n----------" in doc, name
            assert "Returns\n-------" in doc or not returns, name
            assert "Examples\n--------" in doc, name


def test_report_defaults_come_from_the_models_stage():
    import inspect

    for function in (write_report, figures.plot_position_trend, reports.plot_layer_means):
        parameters = inspect.signature(function).parameters
        assert parameters["conf_level"].default is models.CONF_LEVEL
    assert inspect.signature(write_report).parameters["max_position"].default is (
        models.MAX_POSITION
    )


def test_one_series_of_a_grouped_frame_is_reported_as_a_plain_frame(tmp_path, monkeypatch):
    grouped = grouped_frame(40, 2)
    drawn = _figure_texts(monkeypatch)
    one = grouped[(grouped["model"] == "small") & (grouped["site"] == "mlp")]
    tables = fake_tables(one.drop(columns=["model", "site"]))
    written = write_report(one, tmp_path / "one", tables=tables, n_jobs=1)
    assert {"index.html", "report.md", *FIGURES, *CSVS} <= set(written)
    assert "mean log of the L2 norm\nof the MLP update" in drawn[1]


def test_what_the_fits_return_keeps_its_glance_rows(tmp_path):
    """A ``models.Fits`` and a table as ``models`` returned it each bring their glance rows;
    tables whose rows ``pd.concat`` dropped make the report say so."""
    frame = simulated_frame(40, 2, seed=4)
    trend = models.fit(frame, "log_norm ~ position", method="ols")
    lags = models.lag_effects(frame, method="ols").tidy
    tables = {"position_trend": trend, "lag_effects": lags}
    written = write_report(frame, tmp_path / "fits", formats=("md",), tables=tables)
    glance = pd.read_csv(written["glance.csv"])
    assert sorted(set(glance["fit"])) == ["lag_effects", "log_norm ~ position"]
    assert len(glance) == 2 * 2  # two layers of each fit
    written_trend = pd.read_csv(written["position_trend.csv"])
    assert written_trend["estimate"].tolist() == pytest.approx(trend.tidy["estimate"].tolist())
    aggregate = models.position_trend(frame, method="aggregate").tidy
    bare = {
        "position_trend": pd.concat([trend.tidy, aggregate], ignore_index=True),
        "lag_effects": pd.concat([lags, models.lag_effects(frame, method="gmm").tidy]),
    }
    assert not any(table.attrs.get("glance") for table in bare.values())
    written = write_report(frame, tmp_path / "bare", formats=("md",), tables=bare)
    assert "glance.csv" not in written
    assert "came without their fit details" in written["report.md"].read_text(encoding="utf-8")


def test_a_fits_a_mapping_of_them_and_the_tables_read_back_make_the_same_report(tmp_path):
    """write_report, the figures and the findings take what the fits return: a ``Fits``,
    ``fit_all``'s mapping of them, or ``read_fits``' tables; without glance.csv the report
    says so."""
    frame = simulated_frame(40, 2, seed=4)
    fits = models.fit_all(frame, trend_methods=["ols"], lag_methods=["ols"], progress=False)
    models.write_fits(fits, (tmp_path / "tables").mkdir() or tmp_path / "tables")
    given = {
        "one": fits["position_trend"] + fits["lag_effects"],
        "mapping": fits,
        "read": models.read_fits(tmp_path / "tables"),
    }
    glances = {}
    for name, tables in given.items():
        written = write_report(frame, tmp_path / name, formats=("md",), tables=tables)
        glances[name] = pd.read_csv(written["glance.csv"]).drop(columns="seconds")
        trend = pd.read_csv(written["position_trend.csv"])
        assert trend["estimate"].tolist() == pytest.approx(fits["position_trend"].tidy["estimate"])
    assert len(glances["one"]) == 2 * 2
    pd.testing.assert_frame_equal(glances["one"], glances["mapping"])
    pd.testing.assert_frame_equal(glances["one"], glances["read"], check_dtype=False)
    drawn = reports.plot_lag_effects(fits["lag_effects"])
    assert drawn.axes and drawn.axes[0].get_title()
    found = reports.findings(frame, trend=fits["position_trend"], lags=fits["lag_effects"])
    assert (
        found["lags"].numbers["ols"]
        == reports.findings(
            frame, trend=fits["position_trend"].tidy, lags=fits["lag_effects"].tidy
        )["lags"].numbers["ols"]
    )
    (tmp_path / "tables" / "glance.csv").unlink()
    read = models.read_fits(tmp_path / "tables")
    written = write_report(frame, tmp_path / "bare", formats=("md",), tables=read)
    assert "glance.csv" not in written
    assert "came without their fit details" in written["report.md"].read_text(encoding="utf-8")


def test_first_position_reaches_the_fits_and_the_captions(tmp_path):
    frame = simulated_frame(40, 2, lag1=0.3, seed=4)
    written = write_report(
        frame,
        tmp_path,
        formats=("md",),
        trend_methods=["ols"],
        lag_methods=["ols"],
        max_position=20,
        first_position=3,
        n_jobs=1,
    )
    trend = pd.read_csv(written["position_trend.csv"])
    lags = pd.read_csv(written["lag_effects.csv"])
    positions = frame[frame.layer == 0].position
    assert (trend.n_obs == positions.between(3, 20).sum()).all()
    assert (lags.n_obs == (positions >= 5).sum()).all()
    text = written["report.md"].read_text(encoding="utf-8")
    assert "sample of tokens; positions 3 and later)" in text
    assert "fitted on positions 3 and later." in text
    assert "over positions 3 to 20" in text
    with pytest.raises(AttnmagError, match="first_position must be a whole number from 0 to 19"):
        write_report(frame, tmp_path / "bad", max_position=20, first_position=20)
    assert not (tmp_path / "bad").exists()


def test_the_figures_are_drawn_with_one_blas_thread(frame, tables, tmp_path, monkeypatch):
    """The figures' small algebra runs on one OpenBLAS thread, and the limit ends with them."""
    from threadpoolctl import threadpool_info

    from attnmag.reports import write

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen = []
    drawn_sections = write.drawn_sections

    def recording(*args, **kwargs):
        seen.append(blas_threads())
        return drawn_sections(*args, **kwargs)

    monkeypatch.setattr(write, "drawn_sections", recording)
    before = blas_threads()
    write_report(frame, tmp_path, tables=tables, formats=["md"])
    assert seen == [{1}]
    assert blas_threads() == before
