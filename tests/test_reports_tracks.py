"""The report section "What tracks the magnitude" on frames and folders with token and sink
columns."""

import numpy as np
import pandas as pd
import pytest
from test_reports_folder import FAST_FITS, documents

from attnmag import extract, models, reports
from attnmag.reports import tracks
from attnmag.reports.folder import open_folder

TEXTS = [f"Text {i}: some words, and more words (here); number {i * 7}!" for i in range(16)]
COLUMNS = ("surprisal", "log_frequency", "word_start", "punct")


@pytest.fixture
def frame(tiny_gpt2, gpt2_tokenizer):
    return extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, TEXTS, token_columns=COLUMNS, sink=True
    )


def test_table_is_the_formulas_fit(frame):
    table = tracks.tracks_table(frame, {})
    formula = "log_norm ~ position + surprisal + log_frequency + C(word_start) + C(punct)"
    assert tracks.tracks_formula(frame.columns) == formula
    expected = models.fit(frame, formula).tidy
    pd.testing.assert_frame_equal(table, expected)
    assert {"C(word_start)[T.True]", "C(punct)[T.True]"} <= set(table["term"])


def test_sink_means_are_the_layer_means(frame):
    got = tracks.sink_means(frame, {}, first_position=1, max_position=30)
    rows = frame[frame["position"].between(1, 30)]
    expected = rows.assign(share=rows["sink_norm"] / rows["norm"]).groupby("layer")
    np.testing.assert_allclose(got["sink_weight"], expected["sink_weight"].mean(), rtol=1e-6)
    np.testing.assert_allclose(got["sink_share"], expected["share"].mean(), rtol=1e-6)


def test_finding_counts_significant_layers(frame):
    table = tracks.tracks_table(frame, {})
    sink = tracks.sink_means(frame, {})
    found = tracks.tracks_finding(table, sink, alpha=0.05)
    rows = table[table["term"] == "surprisal"]
    positive = ((rows["p_adjusted"] < 0.05) & (rows["estimate"] > 0)).sum()
    assert found.numbers["surprisal"]["n_positive"] == positive
    assert found.numbers["sink"]["layer"] == int(sink.loc[sink["sink_weight"].idxmax(), "layer"])
    assert "the first token takes the most attention" in found.text.lower()


def test_report_has_the_section_from_a_frame_and_a_folder(
    frame, tiny_gpt2, gpt2_tokenizer, tmp_path
):
    tables = models.fit_all(frame, **FAST_FITS)
    written = reports.write_report(frame, tmp_path / "report", tables=tables, formats=("md",))
    text = written["report.md"].read_text()
    assert "What tracks the magnitude" in text
    assert "surprisal (per nat)" in text
    plain = frame.drop(columns=[*COLUMNS, "sink_weight", "sink_norm"])
    bare = reports.write_report(plain, tmp_path / "plain", tables=tables, formats=("md",))
    assert "What tracks the magnitude" not in bare["report.md"].read_text()
    folder = tmp_path / "norms"
    extract.write_shards(
        tiny_gpt2, gpt2_tokenizer, TEXTS, folder, shard_texts=20, token_columns=COLUMNS, sink=True
    )
    read = extract.read_shards(folder)
    on_folder = reports.write_report(open_folder(folder), tmp_path / "f", tables=tables)
    on_frame = reports.write_report(read, tmp_path / "r", tables=tables)
    assert documents(on_folder) == documents(on_frame)
