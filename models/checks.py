"""The fits' methods and defaults, and the checks of their options and rows, written once.

Holds ``METHODS`` (the named fits'), ``MIXED_METHODS``, ``CR2_METHODS``, the defaults
``MAX_POSITION`` (the trend's last position, the notebook's 30) and ``CONF_LEVEL``, the checks
``check_options``, ``check_position``, ``check_columns``, ``check_size`` and
``not_finite`` (the error of a missing or infinite value).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

from attnmag.errors import AttnmagError
from attnmag.models.mixed import COV_TYPES

__all__ = [
    "CONF_LEVEL",
    "MAX_POSITION",
    "METHODS",
    "MIXED_METHODS",
    "CR2_METHODS",
    "check_columns",
    "check_position",
    "check_options",
    "check_size",
    "not_finite",
]

MAX_POSITION = 30
CONF_LEVEL = 0.95
METHODS = {
    "position_trend": ("aggregate", "ols", "mixed"),
    "lag_effects": ("ols", "initial_conditions", "gmm"),
}
MIXED_METHODS = frozenset({"mixed", "initial_conditions"})
CR2_METHODS = MIXED_METHODS | {"ols"}


def check_options(
    name: str, method: str, methods: tuple[str, ...], conf_level: float, cov_type: str
) -> None:
    """Reject a method not in ``methods``, a level outside (0, 1), or a cov_type it lacks.

    >>> check_options("position_trend", "ols", ("aggregate", "ols", "mixed"), 0.95, "cluster")
    >>> check_options("position_trend", "lstsq", ("aggregate", "ols", "mixed"), 0.95, "cluster")
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: ...lstsq...
    """
    if method not in methods:
        raise AttnmagError(f"{name} has no method {method!r}; choose one of {methods}")
    if not 0 < conf_level < 1:
        raise AttnmagError(f"conf_level must lie strictly between 0 and 1, not {conf_level}")
    if cov_type not in COV_TYPES:
        raise AttnmagError(f"cov_type must be one of {list(COV_TYPES)}, not {cov_type!r}")
    if cov_type == "cr2" and method not in CR2_METHODS:
        raise AttnmagError(
            f"cov_type='cr2' needs one of the methods {sorted(CR2_METHODS)}, not method={method!r}"
        )
    if cov_type == "model" and method not in MIXED_METHODS:
        raise AttnmagError(
            f"cov_type='model' needs a mixed method {sorted(MIXED_METHODS)}, not method={method!r}"
        )


def check_position(name: str, value: object, high: int | None = None) -> None:
    """Reject a position (``name``: the option) that is not a whole number from 0 (to ``high``).

    >>> check_position("first_position", 29, 29)
    >>> check_position("first_position", 30, 29)
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: first_position must be a whole number from 0 to 29, not 30
    """
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    top = "" if high is None else f" to {high}"
    if not whole or value < 0 or (high is not None and value > high):
        raise AttnmagError(f"{name} must be a whole number from 0{top}, not {value!r}")


def check_columns(name: str, columns: Sequence[str], needed: Iterable[str]) -> None:
    """Reject rows (``name``: where they come from) whose ``columns`` lack any of ``needed``.

    >>> check_columns("the frame", ["layer", "position"], ["layer", "sequence"])
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: the frame lacks the columns ['sequence'] that the models ...
    """
    missing = [column for column in dict.fromkeys(needed) if column not in columns]
    if missing:
        raise AttnmagError(f"{name} lacks the columns {missing} that the models stage needs")


def check_size(
    group: str,
    *,
    first: int,
    last: int | None,
    n_terms: int,
    n_positions: int,
    n_rows: int,
    n_sequences: int,
    n_covered: int,
) -> None:
    """Require of a group (in words) ``n_terms + 2`` rows from 2 sequences covering
    ``n_positions`` positions: a residual degree of freedom and two clusters.

    >>> check_size("layer 0", first=1, last=30, n_terms=2, n_positions=3, n_rows=3,
    ...            n_sequences=2, n_covered=3)
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: layer 0 has 3 rows ... at positions 1..30; this fit needs ...
    """
    needed = n_terms + 2
    if n_rows >= needed and n_sequences >= 2 and n_covered >= n_positions:
        return
    span = f"positions >= {first}" if last is None else f"positions {first}..{last}"
    raise AttnmagError(
        f"{group} has {n_rows} rows from {n_sequences} sequences covering {n_covered} "
        f"positions at {span}; this fit needs at least {needed} rows from 2 sequences "
        f"covering {n_positions} positions"
    )


def not_finite(columns: list[str], first: int) -> AttnmagError:
    """The error of a missing or infinite value in ``columns`` at positions ``first`` on.

    >>> print(not_finite(["lag1"], 1))
    the frame has missing or infinite values in ['lag1'] at positions 1 and ...
    """
    return AttnmagError(
        f"the frame has missing or infinite values in {columns} at positions {first} and "
        "beyond (a zero norm, or positions missing from a sequence)"
    )
