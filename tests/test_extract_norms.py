"""Extraction: padding invariance, agreement with a plain hook, layers, order, lags, hygiene,
eval mode, and options checked before any work."""

import numpy as np
import pandas as pd
import pytest
import torch
from reference import Untouchable, attention_updates

from attnmag import AttnmagError, extract
from attnmag.extract.adapters import base_model

TEXTS = [
    "Short.",
    "A considerably longer text that runs on and on, so that padding really matters "
    "for the shorter ones in the same batch, and positions differ widely.",
    "Mid-length text with a few words.",
    "",
    "Another one, of a length somewhere in between the others.",
    # GPT-2's pad id stands in for padding (it is also eos and bos): inside a text, first
    # and last, these tokens are real, so only the attention mask can tell them from padding.
    "Hello <|endoftext|> world",
    "<|endoftext|>Starts with the pad id.",
    "Ends with the pad id<|endoftext|>",
]
PAD_ID = 50256
MODELS = ["tiny_gpt2", "tiny_llama", "tiny_gemma3", "tiny_neox", "tiny_opt"]


def test_some_texts_hold_the_pad_id_first_inside_and_last(gpt2_tokenizer):
    ids = [gpt2_tokenizer(text)["input_ids"] for text in TEXTS[-3:]]
    assert gpt2_tokenizer.eos_token_id == PAD_ID and gpt2_tokenizer.pad_token_id is None
    assert PAD_ID in ids[0][1:-1] and ids[1][0] == PAD_ID and ids[2][-1] == PAD_ID


def alone(model, tokenizer, text: str) -> np.ndarray:
    """Norms of one unpadded text from plain forward hooks (float64 sums)."""
    return np.stack(
        [u.double().norm(dim=-1).numpy() for u in attention_updates(model, tokenizer, text)]
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_norms_equal_each_text_alone(name, side, gpt2_tokenizer, request):
    model = request.getfixturevalue(name)
    gpt2_tokenizer.padding_side = side
    frame = extract.attention_norms(model, gpt2_tokenizer, TEXTS, batch_size=8, progress=False)
    assert np.isfinite(frame["norm"]).all()
    for sequence, text in enumerate(TEXTS):
        if not text:
            assert sequence not in set(frame["sequence"])
            continue
        expected = alone(model, gpt2_tokenizer, text)
        got = (
            frame[frame["sequence"] == sequence]
            .pivot(index="layer", columns="position", values="norm")
            .to_numpy()
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_sequence_ids_follow_corpus_order_and_layers_select(tiny_llama, gpt2_tokenizer):
    frame = extract.attention_norms(
        tiny_llama, gpt2_tokenizer, TEXTS, batch_size=2, layers=[0, 1], progress=False
    )
    assert sorted(frame["layer"].unique()) == [0, 1]
    lengths = frame[frame["layer"] == 0].groupby("sequence")["position"].size()
    expected = {i: len(gpt2_tokenizer(t)["input_ids"]) for i, t in enumerate(TEXTS) if t}
    assert lengths.to_dict() == expected
    first = frame[(frame["sequence"] == 4) & (frame["layer"] == 0)]
    assert first["token_id"].tolist() == gpt2_tokenizer(TEXTS[4])["input_ids"]
    assert "".join(first["token"].astype(str)) == TEXTS[4]
    assert list(frame.columns) == extract.COLUMNS
    assert frame.attrs["n_skipped_empty"] == 1 and frame.attrs["layers"] == [0, 1]


def test_lags_are_log_norm_shifted_within_sequence_and_layer(tiny_gpt2, gpt2_tokenizer):
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    for _, group in frame.groupby(["sequence", "layer"]):
        y = group["log_norm"].to_numpy()
        np.testing.assert_array_equal(group["lag1"].to_numpy()[1:], y[:-1])
        np.testing.assert_array_equal(group["lag2"].to_numpy()[2:], y[:-2])
        assert np.isnan(group["lag1"].iloc[0]) and group["lag2"].iloc[:2].isna().all()
    np.testing.assert_allclose(frame["log_norm"], np.log(frame["norm"].astype(np.float64)))


def test_no_two_columns_of_the_frame_share_an_allocation(tiny_gpt2, gpt2_tokenizer):
    """Each numeric column is an array of its own, so a column dropped frees its memory."""

    def allocation(values: np.ndarray) -> np.ndarray:
        while isinstance(values.base, np.ndarray):
            values = values.base
        return values

    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, heads=True, progress=False)
    numeric = [c for c in frame.columns if c != "token"]
    owners = [id(allocation(frame[c].to_numpy())) for c in numeric]
    assert len(set(owners)) == len(numeric), dict(zip(numeric, owners, strict=True))


def test_tidy_frame_matches_a_pandas_construction_for_short_and_shuffled_texts():
    """Texts of 1, 2 and 4 tokens given out of order; two ids share a text."""
    from attnmag.extract.frame import FRAME_DTYPES, tidy_frame

    rng = np.random.default_rng(0)
    sequences, ids = [7, 2, 5], [np.array([3]), np.array([1, 2, 3, 4]), np.array([4, 1])]
    layers = [0, 3]
    norms = [rng.uniform(0.1, 2, (2, len(x))).astype(np.float32) for x in ids]
    text = {1: "a", 2: "b", 3: "a", 4: "c"}
    frame = tidy_frame(
        sequences=sequences, token_ids=ids, norms=norms, layers=layers, token_text=text
    )
    expected = pd.DataFrame(
        [
            (s, layer, p, x[p], text[x[p]], n[j, p])
            for s, x, n in sorted(zip(sequences, ids, norms, strict=True), key=lambda t: t[0])
            for j, layer in enumerate(layers)
            for p in range(len(x))
        ],
        columns=["sequence", "layer", "position", "token_id", "token", "norm"],
    )
    # log_norm: ln(norm) in float64, rounded to float32 (the documented dtypes).
    expected["log_norm"] = np.log(expected["norm"].astype(np.float32).astype(np.float64))
    shifted = expected.groupby(["sequence", "layer"])["log_norm"]
    expected["lag1"], expected["lag2"] = shifted.shift(1), shifted.shift(2)
    assert list(frame.columns) == extract.COLUMNS
    assert frame["token"].dtype == "category" and frame["norm"].dtype == np.float32
    pd.testing.assert_frame_equal(
        frame.assign(token=frame["token"].astype(str)),
        expected.astype({c: FRAME_DTYPES.get(c, str) for c in expected.columns}),
    )


def test_long_texts_are_truncated_and_counted(tiny_gpt2, gpt2_tokenizer):
    texts = ["word " * 300, "short text"]
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, texts, progress=False)
    assert frame.attrs["n_truncated"] == 1
    assert frame.groupby("sequence")["position"].max().to_dict() == {0: 127, 1: 1}


def test_simulated_out_of_memory_halves_the_batch(tiny_llama, gpt2_tokenizer, monkeypatch):
    base = base_model(tiny_llama)
    original, sizes = base.forward, []

    def flaky(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(base, "forward", flaky)
    frame = extract.attention_norms(tiny_llama, gpt2_tokenizer, TEXTS, batch_size=4, progress=False)
    monkeypatch.undo()
    assert sizes[:3] == [4, 2, 1] and max(sizes[3:]) == 1
    reference = extract.attention_norms(tiny_llama, gpt2_tokenizer, TEXTS, progress=False)
    pd.testing.assert_frame_equal(frame[extract.COLUMNS], reference[extract.COLUMNS])


def test_nothing_of_the_callers_changes(tiny_gpt2, gpt2_tokenizer):
    gpt2_tokenizer.padding_side = "right"
    implementation = tiny_gpt2.config._attn_implementation
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    with pytest.raises(AttnmagError, match="list of str"):
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, [1, 2], progress=False)
    with pytest.raises(RuntimeError):
        with_failing_block(tiny_gpt2, gpt2_tokenizer)
    for module in tiny_gpt2.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert tiny_gpt2.config._attn_implementation == implementation
    assert gpt2_tokenizer.padding_side == "right" and gpt2_tokenizer.pad_token is None


def with_failing_block(model, tokenizer):
    """A run that raises inside the forward pass, after the hooks are in place."""

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    handle = model.transformer.h[1].mlp.register_forward_pre_hook(fail)
    try:
        extract.attention_norms(model, tokenizer, TEXTS, progress=False)
    finally:
        handle.remove()


def dropout_gpt2() -> torch.nn.Module:
    """A tiny GPT-2 with heavy dropout, left in training mode, one block in eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=50257,
        n_positions=128,
        n_embd=32,
        n_layer=3,
        n_head=4,
        resid_pdrop=0.5,
        embd_pdrop=0.5,
        attn_pdrop=0.5,
    )
    model = GPT2LMHeadModel(config).train()
    model.transformer.h[2].eval()
    return model


def flags(model: torch.nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def test_measured_in_eval_mode_and_the_callers_training_flags_come_back(gpt2_tokenizer):
    model = dropout_gpt2()
    before = flags(model)
    assert before[""] and not before["transformer.h.2"]
    first = extract.attention_norms(model, gpt2_tokenizer, TEXTS, progress=False)
    assert flags(model) == before
    second = extract.attention_norms(model, gpt2_tokenizer, TEXTS, progress=False)
    assert flags(model) == before
    pd.testing.assert_frame_equal(first[extract.COLUMNS], second[extract.COLUMNS])
    evaluated = extract.attention_norms(
        dropout_gpt2().eval(), gpt2_tokenizer, TEXTS, progress=False
    )
    pd.testing.assert_frame_equal(first[extract.COLUMNS], evaluated[extract.COLUMNS])
    with pytest.raises(RuntimeError, match="boom"):
        with_failing_block(model, gpt2_tokenizer)
    assert flags(model) == before
    with torch.no_grad():  # the dropout is real: training mode is noisy
        ids = torch.tensor([gpt2_tokenizer(TEXTS[1])["input_ids"]])
        assert not torch.equal(model(ids).logits, model(ids).logits)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1, not 0"),
        ({"batch_size": -3}, "batch_size must be a whole number of at least 1, not -3"),
        ({"batch_size": 2.5}, "batch_size must be a whole number of at least 1, not 2.5"),
        ({"batch_size": True}, "batch_size must be a whole number of at least 1, not True"),
        ({"max_tokens": 0}, r"max_tokens must be a whole number of at least 1 or None \("),
        ({"max_tokens": -1}, "max_tokens must be .* not -1"),
        ({"max_length": 0}, "max_length must be .* not 0"),
        ({"layers": []}, "layers is empty: name at least one layer index, or None for all"),
        ({"layers": iter([])}, "layers is empty"),
        ({"layers": [0, 3]}, r"layers \[3\] do not exist: the model has layers 0..2"),
        ({"layers": [-1]}, r"layers \[-1\] do not exist: the model has layers 0..2"),
        ({"layers": "0"}, "layers must be a list of layer indices"),
        ({"layers": [0.5]}, "layers must be a list of layer indices"),
        ({"texts": "one string"}, "texts must be .* or a list of str"),
        ({"texts": 7}, "texts must be .* or a list of str"),
        ({"texts": [b"bytes"]}, "texts must be .* or a list of str"),
    ],
)
def test_bad_options_get_one_line_before_any_work(tiny_gpt2, options, message):
    options = {"texts": TEXTS, **options}
    texts = options.pop("texts")
    with pytest.raises(AttnmagError, match=message) as info:
        extract.attention_norms(tiny_gpt2, Untouchable(), texts, progress=False, **options)
    assert "\n" not in str(info.value)


def test_any_iterable_of_str_is_a_corpus(tiny_gpt2, gpt2_tokenizer):
    expected = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    for texts in ((t for t in TEXTS), tuple(TEXTS), pd.Series(TEXTS), iter(TEXTS)):
        frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, texts, progress=False)
        pd.testing.assert_frame_equal(frame[extract.COLUMNS], expected[extract.COLUMNS])
        assert frame.attrs["n_texts"] == len(TEXTS)
    with pytest.raises(AttnmagError, match="the corpus is empty"):
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, (t for t in []), progress=False)


def test_layers_given_as_any_iterable_of_ints(tiny_gpt2, gpt2_tokenizer):
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, TEXTS[:2], layers=np.array([2, 0, 2]), progress=False
    )
    assert sorted(frame["layer"].unique()) == [0, 2] and frame.attrs["layers"] == [0, 2]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("gathered", [False, True])  # a CPU's buffer, and a GPU's gather
def test_text_blocks_hold_each_texts_rows_in_order(side, gathered):
    from attnmag.extract.batching import pad_batch
    from attnmag.extract.norms import real_token_norms, text_blocks

    rng = np.random.default_rng(1)
    lengths = [5, 1, 3, 5]
    inputs = pad_batch([[1] * n for n in lengths], pad_id=0, side=side)
    norms = torch.from_numpy(rng.uniform(size=(3, len(lengths), 5)).astype(np.float32))
    mask = inputs["attention_mask"].bool().numpy()
    values = real_token_norms(norms, lengths, side=side) if gathered else norms
    blocks = text_blocks(values.numpy(), lengths, side)
    assert len(blocks) == len(lengths)
    for b, block in enumerate(blocks):
        np.testing.assert_array_equal(block, norms.numpy()[:, b, mask[b]])
