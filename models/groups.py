"""The groups a fit runs once per: the frame's grouping columns that are present.

Holds:
- ``GROUP_COLUMNS``: every grouping column a frame may have, in the tables' order (the
  frame's schema, ``attnmag.extract.frame``, is its one source);
- ``group_columns``: the grouping columns a frame's fits are split by;
- ``split``: a frame's rows -> ``(key, rows)`` per group, in sorted key order;
- ``key_values`` / ``describe``: a group's key -> ``{column: value}`` / words for messages.

A key is the group's value where one column groups (the layer), else the tuple of the
values in ``GROUP_COLUMNS`` order, e.g. ``("attn", 5, 3)`` for site, layer and head, or
``("gpt2", "attn", 5)`` for model, site and layer. A ``model`` column names the language
models of a combined frame (``extract.combine``); the tidy tables' ``fit`` column names the
fit (``position_trend``, ``lag_effects``, a formula).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd

from attnmag.extract.frame import GROUP_COLUMNS
from attnmag.extract.frame import group_columns as frame_groups

__all__ = ["GROUP_COLUMNS", "group_columns", "split", "key_values", "describe"]


def group_columns(frame: pd.DataFrame) -> list[str]:
    """The grouping columns ``frame`` is fitted by: ``layer``, and ``model``, ``site`` and
    ``head`` where present.

    Parameters
    ----------
    frame : pandas.DataFrame
        The tidy frame.

    Returns
    -------
    list of str
        The columns in ``GROUP_COLUMNS`` order.

    >>> group_columns(pd.DataFrame(columns=["sequence", "model", "layer", "head"]))
    ['model', 'layer', 'head']
    """
    return frame_groups(frame)


def split(
    frame: pd.DataFrame,
    columns: list[str],
    *,
    rows: np.ndarray | None = None,
    keep: list[str] | None = None,
) -> dict[Hashable, pd.DataFrame]:
    """``frame`` split by ``columns``, keyed as the module says.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows holding ``columns``.
    columns : list of str
        The grouping columns, from ``group_columns``.
    rows : numpy.ndarray, optional
        The positions of the rows to split (all by default).
    keep : list of str, optional
        The columns each part holds (by default every column but ``columns``).

    Returns
    -------
    dict
        Key -> that group's rows (in their order in ``frame``, with its index), in sorted
        key order; groups without rows are absent. Each part is copied once from
        ``frame``, with no copy of all the rows before it.

    >>> parts = split(frame, ["layer"], rows=np.flatnonzero(frame["position"]))  # doctest: +SKIP
    """
    rows = np.arange(len(frame)) if rows is None else rows
    keep = [c for c in frame.columns if c not in columns] if keep is None else keep
    by = columns[0] if len(columns) == 1 else columns
    grouper = frame[columns].take(rows).groupby(by, sort=True, observed=True)
    codes = grouper.ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=grouper.ngroups))
    values = frame[keep]
    keys = grouper.size().index
    return {
        _plain(key): values.take(rows[order[end - size : end]])
        for key, end, size in zip(keys, ends, np.diff(ends, prepend=0), strict=True)
    }


def key_values(columns: list[str], key: Hashable) -> dict[str, object]:
    """A group's key -> ``{column: value}``.

    >>> key_values(["site", "layer"], ("mlp", 2))
    {'site': 'mlp', 'layer': 2}
    """
    values = (key,) if len(columns) == 1 else key
    return dict(zip(columns, values, strict=True))


def describe(columns: list[str], key: Hashable) -> str:
    """A group in words, for messages.

    >>> describe(["site", "layer", "head"], ("mlp", 2, 0))
    "site 'mlp', layer 2, head 0"
    """
    return ", ".join(
        f"{column} {value!r}" if isinstance(value, str) else f"{column} {value}"
        for column, value in key_values(columns, key).items()
    )


def _plain(key: Hashable) -> Hashable:
    """A pandas group key with numpy scalars turned into Python values."""
    if isinstance(key, tuple):
        return tuple(getattr(value, "item", lambda v=value: v)() for value in key)
    return getattr(key, "item", lambda: key)()
