"""Token columns (surprisal, log_frequency, word_start, punct) and the sink columns
(sink_weight, sink_norm), each against an independent computation on each text alone."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from attnmag import extract, models
from attnmag.errors import AttnmagError

TEXTS = [
    "Hello there, world!",
    "A longer text, with more words in it; really (truly) long.",
    "x",
    "",
    "Short one.",
]
ALL = ("surprisal", "log_frequency", "word_start", "punct")
FAMILIES = ["tiny_gpt2", "tiny_llama", "tiny_gemma3"]


def reference_surprisal(model, ids: list[int]) -> np.ndarray:
    """-log p(token | before) from the full model's logits on the text alone; NaN first."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    nll = torch.nn.functional.cross_entropy(
        logits[:-1], torch.tensor(ids[1:], dtype=torch.long), reduction="none"
    )
    return np.concatenate([[np.nan], nll.numpy()])


def value_module(model, layer: int):
    """The module whose output holds the value vectors (GPT-2: c_attn's last third)."""
    if model.config.model_type == "gpt2":
        return model.transformer.h[layer].attn.c_attn
    return model.model.layers[layer].self_attn.v_proj


def reference_sink(model, ids: list[int], layer: int) -> tuple[np.ndarray, np.ndarray]:
    """sink_weight and sink_norm written out from eager attention probabilities, the value
    vectors at position 0 and the output projection's weight, on the text alone."""
    captured = {}
    gpt2 = model.config.model_type == "gpt2"
    attention = model.transformer.h[layer].attn if gpt2 else model.model.layers[layer].self_attn
    projection = attention.c_proj if gpt2 else attention.o_proj
    hooks = [
        value_module(model, layer).register_forward_hook(
            lambda m, a, out: captured.__setitem__("v", out[0].double())
        ),
        projection.register_forward_hook(
            lambda m, a, out: captured.__setitem__("a", out[0].double())
        ),
    ]
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    finally:
        for hook in hooks:
            hook.remove()
        model.set_attn_implementation("sdpa")
    alpha = out.attentions[layer][0].double()  # (heads, q, k)
    heads = alpha.shape[0]
    v = captured["v"]
    hidden = model.config.hidden_size
    if gpt2:
        v = v[:, 2 * hidden :]
    head_dim = hidden // heads if gpt2 else model.config.head_dim
    kv = v.shape[-1] // head_dim
    v0 = v[0].reshape(kv, head_dim).repeat_interleave(heads // kv, dim=0)  # (heads, head_dim)
    weight = projection.weight.detach().double()
    w = weight if gpt2 else weight.T  # (inputs, outputs)
    vector = torch.zeros(alpha.shape[1], w.shape[1], dtype=torch.float64)
    for h in range(heads):
        w_h = w[h * head_dim : (h + 1) * head_dim]
        vector += alpha[h, :, 0, None] * (v0[h] @ w_h)[None, :]
    norm = vector.norm(dim=-1)
    if model.config.model_type == "gemma3_text":  # scaled as the post-attention norm scales
        post = model.model.layers[layer].post_attention_layernorm
        a = captured["a"]
        vector = vector * (1.0 + post.weight.detach().double())
        norm = vector.norm(dim=-1) / torch.sqrt(a.pow(2).mean(-1) + post.eps)
    return alpha[:, :, 0].mean(0).numpy(), norm.numpy()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_surprisal_and_sink_equal_their_references(request, family, side, gpt2_tokenizer):
    model = request.getfixturevalue(family)
    gpt2_tokenizer.padding_side = side
    implementation = model.config._attn_implementation
    frame = extract.attention_norms(
        model, gpt2_tokenizer, TEXTS, batch_size=8, token_columns=["surprisal"], sink=True
    )
    assert model.config._attn_implementation == implementation
    for sequence, text in enumerate(TEXTS):
        if not text:
            assert not (frame["sequence"] == sequence).any()
            continue
        ids = gpt2_tokenizer(text)["input_ids"]
        rows = frame[frame["sequence"] == sequence]
        expected = reference_surprisal(model, ids)
        for layer, group in rows.groupby("layer"):
            np.testing.assert_allclose(group["surprisal"], expected, atol=1e-4, equal_nan=True)
            weight, norm = reference_sink(model, ids, int(layer))
            np.testing.assert_allclose(group["sink_weight"], weight, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(group["sink_norm"], norm, rtol=1e-5, atol=1e-9)
    assert frame.loc[frame["position"] == 0, "surprisal"].isna().all()
    assert frame.loc[frame["position"] > 0, "surprisal"].notna().all()
    assert np.allclose(frame.loc[frame["position"] == 0, "sink_weight"], 1.0)


def test_vocabulary_columns(tiny_gpt2, gpt2_tokenizer):
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, layers=[1], token_columns=ALL)
    first = frame[frame["sequence"] == 0]
    assert first["token"].astype(str).tolist() == ["Hello", " there", ",", " world", "!"]
    assert first["word_start"].tolist() == [True, True, False, True, False]
    assert first["punct"].tolist() == [False, False, True, False, True]
    counts = frame["token_id"].value_counts()
    expected = np.log(counts.loc[frame["token_id"]].to_numpy())
    np.testing.assert_allclose(frame["log_frequency"], expected, rtol=1e-6)
    assert frame.loc[frame["token"] == ",", "log_frequency"].iloc[0] == pytest.approx(math.log(2))
    assert list(frame.columns[-4:]) == list(ALL)
    assert "sink_weight" not in frame.columns


@pytest.mark.parametrize("clean_up", [False, True])
def test_each_token_decodes_as_batch_decode_decodes_it_alone(gpt2_tokenizer, clean_up):
    """The backend's one call (no clean-up) and the fallback (clean-up on) give the texts
    ``batch_decode`` gives, over the whole vocabulary (special tokens included)."""
    from attnmag.extract.tokens import decode_each

    gpt2_tokenizer.clean_up_tokenization_spaces = clean_up
    ids = list(range(len(gpt2_tokenizer)))
    assert decode_each(gpt2_tokenizer, ids) == gpt2_tokenizer.batch_decode([[i] for i in ids])


def test_columns_repeat_across_sites_and_heads(tiny_llama, gpt2_tokenizer):
    frame = extract.update_norms(
        tiny_llama,
        gpt2_tokenizer,
        TEXTS[:2],
        sites=("attn", "resid"),
        heads=True,
        layers=[0, 2],
        token_columns="surprisal,punct",
        sink=True,
    )
    per_token = frame.groupby(["sequence", "position"])["surprisal"].nunique(dropna=False)
    assert (per_token == 1).all()
    per_layer = frame.groupby(["sequence", "layer", "position"])["sink_norm"].nunique()
    assert (per_layer == 1).all()
    alone = extract.attention_norms(tiny_llama, gpt2_tokenizer, TEXTS[:2], layers=[0, 2], sink=True)
    whole = frame[(frame["site"] == "attn") & (frame["head"] == -1)].reset_index(drop=True)
    np.testing.assert_allclose(whole["sink_norm"], alone["sink_norm"], rtol=1e-6)


def test_sink_stops_after_the_last_attention(tiny_gpt2, gpt2_tokenizer):
    frame = extract.update_norms(
        tiny_gpt2, gpt2_tokenizer, TEXTS[:2], sites=("resid",), layers=[2], sink=True
    )
    alone = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS[:2], layers=[2], sink=True)
    np.testing.assert_allclose(frame["sink_norm"], alone["sink_norm"], rtol=1e-6)


def test_fit_with_token_columns(tiny_gpt2, gpt2_tokenizer, tmp_path):
    texts = [f"Text number {i}, with words; and more words (here) {i * 7}." for i in range(12)]
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, texts, token_columns=ALL, sink=True)
    table = models.fit(frame, "log_norm ~ position + surprisal + C(punct)").tidy
    assert set(table["layer"]) == {0, 1, 2}
    assert {"surprisal", "C(punct)[T.True]"} <= set(table["term"])
    folder = tmp_path / "norms"
    extract.write_shards(
        tiny_gpt2, gpt2_tokenizer, texts, folder, shard_texts=5, token_columns=ALL, sink=True
    )
    back = extract.read_shards(folder)
    pd.testing.assert_series_equal(back["surprisal"], frame["surprisal"], check_names=False)
    np.testing.assert_allclose(back["log_frequency"], frame["log_frequency"])
    np.testing.assert_allclose(back["sink_norm"], frame["sink_norm"], rtol=1e-5)
    from_folder = models.fit(folder, "log_norm ~ position + surprisal + C(punct)").tidy
    from_read = models.fit(back, "log_norm ~ position + surprisal + C(punct)").tidy
    assert from_folder["term"].tolist() == table["term"].tolist()
    np.testing.assert_allclose(from_folder["estimate"], from_read["estimate"], rtol=1e-6)
    np.testing.assert_allclose(from_folder["estimate"], table["estimate"], rtol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_columns": ["entropy"]}, "unknown token columns"),
        ({"token_columns": 3}, "token_columns must be"),
        ({"sink": "yes"}, "sink must be True or False"),
    ],
)
def test_bad_options(tiny_gpt2, gpt2_tokenizer, options, message):
    with pytest.raises(AttnmagError, match=message):
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, **options)
