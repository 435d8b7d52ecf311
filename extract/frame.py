"""The tidy long frame of per-token attention norms, and its Parquet round trip.

Holds:
- ``COLUMNS``: the frame's columns in order;
- ``tidy_frame``: per-sequence norm arrays -> the tidy frame (lags included);
- ``read_frame``: a Parquet file, or a folder of Parquet shards, -> the frame with provenance.

Usage::

    frame = tidy_frame(sequences=[0, 1], token_ids=[ids0, ids1], norms=[n0, n1],
                       layers=[0, 1], token_text={...})
    frame.to_parquet("norms.parquet")
    same = read_frame("norms.parquet")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from attnmag.errors import AttnmagError

COLUMNS = ["sequence", "layer", "position", "token_id", "token", "norm", "log_norm", "lag1", "lag2"]


def tidy_frame(
    *,
    sequences: Sequence[int],
    token_ids: Sequence[np.ndarray],
    norms: Sequence[np.ndarray],
    layers: Sequence[int],
    token_text: Mapping[int, str],
) -> pd.DataFrame:
    """Build the tidy frame: one row per sequence x layer x real token, sorted that way.

    ``norms[i]`` is a float32 array of shape ``(len(layers), len(token_ids[i]))``
    for the text whose corpus index is ``sequences[i]``; ``token_text`` maps each
    token id to its text. Each column is allocated once, in its final dtype, and
    filled text by text (the frame is the largest thing an extraction keeps).
    """
    layers = np.asarray(layers, dtype=np.int64)
    order = np.argsort(np.asarray(sequences, dtype=np.int64), kind="stable")
    lengths = np.array([len(token_ids[i]) for i in order], dtype=np.int64)
    rows = lengths * len(layers)
    ends = np.cumsum(rows)
    total = int(ends[-1]) if len(ends) else 0
    codes, categories = _token_codes([token_ids[i] for i in order], token_text)
    columns = {
        "sequence": np.repeat(np.asarray(sequences, dtype=np.int64)[order], rows),
        "layer": np.empty(total, dtype=np.int64),
        "position": np.empty(total, dtype=np.int64),
        "token_id": np.empty(total, dtype=np.int64),
        "token": np.empty(total, dtype=codes[0].dtype),
        "norm": np.empty(total, dtype=np.float32),
    }
    for k, i in enumerate(order):
        block = slice(int(ends[k] - rows[k]), int(ends[k]))
        shape = (len(layers), int(lengths[k]))
        columns["layer"][block].reshape(shape)[:] = layers[:, None]
        columns["position"][block].reshape(shape)[:] = np.arange(shape[1])
        columns["token_id"][block].reshape(shape)[:] = token_ids[i]
        columns["token"][block].reshape(shape)[:] = codes[k]
        columns["norm"][block] = np.asarray(norms[i], dtype=np.float32).reshape(-1)
    columns["token"] = pd.Categorical.from_codes(columns["token"], categories=categories)
    log_norm = columns["norm"].astype(np.float64)
    np.log(log_norm, out=log_norm)
    columns["log_norm"] = log_norm
    columns["lag1"] = _lag(log_norm, columns["position"], 1)
    columns["lag2"] = _lag(log_norm, columns["position"], 2)
    return pd.DataFrame(columns, copy=False)


def _token_codes(
    token_ids: Sequence[np.ndarray], token_text: Mapping[int, str]
) -> tuple[list[np.ndarray], pd.Index]:
    """Per text, the codes of its tokens' texts among the categories (ids may share a text)."""
    flat = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in token_ids] or [[]])
    vocab, inverse = np.unique(flat, return_inverse=True)
    texts = pd.Index([token_text[int(i)] for i in vocab])
    categories = texts.unique()
    dtype = np.min_scalar_type(-max(len(categories), 1))  # signed, as pandas keeps codes
    codes = categories.get_indexer(texts).astype(dtype)[inverse]
    return np.split(codes, np.cumsum([len(ids) for ids in token_ids])[:-1]), categories


def _token_categorical(ids: np.ndarray, token_text: Mapping[int, str]) -> pd.Categorical:
    """Token texts of ``ids`` as a categorical (ids may share a text)."""
    codes, categories = _token_codes([ids], token_text)
    return pd.Categorical.from_codes(codes[0], categories=categories)


def _lag(values: np.ndarray, position: np.ndarray, k: int) -> np.ndarray:
    """``values`` ``k`` rows earlier, NaN where ``position < k`` (rows sorted by sequence,
    layer and position, every position present)."""
    lagged = np.empty_like(values)
    lagged[:k] = np.nan
    lagged[k:] = values[:-k]
    lagged[position < k] = np.nan
    return lagged


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written with ``frame.to_parquet(path)`` (provenance in ``attrs`` kept).

    ``path`` may also be a folder of Parquet shards (``attnmag extract --out DIR``),
    read back as one frame in (sequence, layer, position) order.

    >>> frame = read_frame("norms.parquet")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise AttnmagError(f"no frame at {path}: expected a Parquet file or a folder of shards")
    if path.is_dir():
        from attnmag.extract.shards import read_shards

        return read_shards(path)
    frame = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise AttnmagError(f"{path} is not an attnmag frame: it lacks the columns {missing}")
    return frame
