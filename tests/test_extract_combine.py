"""combine: frames of several models on one corpus become one frame with a model column;
frames of different corpora are refused unless allowed; lags stay within each group."""

import numpy as np
import pandas as pd
import pytest

from attnmag import AttnmagError, extract

TEXTS = ["Short.", "", "A longer text that runs on a little.", "Mid-length text here."]


@pytest.fixture
def frames(tiny_gpt2, tiny_llama, gpt2_tokenizer):
    a = extract.update_norms(
        tiny_gpt2, gpt2_tokenizer, TEXTS, sites=("attn", "mlp"), progress=False
    )
    b = extract.update_norms(
        tiny_llama, gpt2_tokenizer, TEXTS, sites=("attn", "mlp"), layers=[1], progress=False
    )
    return a, b


def test_combine_keeps_each_models_rows_and_provenance(frames, tmp_path):
    a, b = frames
    both = extract.combine({"gpt2-tiny": a, "llama-tiny": b})
    assert list(both.columns) == ["sequence", "model", "site", *extract.COLUMNS[1:]]
    assert both["model"].dtype == "category" and both["site"].dtype == "category"
    assert list(both["model"].cat.categories) == ["gpt2-tiny", "llama-tiny"]
    assert len(both) == len(a) + len(b)
    for name, frame in (("gpt2-tiny", a), ("llama-tiny", b)):
        part = both[both["model"] == name].drop(columns="model").reset_index(drop=True)
        pd.testing.assert_frame_equal(
            part.astype({"token": str, "site": str}), frame.astype({"token": str, "site": str})
        )
        assert both.attrs["models"][name] == frame.attrs
    assert both.attrs["texts_sha256"] == a.attrs["texts_sha256"]
    assert set(both["sequence"]) == {0, 2, 3}  # the corpus index; text 1 is blank
    both.to_parquet(tmp_path / "both.parquet")
    back = extract.read_frame(tmp_path / "both.parquet")
    pd.testing.assert_frame_equal(back, both)
    assert back.attrs["models"]["llama-tiny"]["layers"] == [1]


def test_lags_stay_within_sequence_and_group(frames):
    both = extract.combine({"a": frames[0], "b": frames[1]})
    keys = ["sequence", "model", "site", "layer"]
    shifted = both.groupby(keys, observed=True)["log_norm"]
    np.testing.assert_array_equal(both["lag1"], shifted.shift(1))
    np.testing.assert_array_equal(both["lag2"], shifted.shift(2))


def test_frames_of_different_corpora_are_refused_unless_allowed(tiny_gpt2, gpt2_tokenizer, frames):
    other = extract.update_norms(
        tiny_gpt2,
        gpt2_tokenizer,
        [*TEXTS[:3], "Another text."],
        sites=("attn", "mlp"),
        progress=False,
    )
    with pytest.raises(AttnmagError, match="measured on different corpora .*texts_sha256") as info:
        extract.combine({"a": frames[0], "b": other})
    assert "\n" not in str(info.value) and "allow_different_corpora=True" in str(info.value)
    both = extract.combine({"a": frames[0], "b": other}, allow_different_corpora=True)
    assert len(both) == len(frames[0]) + len(other) and "texts_sha256" not in both.attrs
    assert set(both.attrs["models"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a, b: {}, "a dict of at least one model name"),
        (lambda a, b: [a, b], "a dict of at least one model name"),
        (lambda a, b: {"a": a, "": b}, "model names must be non-empty strings"),
        (lambda a, b: {"a": a, "b": a[["sequence", "norm"]]}, "'b' is not an attnmag frame"),
        (lambda a, b: {"a": a, "b": b.drop(columns="site")}, "different grouping columns"),
        (
            lambda a, b: {"a": extract.combine({"x": a}), "b": b},
            "'a' already has a model column",
        ),
    ],
)
def test_frames_that_cannot_be_combined_get_one_line(frames, make, message):
    with pytest.raises(AttnmagError, match=message) as info:
        extract.combine(make(*frames))
    assert "\n" not in str(info.value)
