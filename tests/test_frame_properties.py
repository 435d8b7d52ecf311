"""Properties of the tidy frame, for any corpus hypothesis draws.

- ``lag1`` and ``lag2`` are ``log_norm`` shifted by one and two rows within (sequence, layer),
  NaN where that position does not exist;
- positions are 0..n-1 per sequence and layer, n being the text's token count;
- ``sequence`` is the text's index in the corpus as given, and each text's rows equal the
  text run alone, whatever the batch size, token budget, padding side or order of texts;
- ``read_frame(frame.to_parquet(...))`` gives the frame back: values, dtypes and attrs;
- with grouping columns (``site``, ``head``) for its series, lags are shifts within
  (sequence, site, layer, head) and the columns keep their order and dtypes.

One tiny GPT-2 (and the real GPT-2 tokenizer) serves every example; texts are drawn from
words that include GPT-2's pad id ``<|endoftext|>`` and blank texts, which are skipped.
"""

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import attention_updates

from attnmag import extract
from attnmag.extract.frame import tidy_frame

FEW = settings(max_examples=12, deadline=None, database=None)
MANY = settings(max_examples=60, deadline=None, database=None)

WORDS = ["the", "film", "is", "not", "bad", "<|endoftext|>", "!", "Rotten.", "é", " ", "tomato"]
TEXT = st.lists(st.sampled_from(WORDS), max_size=7).map(" ".join)
CORPUS = st.lists(TEXT, min_size=1, max_size=6).filter(lambda ts: any(t.strip() for t in ts))
N_LAYERS = 3


@pytest.fixture(scope="module")
def gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=N_LAYERS, n_head=4)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def tokenizer(gpt2_tokenizer_dir):
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir)


@pytest.fixture(scope="module")
def alone(gpt2, tokenizer):
    """Each text's norms run alone and unpadded, ``(layers, tokens)``, by plain hooks."""

    @cache
    def norms(text: str) -> np.ndarray:
        updates = attention_updates(gpt2, tokenizer, text, n_layers=N_LAYERS)
        return np.stack([u.double().norm(dim=-1).numpy() for u in updates])

    return norms


def assert_lags_and_positions(frame: pd.DataFrame, lengths: dict[int, int]) -> None:
    """Lags are shifts of log_norm within (sequence, layer); positions run 0..n-1."""
    keys = ["sequence", "layer"]
    assert frame.equals(frame.sort_values([*keys, "position"], kind="stable"))
    groups = frame.groupby(keys, sort=False)
    for k in (1, 2):
        expected = groups["log_norm"].shift(k)
        pd.testing.assert_series_equal(frame[f"lag{k}"], expected, check_names=False)
        assert frame.loc[frame["position"] < k, f"lag{k}"].isna().all()
    expected_positions = np.concatenate(
        [np.arange(lengths[s]) for s, _ in groups.size().index] or [np.array([], int)]
    )
    np.testing.assert_array_equal(frame["position"], expected_positions)
    np.testing.assert_allclose(frame["log_norm"], np.log(frame["norm"].astype(np.float64)))


@MANY
@given(
    lengths=st.dictionaries(st.integers(0, 10_000), st.integers(1, 6), min_size=1, max_size=6),
    layers=st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True).map(sorted),
    seed=st.integers(0, 2**32 - 1),
)
def test_tidy_frame_lags_and_positions_for_any_lengths_and_order(lengths, layers, seed):
    rng = np.random.default_rng(seed)
    sequences = list(lengths)  # drawn in arbitrary order
    ids = [rng.integers(0, 5, lengths[s]) for s in sequences]
    norms = [rng.uniform(0.01, 5, (len(layers), lengths[s])).astype(np.float32) for s in sequences]
    frame = tidy_frame(
        sequences=sequences,
        token_ids=ids,
        norms=norms,
        layers=layers,
        token_text={i: f"t{i % 3}" for i in range(5)},
    )
    assert len(frame) == sum(lengths.values()) * len(layers)
    assert_lags_and_positions(frame, lengths)
    for s, x, n in zip(sequences, ids, norms, strict=True):
        rows = frame[frame["sequence"] == s]
        assert rows["layer"].tolist() == np.repeat(layers, len(x)).tolist()
        np.testing.assert_array_equal(rows["token_id"], np.tile(x, len(layers)))
        np.testing.assert_array_equal(rows["norm"], n.reshape(-1))


@MANY
@given(
    lengths=st.dictionaries(st.integers(0, 10_000), st.integers(1, 5), min_size=1, max_size=5),
    series=st.lists(
        st.tuples(st.sampled_from(["attn", "mlp", "resid"]), st.integers(0, 3), st.integers(-1, 3)),
        min_size=1,
        max_size=6,
        unique=True,
    ).map(sorted),
    seed=st.integers(0, 2**32 - 1),
)
def test_tidy_frame_lags_run_within_every_group(lengths, series, seed):
    rng = np.random.default_rng(seed)
    sequences = list(lengths)
    ids = [rng.integers(0, 5, lengths[s]) for s in sequences]
    norms = [rng.uniform(0.01, 5, (len(series), lengths[s])).astype(np.float32) for s in sequences]
    frame = tidy_frame(
        sequences=sequences,
        token_ids=ids,
        norms=norms,
        layers=[layer for _, layer, _ in series],
        token_text={i: f"t{i % 3}" for i in range(5)},
        groups={"site": [site for site, _, _ in series], "head": [h for _, _, h in series]},
    )
    assert list(frame.columns) == ["sequence", "site", "layer", "head", *extract.COLUMNS[2:]]
    assert frame["site"].dtype == "category" and frame["head"].dtype == np.int16
    keys = ["sequence", "site", "layer", "head"]
    groups = frame.groupby(keys, sort=False, observed=True)
    assert groups.ngroups == len(lengths) * len(series)
    for k in (1, 2):
        expected = groups["log_norm"].shift(k)
        pd.testing.assert_series_equal(frame[f"lag{k}"], expected, check_names=False)
    np.testing.assert_array_equal(groups["position"].max(), groups.size() - 1)
    for s, n in zip(sequences, norms, strict=True):
        np.testing.assert_array_equal(frame.loc[frame["sequence"] == s, "norm"], n.reshape(-1))


@FEW
@given(
    texts=CORPUS,
    order=st.randoms(use_true_random=False),
    batch_size=st.integers(1, 4),
    max_tokens=st.sampled_from([None, 6, 16]),
    side=st.sampled_from(["left", "right"]),
)
def test_sequence_is_the_corpus_index_whatever_batching_side_and_order(
    gpt2, tokenizer, alone, texts, order, batch_size, max_tokens, side
):
    shuffled = texts.copy()
    order.shuffle(shuffled)
    tokenizer.padding_side = side
    frame = extract.attention_norms(
        gpt2, tokenizer, shuffled, batch_size=batch_size, max_tokens=max_tokens, progress=False
    )
    ids = {i: tokenizer(text)["input_ids"] for i, text in enumerate(shuffled)}
    kept = {i: len(x) for i, x in ids.items() if shuffled[i].strip() and x}
    assert sorted(frame["sequence"].unique()) == sorted(kept)
    assert_lags_and_positions(frame, kept)
    for i in kept:
        rows = frame[frame["sequence"] == i]
        np.testing.assert_array_equal(rows["token_id"], np.tile(ids[i], N_LAYERS))
        got = rows.pivot(index="layer", columns="position", values="norm").to_numpy()
        np.testing.assert_allclose(got, alone(shuffled[i]), rtol=1e-5)


@FEW
@given(
    texts=CORPUS,
    layers=st.lists(st.integers(0, N_LAYERS - 1), min_size=1, max_size=3, unique=True),
)
def test_a_frame_read_back_from_parquet_equals_the_frame(gpt2, tokenizer, texts, layers):
    frame = extract.attention_norms(gpt2, tokenizer, texts, layers=layers, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "norms.parquet"
        frame.to_parquet(path)
        back = extract.read_frame(path)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.dtypes.equals(frame.dtypes)
    assert back.attrs == frame.attrs
