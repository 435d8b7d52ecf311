"""The tidy long frame of per-token attention norms, and its Parquet round trip.

Holds:
- ``COLUMNS``: the frame's columns in order;
- ``tidy_frame``: per-sequence norm arrays -> the tidy frame (lags included);
- ``add_lags``: ``lag1``/``lag2`` from ``log_norm`` within (sequence, layer);
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
    token id to its text.
    """
    layers = np.asarray(layers, dtype=np.int64)
    order = np.argsort(np.asarray(sequences, dtype=np.int64), kind="stable")
    ids = [np.asarray(token_ids[i], dtype=np.int64) for i in order]
    lengths = [len(a) for a in ids]
    seq_col = np.repeat(
        np.asarray(sequences, dtype=np.int64)[order], np.multiply(lengths, len(layers))
    )
    layer_col = np.concatenate([np.repeat(layers, n) for n in lengths])
    pos_col = np.concatenate([np.tile(np.arange(n), len(layers)) for n in lengths])
    id_col = np.concatenate([np.tile(a, len(layers)) for a in ids])
    norm_col = np.concatenate([np.asarray(norms[i], dtype=np.float32).reshape(-1) for i in order])
    frame = pd.DataFrame(
        {
            "sequence": seq_col,
            "layer": layer_col.astype(np.int64),
            "position": pos_col.astype(np.int64),
            "token_id": id_col,
            "token": _token_categorical(id_col, token_text),
            "norm": norm_col,
        }
    )
    frame["log_norm"] = np.log(frame["norm"].to_numpy(np.float64))
    return add_lags(frame)


def _token_categorical(ids: np.ndarray, token_text: Mapping[int, str]) -> pd.Categorical:
    """Token texts as a categorical, built per distinct id (ids may share a text)."""
    vocab, inverse = np.unique(ids, return_inverse=True)
    texts = pd.Index([token_text[int(i)] for i in vocab])
    categories = texts.unique()
    codes = categories.get_indexer(texts)[inverse]
    return pd.Categorical.from_codes(codes, categories=categories)


def add_lags(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``lag1``/``lag2``: ``log_norm`` one and two positions earlier, same sequence and layer.

    Expects every position of each (sequence, layer) to be present and sorted, as
    ``tidy_frame`` makes them; NaN where the earlier position does not exist.
    """
    grouped = frame.groupby(["sequence", "layer"], sort=False)["log_norm"]
    frame["lag1"] = grouped.shift(1).astype(np.float64)
    frame["lag2"] = grouped.shift(2).astype(np.float64)
    return frame


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
