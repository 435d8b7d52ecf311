"""Reduced precision: bfloat16/float16 weights give float32 norms, accumulated in float32."""

import numpy as np
import pytest
import torch
from reference import attention_updates

from attnmag import extract

TEXTS = ["A short text.", "Another, somewhat longer text with a few more words in it."]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_weights_give_float32_norms_of_their_updates(dtype, tiny_llama, gpt2_tokenizer):
    reference = extract.attention_norms(tiny_llama, gpt2_tokenizer, TEXTS, progress=False)
    model = tiny_llama.to(dtype)
    frame = extract.attention_norms(model, gpt2_tokenizer, TEXTS, progress=False)
    assert frame["norm"].dtype == np.float32 and frame.attrs["dtype"] == str(dtype)[6:]
    relative = np.abs(frame["norm"] / reference["norm"] - 1)
    assert np.median(relative) < 0.02 and relative.max() > 1e-5  # close, yet not float32's
    for sequence, text in enumerate(TEXTS):
        half = attention_updates(model, gpt2_tokenizer, text)
        assert half[0].dtype == dtype
        # The norm of the half-precision update, summed in float64: float32 accumulation
        # matches it to float32 precision; accumulating in half precision would not.
        exact = np.stack([u.double().norm(dim=-1).numpy() for u in half])
        got = frame[frame["sequence"] == sequence].pivot(
            index="layer", columns="position", values="norm"
        )
        np.testing.assert_allclose(got.to_numpy(), exact, rtol=1e-5)


def test_load_model_casts_weights(tiny_gpt2, gpt2_tokenizer, tmp_path):
    tiny_gpt2.save_pretrained(tmp_path)
    gpt2_tokenizer.save_pretrained(tmp_path)
    model, tokenizer = extract.load_model(tmp_path, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    frame = extract.attention_norms(model, tokenizer, TEXTS, progress=False)
    assert frame.attrs["dtype"] == "bfloat16" and np.isfinite(frame["norm"]).all()
