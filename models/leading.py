"""Leading positions that stand off the rest: the named fits' glance diagnostic.

Holds ``LEADING_LAST`` (the last position checked, 3), ``LEADING_T`` (the threshold on
|t|), ``leading_query`` (the SQL of its per-(group, sequence) sums) and ``leading_stats``
(one group's sums -> its glance fields). Each position from ``first_position`` to 3 is
checked by the CR1 t statistic of its indicator in ``log_norm ~ position + [position == k,
each k]`` over positions ``first_position`` .. 30 (docs/guide-models.md).
"""

from __future__ import annotations

import numpy as np

from attnmag.models.checks import MAX_POSITION
from attnmag.models.mixed import GroupedDesign
from attnmag.models.ols import ols_fit
from attnmag.models.tidy import LEADING_GLANCE_COLUMNS

__all__ = ["LEADING_LAST", "LEADING_T", "leading_query", "leading_stats"]

LEADING_LAST = 3
LEADING_T = 4.0


def leading_query(keys: str, first: int, conditions: list[str]) -> str:
    """The SQL of ``leading_stats``' per-(group, sequence) sums over positions ``first`` ..
    ``MAX_POSITION`` of the view ``frame``."""
    y, p = "log_norm::DOUBLE", '"position"::DOUBLE'
    levels = [
        f'max({y}) FILTER (WHERE "position" = {k}) AS level_{k}'
        for k in range(first, LEADING_LAST + 1)
    ]
    products = {"p": p, "pp": f"{p} * {p}", "y": y, "py": f"{p} * {y}", "yy": f"{y} * {y}"}
    sums = ["count(*) AS n", *(f"sum({e}) AS {name}" for name, e in products.items()), *levels]
    where = [
        f'"position" BETWEEN {int(first)} AND {MAX_POSITION}',
        "isfinite(log_norm)",
        *conditions,
    ]
    return (
        f"SELECT {keys}, sequence, {', '.join(sums)} FROM frame WHERE {' AND '.join(where)} "
        f"GROUP BY {keys}, sequence ORDER BY {keys}, sequence"
    )


def leading_stats(sums: dict[str, np.ndarray], first: int) -> dict[str, float | bool]:
    """One group's leading-position diagnostic from its per-sequence sums (``leading_query``).

    >>> trend = models.position_trend(frame, method="ols", n_jobs=1)
    >>> trend.glance[["leading_flagged", "suggested_first_position"]].shape
    (12, 2)
    """
    out: dict[str, float | bool] = dict.fromkeys(LEADING_GLANCE_COLUMNS[:-2], np.nan)
    checked = [
        k for k in range(first, LEADING_LAST + 1) if np.isfinite(sums[f"level_{k}"]).sum() >= 2
    ]
    t = _leading_t(sums, checked) if checked else np.array([])
    flagged = [k for k, value in zip(checked, t, strict=True) if abs(value) > LEADING_T]
    out |= {f"leading_t{k}": float(value) for k, value in zip(checked, t, strict=True)}
    out["leading_flagged"] = bool(flagged)
    out["suggested_first_position"] = float(max(flagged) + 1 if flagged else first)
    return out


def _leading_t(sums: dict[str, np.ndarray], checked: list[int]) -> np.ndarray:
    """The CR1 t statistics of the ``checked`` positions' indicators (NaN: not identified)."""
    n_groups, k = len(sums["n"]), 2 + len(checked)
    present = np.column_stack([np.isfinite(sums[f"level_{c}"]) for c in checked])
    levels = np.column_stack([np.nan_to_num(sums[f"level_{c}"]) for c in checked])
    positions = np.asarray(checked, dtype=np.float64)
    # [X | 1 | y], X = [1, position, indicators]: the indicators' products are their counts.
    cross = np.zeros((n_groups, k + 2, k + 2))
    cross[:, 0, 0] = cross[:, 0, k] = cross[:, k, k] = sums["n"]
    cross[:, 0, 1] = cross[:, 1, k] = sums["p"]
    cross[:, 1, 1] = sums["pp"]
    cross[:, 0, -1] = cross[:, k, -1] = sums["y"]
    cross[:, 1, -1] = sums["py"]
    cross[:, -1, -1] = sums["yy"]
    at = np.arange(2, k)
    cross[:, 0, at] = cross[:, at, at] = cross[:, at, k] = present
    cross[:, 1, at] = present * positions
    cross[:, at, -1] = levels
    cross = np.triu(cross) + np.triu(cross, 1).transpose(0, 2, 1)
    try:
        fitted = ols_fit(GroupedDesign(cross, int(sums["n"].sum()), k, 1), range(k), n_groups)
    except np.linalg.LinAlgError:
        return np.full(len(checked), np.nan)
    return (fitted.estimate / fitted.std_error).to_numpy()[2:]
