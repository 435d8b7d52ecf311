"""The tidy long frame of per-token norms: its columns and how it is built.

Holds:
- ``COLUMNS``: the columns of a plain frame (one model, the attention update), in order;
- ``GROUP_COLUMNS``: the grouping columns a frame may have (``layer`` always; ``model``,
  ``site`` and ``head`` when asked for); lags, fits and figures run within each group;
- ``group_columns``, ``frame_columns``: the grouping columns a frame has, and the columns in
  order of a frame with given optional grouping columns;
- ``SITES``, ``TOKEN_COLUMNS`` (with ``TOKEN_DTYPES``), ``SINK_COLUMNS``: the sites a
  ``site`` column names, and the optional per-token and sink columns;
- ``FRAME_DTYPES``: the in-memory dtype of each numeric column;
- ``DERIVED``, ``derived_columns``: the columns computed from ``norm`` and ``position``
  (``log_norm``, ``lag1``, ``lag2``), which shards do not store;
- ``tidy_frame``: per-sequence norm arrays -> the tidy frame (lags included);
- ``frame_from_columns``: the same from the ``norm`` column already in frame order.

``attnmag.extract.shards.read_frame`` reads a saved frame back.

Usage::

    frame = tidy_frame(sequences=[0, 1], token_ids=[ids0, ids1], norms=[n0, n1],
                       layers=[0, 1], token_text={...})
    frame.to_parquet("norms.parquet")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "DERIVED",
    "FRAME_DTYPES",
    "GROUP_COLUMNS",
    "SINK_COLUMNS",
    "SITES",
    "TOKEN_COLUMNS",
    "TOKEN_DTYPES",
    "derived_columns",
    "frame_columns",
    "frame_from_columns",
    "group_columns",
    "tidy_frame",
]

COLUMNS = ["sequence", "layer", "position", "token_id", "token", "norm", "log_norm", "lag1", "lag2"]
GROUP_COLUMNS = ("model", "site", "layer", "head")
#: The sites a ``site`` column names, in the order of a block's forward pass.
SITES = ("attn", "mlp", "resid")
#: The optional per-token columns (``token_columns=``) and their dtypes.
TOKEN_COLUMNS = ("surprisal", "log_frequency", "word_start", "punct")
TOKEN_DTYPES = {
    "surprisal": np.float32,
    "log_frequency": np.float32,
    "word_start": np.bool_,
    "punct": np.bool_,
}
#: The columns ``sink=True`` adds: the first token's share of attention and of the update.
SINK_COLUMNS = ("sink_weight", "sink_norm")
GROUP_DTYPES = {"model": "category", "site": "category", "layer": "int16", "head": "int16"}
#: ``log_norm``, ``lag1`` and ``lag2``: float32, as exact as the float32 ``norm`` they come
#: from (fits cast to float64 where statsmodels needs it).
DERIVED_DTYPE = np.float32
#: The in-memory dtype of each numeric column (``token``, ``site`` and ``model`` are
#: categorical: their codes are the smallest signed integers that hold the categories).
FRAME_DTYPES = {
    "sequence": np.int32,
    "layer": np.int16,
    "head": np.int16,
    "position": np.int32,
    "token_id": np.int32,
    "norm": np.float32,
    "log_norm": DERIVED_DTYPE,
    "lag1": DERIVED_DTYPE,
    "lag2": DERIVED_DTYPE,
}
#: The columns a shard stores: every column but those ``derived_columns`` recomputes.
DERIVED = ("log_norm", "lag1", "lag2")


def group_columns(frame: pd.DataFrame) -> list[str]:
    """The grouping columns ``frame`` has, in ``GROUP_COLUMNS`` order.

    Parameters
    ----------
    frame : pandas.DataFrame
        A tidy frame.

    Returns
    -------
    list of str
        Its columns among ``model``, ``site``, ``layer``, ``head``.

    Examples
    --------
    >>> group_columns(pd.DataFrame(columns=["sequence", "site", "layer", "position"]))
    ['site', 'layer']
    """
    return [column for column in GROUP_COLUMNS if column in frame.columns]


def frame_columns(groups: Sequence[str] = ()) -> list[str]:
    """The frame's columns in order, with the optional grouping columns ``groups`` placed as
    ``GROUP_COLUMNS`` orders them.

    Parameters
    ----------
    groups : sequence of str
        Optional grouping columns the frame has (of ``model``, ``site``, ``head``).

    Returns
    -------
    list of str
        The columns, ``sequence`` first.

    Examples
    --------
    >>> frame_columns(["head"])[:4]
    ['sequence', 'layer', 'head', 'position']
    """
    present = [c for c in GROUP_COLUMNS if c == "layer" or c in groups]
    return ["sequence", *present, *COLUMNS[2:]]


def tidy_frame(
    *,
    sequences: Sequence[int],
    token_ids: Sequence[np.ndarray],
    norms: Sequence[np.ndarray],
    layers: Sequence[int],
    token_text: Mapping[int, str],
    groups: Mapping[str, Sequence] | None = None,
) -> pd.DataFrame:
    """Build the tidy frame: one row per sequence x series x real token, sorted that way.

    A series is one row of each ``norms[i]``. Lags run within sequence x series.

    Parameters
    ----------
    sequences : sequence of int
        The corpus index of each text.
    token_ids : sequence of numpy.ndarray
        Each text's token ids.
    norms : sequence of numpy.ndarray
        Each text's norms: float32, shape ``(len(layers), len(token_ids[i]))``.
    layers : sequence of int
        Each series' layer.
    token_text : mapping of int to str
        Each token id's text.
    groups : mapping of str to sequence, optional
        Each series' other grouping columns, one value per series: ``site`` (names, or a
        ``pd.Categorical`` whose categories the column keeps) and ``head`` (ints).

    Returns
    -------
    pandas.DataFrame
        The columns of ``frame_columns(groups)``, in the dtypes of ``FRAME_DTYPES``.

    Examples
    --------
    >>> frame = tidy_frame(sequences=[0], token_ids=[np.array([7, 8])],
    ...                    norms=[np.array([[1.0, 2.0]])], layers=[0], token_text={7: "a", 8: "b"})
    >>> frame[["position", "token", "norm", "lag1"]].to_dict("list")
    {'position': [0, 1], 'token': ['a', 'b'], 'norm': [1.0, 2.0], 'lag1': [nan, 0.0]}
    """
    order = np.argsort(np.asarray(sequences, dtype=np.int64), kind="stable")
    lengths = np.array([len(token_ids[i]) for i in order], dtype=np.int64)
    flat_ids = np.concatenate([np.asarray(token_ids[i]).reshape(-1) for i in order] or [[]])
    flat_norms = np.concatenate(
        [np.asarray(norms[i], dtype=np.float32).reshape(-1) for i in order] or [[]]
    )
    return frame_from_columns(
        sequences=np.asarray(sequences, dtype=np.int64)[order],
        lengths=lengths,
        token_ids=flat_ids,
        norm=flat_norms.astype(np.float32, copy=False),
        layers=layers,
        token_text=token_text,
        groups=groups,
    )


def frame_from_columns(
    *,
    sequences: np.ndarray,
    lengths: np.ndarray,
    token_ids: np.ndarray,
    norm: np.ndarray,
    layers: Sequence[int],
    token_text: Mapping[int, str],
    groups: Mapping[str, Sequence] | None = None,
) -> pd.DataFrame:
    """The tidy frame from its texts' token ids and its ``norm`` column in frame order.

    A text's rows are its series one after another, each its tokens in order, so its rows
    of a column are a ``(series, length)`` block: each block is filled by one broadcast copy
    of the text's token slice (positions, token ids, token codes) or of the per-series
    values (layer, head, site). No row-to-token index is built or gathered through: on
    frames with many series per text (per-head rows) that index and its gathers cost more
    memory traffic than the copies.

    Parameters
    ----------
    sequences : numpy.ndarray
        The texts' corpus indices, ascending.
    lengths : numpy.ndarray
        Each text's token count.
    token_ids : numpy.ndarray
        The texts' token ids, concatenated in ``sequences`` order.
    norm : numpy.ndarray
        float32, the ``norm`` column: per text, ``(series, length)`` in row-major order
        (kept as the column, not copied).
    layers, token_text, groups
        As for ``tidy_frame``.

    Returns
    -------
    pandas.DataFrame
        As ``tidy_frame`` returns it.
    """
    n_series = len(layers)
    series = _series_codes(groups or {}, n_series)
    lengths = np.asarray(lengths, dtype=np.int64)
    block_lengths = np.repeat(lengths, n_series)
    total = int(block_lengths.sum())
    if len(norm) != total:
        raise ValueError(f"norm has {len(norm)} values for {total} rows")
    codes, categories = _token_codes(token_ids, token_text)
    # Per series: its layer and other grouping codes, one row each (all int16 or int8).
    per_series = {"layer": np.asarray(layers, dtype=FRAME_DTYPES["layer"])}
    per_series.update({name: values for name, (values, _) in series.items()})
    columns: dict[str, np.ndarray] = {
        name: np.empty(total, dtype=values.dtype) for name, values in per_series.items()
    }
    # Each column is its own array (none shares an allocation, so a column dropped from the
    # frame frees its memory); per token, its values once, copied to each of its series.
    sequence = np.empty(total, dtype=FRAME_DTYPES["sequence"])
    first_tokens = np.cumsum(lengths) - lengths
    per_token = {
        "position": (np.arange(len(codes)) - np.repeat(first_tokens, lengths)).astype(
            FRAME_DTYPES["position"]
        ),
        "token_id": np.asarray(token_ids).astype(FRAME_DTYPES["token_id"]),
        "token": codes,
    }
    columns.update({name: np.empty(total, dtype=v.dtype) for name, v in per_token.items()})
    blocks = [(columns[name], values[:, None]) for name, values in per_series.items()]
    tokens = [(columns[name], values) for name, values in per_token.items()]
    row = first = 0
    for text, length in zip(np.asarray(sequences).tolist(), lengths.tolist(), strict=True):
        end, last = row + n_series * length, first + length
        sequence[row:end] = text
        for column, values in tokens:
            column[row:end].reshape(n_series, length)[:] = values[first:last]
        for column, values in blocks:
            column[row:end].reshape(n_series, length)[:] = values
        row, first = end, last
    columns.update(
        sequence=sequence,
        token=pd.Categorical.from_codes(columns["token"], categories=categories, validate=False),
        norm=np.asarray(norm, dtype=np.float32),
        **derived_columns(
            norm,
            columns["position"],
            starts=(np.cumsum(block_lengths) - block_lengths)[block_lengths > 0],
        ),
    )
    for name, (_, levels) in series.items():
        if levels is not None:
            columns[name] = pd.Categorical.from_codes(
                columns[name], categories=levels, validate=False
            )
    return pd.DataFrame({c: columns[c] for c in frame_columns(list(series))}, copy=False)


def derived_columns(
    norm: np.ndarray, position: np.ndarray, *, starts: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``log_norm``, ``lag1`` and ``lag2`` of rows sorted by sequence, series and position
    (every position present): what the shards do not store.

    ``log_norm`` is ``ln(norm)`` taken in float64 and rounded to float32 (as DuckDB's
    ``ln(norm::DOUBLE)::FLOAT``); ``lag1`` and ``lag2`` are it one and two rows earlier, NaN
    where ``position < k``.

    Parameters
    ----------
    norm : numpy.ndarray
        The ``norm`` column (float32).
    position : numpy.ndarray
        The ``position`` column.
    starts : numpy.ndarray, optional
        The rows at position 0 (found from ``position`` when not given).

    Returns
    -------
    dict of str to numpy.ndarray
        The three float32 columns.

    Examples
    --------
    >>> lags = derived_columns(np.array([1.0, 1.0, 1.0], np.float32), np.array([0, 1, 0]))
    >>> lags["lag1"].tolist(), lags["lag2"].tolist()
    ([nan, 0.0, nan], [nan, nan, nan])
    """
    n = len(norm)
    # Each column its own array: a column dropped from the frame frees its memory.
    log_norm, lag1, lag2 = (np.empty(n, dtype=DERIVED_DTYPE) for _ in DERIVED)
    np.log(norm, out=log_norm, dtype=np.float64)
    lag1[:1], lag2[:2] = np.nan, np.nan
    lag1[1:], lag2[2:] = log_norm[:-1], log_norm[:-2]
    starts = np.flatnonzero(position == 0) if starts is None else np.asarray(starts)
    # A row at position 0 has no predecessor, and neither the row after it a second one:
    # that row is at position 1, or at position 0 of the next series (NaN already).
    lag1[starts] = np.nan
    lag2[starts] = np.nan
    lag2[starts[starts + 1 < n] + 1] = np.nan
    return {"log_norm": log_norm, "lag1": lag1, "lag2": lag2}


def _series_codes(
    groups: Mapping[str, Sequence], n_series: int
) -> dict[str, tuple[np.ndarray, pd.Index | None]]:
    """Per grouping column, its per-series values in the column's dtype (codes, with the
    categories, for a category column)."""
    unknown = sorted(set(groups) - {"site", "head"})
    if unknown:
        raise ValueError(f"tidy_frame's groups are site and head, not {unknown}")
    found = {}
    for name, values in groups.items():
        if len(values) != n_series:
            raise ValueError(f"{name} has {len(values)} values for {n_series} series")
        if GROUP_DTYPES[name] == "category":
            values = pd.Categorical(values)
            found[name] = (values.codes.astype(np.int8), values.categories)
        else:
            found[name] = (np.asarray(values, dtype=GROUP_DTYPES[name]), None)
    return found


def _token_codes(
    token_ids: np.ndarray, token_text: Mapping[int, str]
) -> tuple[np.ndarray, pd.Index]:
    """The codes of the tokens' texts among the categories (ids may share a text)."""
    flat = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    vocab, inverse = np.unique(flat, return_inverse=True)
    # Factorized as objects: an empty Index of "str" factorizes to categories of Arrow's null
    # type, which a shard would store as such.
    codes, texts = pd.factorize(np.array([token_text[i] for i in vocab.tolist()], dtype=object))
    dtype = np.min_scalar_type(-max(len(texts), 1))  # signed, as pandas keeps codes
    return codes.astype(dtype)[inverse], pd.Index(texts, dtype="str")


def token_categorical(ids: np.ndarray, token_text: Mapping[int, str]) -> pd.Categorical:
    """Token texts of ``ids`` as a categorical (ids may share a text)."""
    codes, categories = _token_codes(ids, token_text)
    return pd.Categorical.from_codes(codes, categories=categories)
