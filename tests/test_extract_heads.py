"""Per-head contributions: the reference's head vectors add up to the attention update less
the bias, attnmag's head norms equal their norms, and the head frame's shape and lags."""

import numpy as np
import pytest
import torch
from reference import attention_updates, head_vectors

from attnmag import extract
from attnmag.extract.heads import head_factors

TEXT = "A considerably longer text, so that every head has something to attend to."


@pytest.mark.parametrize("name", ["tiny_gpt2", "tiny_llama", "tiny_gemma3"])
def test_head_vectors_add_up_and_their_norms_are_attnmags(name, gpt2_tokenizer, request, roughen):
    model = roughen(request.getfixturevalue(name))
    heads = head_vectors(model, gpt2_tokenizer, TEXT)
    for layer, update in zip(heads, attention_updates(model, gpt2_tokenizer, TEXT), strict=True):
        np.testing.assert_allclose(
            layer["heads"].sum(dim=1).numpy(), (update.double() - layer["bias"]).numpy(), atol=1e-5
        )
    # GPT-2's c_proj has a bias, which no head owns; Gemma 3's post-norm has a gain.
    assert (heads[0]["bias"].abs().max() > 0) == (name == "tiny_gpt2")
    frame = extract.attention_norms(model, gpt2_tokenizer, [TEXT], heads=True, progress=False)
    n_heads = model.config.num_attention_heads
    assert sorted(frame["head"].unique()) == list(range(-1, n_heads))
    by_head = frame[frame["head"] >= 0].pivot_table(
        index=["layer", "head"], columns="position", values="norm"
    )
    expected = np.concatenate([layer["heads"].norm(dim=-1).T.numpy() for layer in heads])
    np.testing.assert_allclose(by_head.to_numpy(), expected, rtol=1e-5)
    plain = extract.attention_norms(model, gpt2_tokenizer, [TEXT], progress=False)
    whole = frame[frame["head"] == -1].drop(columns="head").reset_index(drop=True)
    np.testing.assert_array_equal(whole["norm"].to_numpy(), plain["norm"].to_numpy())


def test_grouped_query_attention_has_one_row_per_query_head(tiny_llama, gpt2_tokenizer):
    assert tiny_llama.config.num_key_value_heads < tiny_llama.config.num_attention_heads
    frame = extract.attention_norms(
        tiny_llama, gpt2_tokenizer, [TEXT], heads=True, layers=[1], progress=False
    )
    assert set(frame["head"]) == {-1, 0, 1, 2, 3}
    assert frame.groupby("head").size().nunique() == 1


def test_head_frame_columns_dtypes_and_lags_within_head(tiny_gpt2, gpt2_tokenizer):
    texts = [TEXT, "Short one.", "Mid-length text with a few words."]
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, texts, heads=True, batch_size=2, progress=False
    )
    assert list(frame.columns) == extract.frame.frame_columns(["head"])
    assert frame["head"].dtype == np.int16 and frame["layer"].dtype == np.int16
    assert frame.attrs["heads"] is True and frame.attrs["sites"] == ["attn"]
    for _, group in frame.groupby(["sequence", "layer", "head"]):
        assert group["position"].tolist() == list(range(len(group)))
        y = group["log_norm"].to_numpy()
        np.testing.assert_array_equal(group["lag1"].to_numpy()[1:], y[:-1])
        np.testing.assert_array_equal(group["lag2"].to_numpy()[2:], y[:-2])
        assert np.isnan(group["lag1"].iloc[0]) and group["lag2"].iloc[:2].isna().all()


def test_head_factors_reproduce_each_heads_norm_with_a_gain():
    torch.manual_seed(1)
    projection = torch.nn.Linear(12, 5, bias=True)
    gain = torch.rand(5) + 0.5
    factors = head_factors(projection, n_heads=3, gain=gain)
    z = torch.randn(7, 12)
    for h in range(3):
        part = z[:, 4 * h : 4 * h + 4].double() @ projection.weight[:, 4 * h : 4 * h + 4].T.double()
        expected = (part * gain.double()).norm(dim=-1)
        got = (z[:, 4 * h : 4 * h + 4] @ factors[h]).norm(dim=-1)
        np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), rtol=1e-5)
