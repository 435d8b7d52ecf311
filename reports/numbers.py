"""How the reports print numbers: one format per column, intervals to their precision.

Holds:
- ``NumberFormat``: one column's format (fixed decimals, or significant digits in
  scientific notation where the column needs it), printing numbers and intervals;
- ``column_format``: the format a column of estimates (and their bounds) needs;
- ``number``: one number on its own, to three significant digits;
- ``interval``: one estimate and its interval, ``192.6 (192.4 to 192.8)``;
- ``p_value``: a p-value, ``< 0.001`` below a thousandth;
- ``NBSP``: the non-breaking space every printed number uses inside itself, so that no
  number, interval or p-value wraps in HTML, Markdown or a caption.

A column's decimals start at what gives its largest value ``SIGNIFICANT`` significant
digits, and grow until every bound prints differently from its estimate wherever the two
differ, and differently from zero wherever it is not zero; a column that would need more
than ``MAX_DECIMALS`` decimals is printed in scientific notation instead, with as many
significant digits as that needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MAX_DECIMALS",
    "NBSP",
    "SIGNIFICANT",
    "NumberFormat",
    "column_format",
    "interval",
    "number",
    "p_value",
]

NBSP = "\u00a0"
#: Significant digits of a column's largest value.
SIGNIFICANT = 3
#: The most decimals printed before a column turns to scientific notation.
MAX_DECIMALS = 6
#: Enough significant digits to tell any two different doubles apart.
_MAX_DIGITS = 17
#: The smallest p-value printed as a number.
P_FLOOR = 0.001


@dataclass(frozen=True)
class NumberFormat:
    """One column's format: ``decimals`` fixed decimals, or ``digits`` significant digits in
    scientific notation where ``scientific``.

    Examples
    --------
    >>> NumberFormat(decimals=3).interval(0.1234, 0.05, 0.2)
    '0.123\xa0(0.050\xa0to\xa00.200)'
    >>> NumberFormat(scientific=True, digits=2).number(0.000123)
    '1.2e-04'
    """

    decimals: int = 0
    scientific: bool = False
    digits: int = SIGNIFICANT

    def number(self, value: float | None) -> str:
        """``value`` in this format ('' for a missing one; '-0' is printed '0')."""
        if value is None or not math.isfinite(value):
            return "" if value is None or math.isnan(value) else str(value)
        if self.scientific:
            text = f"{value:.{self.digits - 1}e}"
        else:
            text = f"{value:,.{self.decimals}f}"
        return _unsigned_zero(text)

    def interval(self, estimate: float, low: float, high: float, *, label: str = "") -> str:
        """``estimate (low to high)``, or ``estimate (label low to high)``, unbreakable."""
        if low is None or high is None or math.isnan(low) or math.isnan(high):
            return self.number(estimate)
        inside = f"{label} " * bool(label) + f"{self.number(low)} to {self.number(high)}"
        return f"{self.number(estimate)} ({inside})".replace(" ", NBSP)


def _unsigned_zero(text: str) -> str:
    """``text`` without the sign of a negative number that prints as zero."""
    if text.startswith("-") and not any(c in "123456789" for c in text.split("e")[0]):
        return text[1:]
    return text


def _pairs(values: Iterable[tuple[float, ...]]) -> list[tuple[float, float]]:
    """The pairs that must print apart, from rows of (estimate, bound, ...): each bound and
    its estimate where they differ, and each bound that is not zero and zero (so that an
    interval that excludes zero never seems to touch it)."""
    out = []
    for row in values:
        estimate, *bounds = row
        out += [
            (estimate, b)
            for b in bounds
            if _finite(estimate) and _finite(b) and float(b) != float(estimate)
        ]
        out += [(b, 0.0) for b in bounds if _finite(b) and float(b) != 0]
    return out


def _finite(value: object) -> bool:
    return value is not None and math.isfinite(float(value))


def _distinct(fmt: NumberFormat, pairs: list[tuple[float, float]]) -> bool:
    return all(fmt.number(a) != fmt.number(b) for a, b in pairs)


def column_format(
    estimates: Iterable[float],
    lows: Iterable[float] | None = None,
    highs: Iterable[float] | None = None,
    *,
    significant: int = SIGNIFICANT,
) -> NumberFormat:
    """The one format a column needs: its largest value to ``significant`` digits, and
    every bound printed differently from its estimate wherever the two differ.

    Parameters
    ----------
    estimates : iterable of float
        The column's values (NaN allowed: missing cells).
    lows, highs : iterable of float, optional
        Their intervals' bounds, in the same order.
    significant : int
        Significant digits of the column's largest value.

    Returns
    -------
    NumberFormat
        Fixed decimals where at most ``MAX_DECIMALS`` do, else scientific notation.

    Examples
    --------
    >>> column_format([192.6], [192.4], [192.8]).interval(192.6, 192.4, 192.8)
    '192.6\\xa0(192.4\\xa0to\\xa0192.8)'
    >>> column_format([0.0012, 0.5]).number(0.0012)
    '0.001'
    """
    estimates = [float(v) for v in estimates]
    lows = [math.nan] * len(estimates) if lows is None else [float(v) for v in lows]
    highs = [math.nan] * len(estimates) if highs is None else [float(v) for v in highs]
    values = [abs(v) for v in (*estimates, *lows, *highs) if _finite(v) and v != 0]
    if not values:
        return NumberFormat(decimals=0)
    largest = max(values)
    decimals = max(0, significant - 1 - math.floor(math.log10(largest)))
    pairs = _pairs(zip(estimates, lows, highs, strict=True))
    while decimals <= MAX_DECIMALS:
        fmt = NumberFormat(decimals=decimals)
        if _distinct(fmt, pairs):
            return fmt
        decimals += 1
    # Values too small, or bounds too close, for fixed decimals: significant digits instead.
    for digits in range(significant, _MAX_DIGITS + 1):
        fmt = NumberFormat(scientific=True, digits=digits)
        if _distinct(fmt, pairs):
            return fmt
    return NumberFormat(scientific=True, digits=_MAX_DIGITS)


def number(value: float, *, significant: int = SIGNIFICANT) -> str:
    """One number on its own, to ``significant`` significant digits, in fixed notation
    unless it needs more than ``MAX_DECIMALS`` decimals.

    Parameters
    ----------
    value : float
        The number.
    significant : int
        Its significant digits.

    Returns
    -------
    str
        The number as text.

    Examples
    --------
    >>> number(41.26), number(-0.00213), number(1066)
    ('41.3', '-0.00213', '1,066')
    """
    return column_format([value], significant=significant).number(value)


def interval(estimate: float, low: float, high: float, *, label: str = "") -> str:
    """One estimate and its interval, printed to their precision and unbreakable.

    Parameters
    ----------
    estimate, low, high : float
        The estimate and its interval's bounds.
    label : str
        Words before the bounds, for example ``95% CI``.

    Returns
    -------
    str
        ``estimate (label low to high)``, with non-breaking spaces.

    Examples
    --------
    >>> interval(192.61, 192.42, 192.79).replace("\\xa0", " ")
    '192.6 (192.4 to 192.8)'
    >>> interval(192.61, 192.42, 192.79, label="95% CI").replace("\\xa0", " ")
    '192.6 (95% CI 192.4 to 192.8)'
    """
    return column_format([estimate], [low], [high]).interval(estimate, low, high, label=label)


def p_value(p: float) -> str:
    """A p-value: three decimals, or ``< 0.001`` below that.

    Parameters
    ----------
    p : float
        The p-value (NaN: none).

    Returns
    -------
    str
        The p-value as text ('' for a missing one), with a non-breaking space.

    Examples
    --------
    >>> p_value(0.0213), p_value(2e-26).replace("\\xa0", " ")
    ('0.021', '< 0.001')
    """
    if p is None or math.isnan(p):
        return ""
    if p < P_FLOOR:
        return f"<{NBSP}{P_FLOOR:g}"
    return f"{p:.3f}"
