"""Sequence-level corpus columns carried into the frame with ``keep=``."""

import datasets
import numpy as np
import pytest

from attnmag import extract, models
from attnmag.errors import AttnmagError

TEXTS = ["A first review.", "", "The second one is longer than the first.", "Third."]


@pytest.fixture
def corpus() -> datasets.Dataset:
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["rotten", "fresh"]),
            "critic": datasets.Value("string"),
            "score": datasets.Value("float64"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "text": TEXTS,
            "label": [1, 0, 0, 1],
            "critic": ["ann", "bob", "cy", "ann"],
            "score": [0.9, 0.1, 0.2, 0.8],
        },
        features=features,
    )


def test_kept_columns_hold_each_rows_text_value(tiny_gpt2, gpt2_tokenizer, corpus):
    keep = ["label", "critic", "score"]
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, corpus, keep=keep, progress=False)
    assert list(frame.columns) == [*extract.COLUMNS, *keep]
    assert sorted(frame["sequence"].unique()) == [0, 2, 3]  # the blank text is skipped
    assert list(frame["label"].cat.categories) == ["rotten", "fresh"]
    assert frame["critic"].dtype == "category" and frame["score"].dtype == np.float64
    for sequence, rows in frame.groupby("sequence"):
        assert set(rows["label"]) == {["rotten", "fresh"][corpus["label"][sequence]]}
        assert set(rows["critic"]) == {corpus["critic"][sequence]}
        assert set(rows["score"]) == {corpus["score"][sequence]}
    plain = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, corpus, progress=False)
    assert frame[extract.COLUMNS].equals(plain)


def test_update_norms_keeps_them_too(tiny_gpt2, gpt2_tokenizer, corpus):
    frame = extract.update_norms(
        tiny_gpt2, gpt2_tokenizer, corpus, sites=("attn", "resid"), keep="label", progress=False
    )
    assert frame.columns[-1] == "label" and frame["label"].notna().all()


def test_the_bundled_corpus_names_its_labels_fresh_and_rotten():
    texts = extract.load_corpus(limit=6)
    assert texts.features["label"].names == ["rotten", "fresh"]
    assert sorted(texts["label"]) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    ("texts", "keep", "message"),
    [
        (TEXTS, ["label"], "keep=['label'] needs texts as a datasets.Dataset"),
        (None, ["stars"], "the corpus has no columns ['stars']; its columns are ['text', "),
        (None, ["norm"], "the corpus has no columns ['norm']"),
        (None, ["text"], "would repeat the columns ['text']"),
    ],
)
def test_a_bad_keep_is_one_line_before_any_work(
    tiny_gpt2, gpt2_tokenizer, corpus, texts, keep, message
):
    calls = []
    hook = tiny_gpt2.transformer.h[0].register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(AttnmagError) as caught:
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, texts or corpus, keep=keep)
    hook.remove()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not calls


def test_shards_store_kept_columns(tiny_gpt2, gpt2_tokenizer, corpus, tmp_path):
    keep = ["label", "critic", "score"]
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, corpus, keep=keep, progress=False)
    folder = tmp_path / "norms"
    # Shard 0 holds texts 0-1, shard 1 texts 2-3: different critics in each.
    extract.write_shards(
        tiny_gpt2, gpt2_tokenizer, corpus, folder, shard_texts=2, keep=keep, progress=False
    )
    back = extract.read_shards(folder)
    assert list(back.columns) == list(frame.columns)
    for name in keep:
        assert back[name].astype(str).tolist() == frame[name].astype(str).tolist()
    assert list(back["label"].cat.categories) == ["rotten", "fresh"]
    assert back["critic"].dtype == "category" and back["score"].dtype == np.float64
    terms = models.fit(folder, "log_norm ~ position + C(label)", method="ols").tidy["term"]
    assert "C(label)[T.rotten]" in set(terms)
    with pytest.raises(AttnmagError, match="has no columns"):
        extract.write_shards(tiny_gpt2, gpt2_tokenizer, corpus, tmp_path / "b", keep=["nope"])
