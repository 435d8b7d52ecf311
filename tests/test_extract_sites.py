"""Sites: every site and every head equals the reference's reading of each text run alone,
batched and padded on either side, on every family; early stopping; options; the plain frame
unchanged; Parquet round trip; lags within each group."""

import numpy as np
import pandas as pd
import pytest
import torch
from reference import Untouchable, head_vectors, model_blocks, site_vectors

from attnmag import AttnmagError, extract
from attnmag.extract.frame import GROUP_COLUMNS, group_columns

TEXTS = [
    "Short.",
    "A longer text that runs on, so that padding matters for the shorter ones.",
    "",
    "Hello <|endoftext|> world",
    "Ends with the pad id<|endoftext|>",
]
MODELS = ["tiny_gpt2", "tiny_llama", "tiny_gemma3", "tiny_neox", "tiny_opt"]


def series(frame: pd.DataFrame) -> dict[tuple, np.ndarray]:
    """``(sequence, site, head)`` -> its ``(layers, positions)`` norms (rows are in layer,
    then position order within a sequence, site and head)."""
    found = {}
    for key, rows in frame.groupby(["sequence", "site", "head"], observed=True, sort=False):
        found[key] = rows["norm"].to_numpy().reshape(rows["layer"].nunique(), -1)
    return found


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_every_site_and_head_equals_each_text_alone(name, side, gpt2_tokenizer, request, roughen):
    model = roughen(request.getfixturevalue(name))
    gpt2_tokenizer.padding_side = side
    frame = extract.update_norms(
        model, gpt2_tokenizer, TEXTS, heads=True, batch_size=8, progress=False
    )
    assert np.isfinite(frame["norm"]).all()
    assert list(frame["site"].cat.categories) == ["attn", "mlp", "resid"]
    n_heads = model.config.num_attention_heads
    got = series(frame)
    for sequence, text in enumerate(TEXTS):
        if not text:
            assert sequence not in set(frame["sequence"])
            continue
        alone = site_vectors(model, gpt2_tokenizer, text)
        for site, vectors in alone.items():
            expected = np.stack([v.double().norm(dim=-1).numpy() for v in vectors])
            np.testing.assert_allclose(got[sequence, site, -1], expected, rtol=1e-5)
        heads = head_vectors(model, gpt2_tokenizer, text)
        for head in range(n_heads):
            expected = np.stack([layer["heads"][:, head].norm(dim=-1).numpy() for layer in heads])
            np.testing.assert_allclose(got[sequence, "attn", head], expected, rtol=1e-5)


def calls_per_module(model) -> tuple[dict, list]:
    """Counts of calls to each block's attention and MLP modules and to each block."""
    counts: dict = {}
    handles = []
    for i, block in enumerate(model_blocks(model)):
        for label, module in (("block", block), ("attn", block.attn), ("mlp", block.mlp)):
            handles.append(
                module.register_forward_pre_hook(
                    lambda m, a, key=(label, i): counts.__setitem__(key, counts.get(key, 0) + 1)
                )
            )
    return counts, handles


@pytest.mark.parametrize(
    ("sites", "heads", "reached"),
    [
        (("resid",), False, {("block", 0)}),
        (("attn",), False, {("block", 0), ("block", 1), ("attn", 0), ("mlp", 0), ("attn", 1)}),
        (("attn",), True, {("block", 0), ("block", 1), ("attn", 0), ("mlp", 0), ("attn", 1)}),
        (
            ("attn", "mlp", "resid"),
            False,
            {("block", 0), ("block", 1), ("attn", 0), ("mlp", 0), ("attn", 1), ("mlp", 1)},
        ),
    ],
)
def test_forward_stops_after_the_last_layers_last_site(
    sites, heads, reached, tiny_gpt2, gpt2_tokenizer
):
    counts, handles = calls_per_module(tiny_gpt2)
    try:
        frame = extract.update_norms(
            tiny_gpt2,
            gpt2_tokenizer,
            ["One text.", "Two."],
            sites=sites,
            heads=heads,
            layers=[0, 1] if sites != ("resid",) else [0],
            batch_size=8,
            progress=False,
        )
    finally:
        for handle in handles:
            handle.remove()
    assert set(counts) == reached and set(counts.values()) == {1}
    assert set(frame["site"]) == set(sites)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sites": ("attn", "ffn")}, r"unknown sites \['ffn'\]; the sites are attn, mlp, resid"),
        ({"sites": ()}, "sites is empty"),
        ({"sites": 3}, "sites must be a list of site names"),
        ({"sites": ("mlp",), "heads": True}, "heads=True splits the attention update"),
        ({"heads": "yes"}, "heads must be True or False, not 'yes'"),
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1, not 0"),
    ],
)
def test_bad_site_options_get_one_line_before_any_work(tiny_gpt2, options, message):
    with pytest.raises(AttnmagError, match=message) as info:
        extract.update_norms(tiny_gpt2, Untouchable(), TEXTS, progress=False, **options)
    assert "\n" not in str(info.value)


def test_a_frame_without_the_new_options_is_todays(tiny_llama, gpt2_tokenizer):
    plain = extract.attention_norms(tiny_llama, gpt2_tokenizer, TEXTS, progress=False)
    assert list(plain.columns) == extract.COLUMNS and group_columns(plain) == ["layer"]
    assert plain.dtypes.astype(str).tolist() == [
        "int32",
        "int16",
        "int32",
        "int32",
        "category",
        "float32",
        "float32",
        "float32",
        "float32",
    ]
    attn = extract.update_norms(tiny_llama, gpt2_tokenizer, TEXTS, sites="attn", progress=False)
    assert list(attn.columns) == ["sequence", "site", *extract.COLUMNS[1:]]
    pd.testing.assert_frame_equal(attn.drop(columns="site"), plain)
    assert extract.GROUP_COLUMNS == GROUP_COLUMNS == ("model", "site", "layer", "head")


def test_site_and_head_columns_survive_parquet(tiny_opt, gpt2_tokenizer, tmp_path):
    frame = extract.update_norms(
        tiny_opt,
        gpt2_tokenizer,
        TEXTS,
        sites=("resid", "mlp", "attn"),
        heads=True,
        layers=[2],
        progress=False,
    )
    frame.to_parquet(tmp_path / "norms.parquet")
    back = extract.read_frame(tmp_path / "norms.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == frame.attrs and back.attrs["sites"] == ["attn", "mlp", "resid"]


def test_lags_run_within_sequence_site_layer_and_head(tiny_neox, gpt2_tokenizer):
    frame = extract.update_norms(
        tiny_neox, gpt2_tokenizer, TEXTS, heads=True, batch_size=2, progress=False
    )
    keys = ["sequence", *group_columns(frame)]
    assert keys == ["sequence", "site", "layer", "head"]
    shifted = frame.groupby(keys, observed=True)["log_norm"]
    np.testing.assert_array_equal(frame["lag1"], shifted.shift(1))
    np.testing.assert_array_equal(frame["lag2"], shifted.shift(2))
    assert (frame.groupby(keys, observed=True)["position"].min() == 0).all()
    heads = frame[frame["site"] == "attn"]["head"]
    assert set(heads) == set(range(-1, 4)) and set(frame[frame["site"] != "attn"]["head"]) == {-1}


def test_the_model_is_left_as_it_was(tiny_gemma3, gpt2_tokenizer):
    before = {k: v.clone() for k, v in tiny_gemma3.state_dict().items()}
    extract.update_norms(tiny_gemma3, gpt2_tokenizer, TEXTS, heads=True, progress=False)
    for module in tiny_gemma3.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    for key, value in tiny_gemma3.state_dict().items():
        assert torch.equal(value, before[key])
