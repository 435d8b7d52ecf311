"""The rows of the lag models: initial conditions, and the difference-GMM equations.

Holds:
- ``with_initial_conditions``: one layer's outcome rows -> the same rows with ``y1`` and
  ``y2``, the text's ``log_norm`` at its first two used positions (Wooldridge 2005);
- ``levels``: one layer's outcome rows -> a dense (texts x positions) array of ``log_norm``
  from the first used position on, NaN past each text's end;
- ``GMMData`` / ``difference_equations``: that array -> the first-differenced equations of
  ``log_norm ~ lag1 + lag2 + position`` with collapsed level instruments, as flat arrays with
  a text code per row (what ``models.gmm.arellano_bond`` takes).

The outcome rows are those at positions ``first + 2`` and beyond (``first`` is the first used
position: 1 when the first token is excluded, else 0), each carrying ``log_norm``, ``lag1``
and ``lag2``. A text's row at ``first + 2`` carries its first two levels as its lags, so the
rows alone give every level from ``first`` on, provided each text's positions are consecutive
from ``first + 2``; anything else is an ``AttnmagError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from attnmag.errors import AttnmagError

__all__ = ["GMM_LAGS", "GMMData", "with_initial_conditions", "levels", "difference_equations"]

#: The collapsed instruments' lags of the level (lags 2 to 6).
GMM_LAGS = (2, 6)


def _layout(rows: pd.DataFrame, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort ``rows`` by (sequence, position); return the order, the text codes, the offsets.

    The offset of a row is its position minus ``first`` (2 for a text's first outcome row).
    Raises ``AttnmagError`` where a text's positions do not run consecutively from
    ``first + 2``.
    """
    order = np.lexsort((rows["position"].to_numpy(), rows["sequence"].to_numpy()))
    sequence = rows["sequence"].to_numpy()[order]
    offset = rows["position"].to_numpy()[order] - first
    codes = np.r_[0, np.cumsum(sequence[1:] != sequence[:-1])]
    starts = np.r_[True, codes[1:] != codes[:-1]]
    expected = np.where(starts, 2, np.r_[0, offset[:-1] + 1])
    if not np.array_equal(offset, expected):
        bad = sequence[np.argmax(offset != expected)]
        raise AttnmagError(
            f"sequence {bad} does not have every position from {first + 2} on: the lag models "
            f"need each text's tokens consecutive from position {first}"
        )
    return order, codes, offset


def with_initial_conditions(rows: pd.DataFrame, *, first: int) -> pd.DataFrame:
    """``rows`` with ``y1`` and ``y2``: each text's ``log_norm`` at positions first, first + 1.

    Parameters
    ----------
    rows : pandas.DataFrame
        One layer's outcome rows (``sequence``, ``position``, ``log_norm``, ``lag1``,
        ``lag2``) at positions ``first + 2`` and beyond.
    first : int
        The first used position (1 when the first token is excluded, else 0).

    Returns
    -------
    pandas.DataFrame
        The rows, sorted by sequence and position, with ``y1`` and ``y2`` added.

    >>> data = with_initial_conditions(layer_rows, first=1)  # doctest: +SKIP
    """
    order, codes, offset = _layout(rows, first)
    out = rows.iloc[order].reset_index(drop=True)
    starts = np.flatnonzero(offset == 2)
    out["y1"] = out["lag2"].to_numpy()[starts][codes]
    out["y2"] = out["lag1"].to_numpy()[starts][codes]
    return out


def levels(rows: pd.DataFrame, *, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Each text's ``log_norm`` from position ``first`` on, as a dense array.

    Returns ``(y, sequences)``: ``y[i, j]`` is text ``sequences[i]``'s level at position
    ``first + j`` (NaN past its end).

    >>> y, sequences = levels(layer_rows, first=1)  # doctest: +SKIP
    """
    order, codes, offset = _layout(rows, first)
    sequence = rows["sequence"].to_numpy()[order]
    starts = np.flatnonzero(offset == 2)
    y = np.full((len(starts), int(offset.max()) + 1), np.nan)
    y[codes, offset] = rows["log_norm"].to_numpy(np.float64)[order]
    y[:, 0] = rows["lag2"].to_numpy(np.float64)[order][starts]
    y[:, 1] = rows["lag1"].to_numpy(np.float64)[order][starts]
    return y, sequence[starts]


@dataclass(frozen=True)
class GMMData:
    """The differenced equations, one row each, ordered by text and position.

    ``y``: the differenced outcome; ``x``: the differenced regressors (``lag1``, ``lag2``, and
    ``position``, whose difference is 1); ``z``: the instruments (the level at lags 2..6,
    0 before the text's first used position, then the constant); ``groups``: each row's
    text code (0..``n_groups`` - 1, only texts with an equation); ``sequences``: those
    texts' ids; ``terms``: ``x``'s column names.
    """

    y: np.ndarray
    x: np.ndarray
    z: np.ndarray
    groups: np.ndarray
    sequences: np.ndarray
    terms: tuple[str, ...] = ("lag1", "lag2", "position")

    @property
    def n_groups(self) -> int:
        """The number of texts with at least one equation."""
        return len(self.sequences)


def difference_equations(y: np.ndarray, sequences: np.ndarray) -> GMMData:
    """The Arellano-Bond equations of ``y[t] = a1 y[t-1] + a2 y[t-2] + b t + u + e[t]``.

    In first differences, ``Δy[t] = a1 Δy[t-1] + a2 Δy[t-2] + b + Δe[t]`` for columns
    t >= 3 of ``y`` (``levels``'s array); the levels ``y[t-2]``..``y[t-6]`` are the
    collapsed instruments (one column per lag, 0 where the lag precedes column 0), and the
    constant instruments itself. Texts shorter than 4 columns have no equation and drop out.

    >>> data = difference_equations(*levels(layer_rows, first=1))  # doctest: +SKIP
    """
    n_texts, width = y.shape
    low, high = GMM_LAGS
    padded = np.concatenate([np.zeros((n_texts, high)), y], axis=1)  # column t -> t + high
    t = np.arange(3, width)
    present = np.isfinite(y[:, 3:]) if width > 3 else np.zeros((n_texts, 0), dtype=bool)
    text, column = np.nonzero(present)
    column = t[column]

    def at(shift: int) -> np.ndarray:
        return padded[text, column + high - shift]

    dy = at(0) - at(1)
    x = np.column_stack([at(1) - at(2), at(2) - at(3), np.ones(len(text))])
    z = np.column_stack([*(at(lag) for lag in range(low, high + 1)), np.ones(len(text))])
    kept, groups = np.unique(text, return_inverse=True)
    return GMMData(y=dy, x=x, z=z, groups=groups, sequences=sequences[kept])
