"""write_report: the files it writes, a self-contained HTML page, and the Markdown beside it."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from attnmag import AttnmagError, models
from attnmag.models.tidy import TIDY_COLUMNS
from attnmag.reports import write_report
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables

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
def written(frame, tmp_path_factory) -> dict:
    tables = fake_tables(frame, unconverged=(2,))
    out = tmp_path_factory.mktemp("report")
    return write_report(frame, out, tables=tables, timings={"load": 1.5})


def test_writes_the_report_figures_and_tables(written):
    assert set(written) == {"index.html", "report.md", *FIGURES, *CSVS}
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    for name in FIGURES:
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_tables_are_the_full_tables(written, frame):
    tables = fake_tables(frame, unconverged=(2,))
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
        "Nickell",
        "median 26 tokens",
        "Coefficient table",
        "lag-2",
    ):
        assert needle in text, needle


def test_markdown_report_links_its_figures_and_holds_the_tables(written):
    text = written["report.md"].read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == FIGURES
    assert "http" not in text
    assert "did not converge" in text and "Nickell" in text
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, re.M):
        widths = {line.count(" | ") for line in block.splitlines()}
        assert len(widths) == 1, block
    assert "| layer | term | aggregate (95% CI) | ols (95% CI) | mixed (95% CI) |" in text


def test_formats_pick_the_files(tmp_path):
    frame = simulated_frame(30, 2, seed=2)
    tables = {k: v for k, v in fake_tables(frame).items() if k != "glance"}
    written = write_report(frame, tmp_path / "md", formats=("md",), tables=tables)
    assert "index.html" not in written and "report.md" in written
    written = write_report(frame, tmp_path / "html", formats=("html",), tables=tables)
    assert "report.md" not in written and not (tmp_path / "html" / "figures").exists()
    assert "glance.csv" not in written  # no glance given, none carried by the tables
    assert "Fits" not in written["index.html"].read_text(encoding="utf-8")


def test_bad_input_is_a_clear_error(frame, tmp_path):
    with pytest.raises(AttnmagError, match="unknown report formats"):
        write_report(frame, tmp_path, formats=("pdf",), tables=fake_tables(frame))
    with pytest.raises(AttnmagError, match="lacks the columns"):
        write_report(frame.drop(columns="lag2"), tmp_path)


@pytest.mark.skipif(
    not all(hasattr(models, f) for f in ("position_trend", "lag_effects", "glance")),
    reason="the models stage (position_trend, lag_effects, glance) has not landed yet",
)
def test_write_report_fits_what_it_needs(tmp_path):
    frame = simulated_frame(60, 2, lag1=0.3, seed=3)
    written = write_report(frame, tmp_path, max_position=20)
    trend = pd.read_csv(written["position_trend.csv"])
    lags = pd.read_csv(written["lag_effects.csv"])
    assert set(trend["method"]) == {"aggregate", "ols", "mixed"}
    assert set(lags["method"]) == {"ols", "mixed"}
    assert set(trend["term"]) == {"intercept", "position"}
    assert {"lag1", "lag2"} <= set(lags["term"])
    assert "fit " in written["index.html"].read_text(encoding="utf-8")
