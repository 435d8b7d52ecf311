"""What the safety page claims, checked: ranks with different batch sizes merge into one
process's frame up to float32 rounding, and a formula is evaluated as Python.
"""

import numpy as np
import pandas as pd

from attnmag import extract, models
from attnmag.extract.shards import read_shards, write_shards

TEXTS = [f"Text number {i} says {'more and ' * (i % 5)}something." for i in range(11)]


def test_ranks_with_other_batch_sizes_equal_one_process_to_float32_rounding(
    tiny_gpt2, gpt2_tokenizer, tmp_path
):
    folder = tmp_path / "norms"
    for rank, batch_size in ((0, 4), (1, 2)):
        write_shards(
            tiny_gpt2,
            gpt2_tokenizer,
            TEXTS,
            folder,
            batch_size=batch_size,
            shard_texts=3,
            rank=rank,
            world_size=2,
            progress=False,
        )
    merged = read_shards(folder)
    alone = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    pd.testing.assert_frame_equal(
        merged.drop(columns=["norm", "log_norm", "lag1", "lag2"]),
        alone.drop(columns=["norm", "log_norm", "lag1", "lag2"]),
    )
    relative = np.abs(merged["norm"] / alone["norm"] - 1)
    assert relative.max() <= 1e-6


def test_a_formula_is_evaluated_as_python(tiny_gpt2, gpt2_tokenizer, tmp_path):
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    flag = tmp_path / "ran"
    # A term is a Python expression: builtins and numpy are reachable, and so is any module
    # (here one writing a file), like pandas.eval's expressions.
    written = f"__import__('pathlib').Path({str(flag)!r}).write_text('x')"
    formula = f"log_norm ~ position + np.log1p(position) + I(np.sqrt(position) * {written})"
    terms = set(models.fit(frame, formula, n_jobs=1).tidy["term"])
    assert "np.log1p(position)" in terms
    assert flag.read_text() == "x"
