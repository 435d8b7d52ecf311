"""The tidy long frame of per-token norms: its columns and how it is built.

Holds:
- ``COLUMNS``: the columns of a plain frame (one model, the attention update), in order;
- ``GROUP_COLUMNS``: the grouping columns a frame may have (``layer`` always; ``model``,
  ``site`` and ``head`` when asked for); lags, fits and figures run within each group;
- ``group_columns``, ``frame_columns``: the grouping columns a frame has, and the columns in
  order of a frame with given optional grouping columns;
- ``tidy_frame``: per-sequence norm arrays -> the tidy frame (lags included).

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

__all__ = ["COLUMNS", "GROUP_COLUMNS", "frame_columns", "group_columns", "tidy_frame"]

COLUMNS = ["sequence", "layer", "position", "token_id", "token", "norm", "log_norm", "lag1", "lag2"]
GROUP_COLUMNS = ("model", "site", "layer", "head")
GROUP_DTYPES = {"model": "category", "site": "category", "layer": "int64", "head": "int16"}


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

    A series is one row of each ``norms[i]``. Lags run within sequence x series. Each column
    is allocated once, in its final dtype, and filled text by text (the frame is the largest
    thing an extraction keeps).

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
        The columns of ``frame_columns(groups)``: ``norm`` float32, ``log_norm``, ``lag1``
        and ``lag2`` float64, ``token`` categorical.

    Examples
    --------
    >>> frame = tidy_frame(sequences=[0], token_ids=[np.array([7, 8])],
    ...                    norms=[np.array([[1.0, 2.0]])], layers=[0], token_text={7: "a", 8: "b"})
    >>> frame[["position", "token", "norm", "lag1"]].to_dict("list")
    {'position': [0, 1], 'token': ['a', 'b'], 'norm': [1.0, 2.0], 'lag1': [nan, 0.0]}
    """
    layers = np.asarray(layers, dtype=np.int64)
    series = _series_codes(groups or {}, len(layers))
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
        **{name: np.empty(total, dtype=values.dtype) for name, (values, _) in series.items()},
    }
    for k, i in enumerate(order):
        block = slice(int(ends[k] - rows[k]), int(ends[k]))
        shape = (len(layers), int(lengths[k]))
        columns["layer"][block].reshape(shape)[:] = layers[:, None]
        for name, (values, _) in series.items():
            columns[name][block].reshape(shape)[:] = values[:, None]
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
    for name, (_, levels) in series.items():
        if levels is not None:
            columns[name] = pd.Categorical.from_codes(columns[name], categories=levels)
    return pd.DataFrame({c: columns[c] for c in frame_columns(list(series))}, copy=False)


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


def token_categorical(ids: np.ndarray, token_text: Mapping[int, str]) -> pd.Categorical:
    """Token texts of ``ids`` as a categorical (ids may share a text)."""
    codes, categories = _token_codes([ids], token_text)
    return pd.Categorical.from_codes(codes[0], categories=categories)


def _lag(values: np.ndarray, position: np.ndarray, k: int) -> np.ndarray:
    """``values`` ``k`` rows earlier, NaN where ``position < k`` (rows sorted by sequence,
    series and position, every position present)."""
    lagged = np.empty_like(values)
    lagged[:k] = np.nan
    lagged[k:] = values[:-k]
    lagged[position < k] = np.nan
    return lagged
