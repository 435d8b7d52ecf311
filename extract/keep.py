"""Sequence-level corpus columns carried into the tidy frame (``keep=["label", ...]``).

Holds:
- ``check_keep``: the columns asked for, checked against the corpus before any work;
- ``kept_columns``: those columns, one value per frame row, taken from each row's text.

A ``datasets`` ``ClassLabel`` column (the bundled corpus's ``label``: rotten, fresh) and a
column of strings become categoricals, the class names as categories; a column of numbers
with missing values (None, NaN, a csv's blank cells) becomes float64 with NaN; other columns
keep their values and dtype.

>>> frame = extract.attention_norms(model, tokenizer, texts, keep=["label"], progress=False)
>>> frame["label"].cat.categories.tolist()
['rotten', 'fresh']
>>> frame.groupby("label", observed=True)["log_norm"].mean().index.tolist()
['rotten', 'fresh']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from attnmag.errors import AttnmagError

__all__ = ["check_keep", "kept_columns"]


def check_keep(texts: object, keep: Sequence[str] | str, taken: Sequence[str]) -> list[str]:
    """The names in ``keep``, each checked to be a column of ``texts``.

    Parameters
    ----------
    texts : datasets.Dataset
        The corpus.
    keep : sequence of str, or str
        The corpus columns to carry into the frame.
    taken : sequence of str
        The frame's own column names, which a kept column may not reuse.

    Returns
    -------
    list of str
        The names; anything else is an ``AttnmagError``.

    Examples
    --------
    >>> check_keep(texts, "label", taken=["sequence", "layer"])
    ['label']
    >>> check_keep(texts, ["stars"], taken=["sequence", "layer"])
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: ...stars...
    """
    names = [keep] if isinstance(keep, str) else list(keep)
    if not names:
        return []
    columns = getattr(texts, "column_names", None)
    if columns is None:
        raise AttnmagError(
            f"keep={names} needs texts as a datasets.Dataset holding those columns, "
            f"not {type(texts).__name__}"
        )
    missing = [name for name in names if name not in columns]
    clash = [name for name in names if name in taken or name == "text"]
    if missing or clash:
        problem = f"has no columns {missing}" if missing else f"would repeat the columns {clash}"
        raise AttnmagError(f"keep={names}: the corpus {problem}; its columns are {list(columns)}")
    return names


def kept_columns(texts: object, names: Sequence[str], sequence: np.ndarray) -> dict:
    """The kept corpus columns, one value per frame row: the value of the row's sequence.

    Parameters
    ----------
    texts : datasets.Dataset
        The corpus.
    names : sequence of str
        Columns checked by ``check_keep``.
    sequence : numpy.ndarray
        The frame's ``sequence`` column (corpus indices).

    Returns
    -------
    dict
        ``{name: values}``.

    Examples
    --------
    >>> kept = kept_columns(texts, ["label"], np.array([0, 0, 1]))
    >>> list(kept), len(kept["label"])
    (['label'], 3)
    """
    out = {}
    for name in names:
        feature = texts.features[name]
        values = texts[name]
        class_names = getattr(feature, "names", None)
        numeric = _with_gaps(values)
        if class_names is not None:
            codes = np.asarray(values, dtype=np.int64)[sequence]
            out[name] = pd.Categorical.from_codes(codes, categories=class_names)
        elif numeric is not None:
            out[name] = numeric[sequence]
        elif all(isinstance(value, str) for value in values):
            out[name] = pd.Categorical(np.asarray(values, dtype=object)[sequence])
        else:
            out[name] = np.asarray(values)[sequence]
    return out


def _with_gaps(values: list) -> np.ndarray | None:
    """A numeric column with missing values (None, NaN, or a csv's blank cell) as float64
    with NaN, so that it stays a number in the frame and in formulas; None for any other
    column (no gaps, or a value that is not a number)."""
    series = pd.Series(values, dtype=object)
    missing = series.isna() | series.map(lambda value: isinstance(value, str) and not value.strip())
    present = series[~missing]
    if not missing.any() or present.map(lambda value: isinstance(value, bool)).any():
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return None
    return pd.to_numeric(series.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
