"""reports.numbers: intervals to their precision, one format per column, p-values, no wraps."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from attnmag.reports.numbers import NBSP, column_format, interval, number, p_value

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
widths = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def _parts(text: str) -> tuple[str, str, str]:
    """Estimate, low and high of a printed ``e (low to high)``."""
    estimate, rest = text.split(NBSP + "(")
    low, high = rest.rstrip(")").split(NBSP + "to" + NBSP)
    return estimate, low, high


def test_the_issue_example_keeps_a_decimal():
    assert interval(192.6, 192.4, 192.8) == f"192.6{NBSP}(192.4{NBSP}to{NBSP}192.8)"


@given(finite, widths, widths)
def test_a_bound_prints_as_its_estimate_only_where_they_are_equal(estimate, below, above):
    low, high = estimate - below, estimate + above
    estimate_text, low_text, high_text = _parts(interval(estimate, low, high))
    assert (low_text == estimate_text) == (low == estimate)
    assert (high_text == estimate_text) == (high == estimate)


@given(st.lists(st.tuples(finite, widths, widths), min_size=1, max_size=12))
def test_a_column_shares_one_format_and_keeps_every_bound_apart(rows):
    triples = [(e, e - b, e + a) for e, b, a in rows]
    fmt = column_format(*zip(*triples, strict=True))
    printed = [_parts(fmt.interval(*t)) for t in triples]
    for (estimate, low, high), (e_text, lo_text, hi_text) in zip(triples, printed, strict=True):
        assert (lo_text == e_text) == (low == estimate)
        assert (hi_text == e_text) == (high == estimate)
    if not fmt.scientific:  # every cell has the column's decimals
        decimals = {len(text.split(".")[1]) if "." in text else 0 for p in printed for text in p}
        assert decimals == {fmt.decimals}


@given(finite, widths, widths)
def test_a_bound_prints_as_zero_only_where_it_is_zero(estimate, below, above):
    low, high = estimate - below, estimate + above
    _, low_text, high_text = _parts(interval(estimate, low, high))
    for value, text in ((low, low_text), (high, high_text)):
        assert (float(text.replace(",", "")) == 0) == (value == 0), (value, text)


def test_the_issue_example_of_a_bound_near_zero():
    fmt = column_format([0.000459, 0.031], [2.09e-06, 0.0002], [0.000916, 0.062])
    text = fmt.interval(0.000459, 2.09e-06, 0.000916).replace(NBSP, " ")
    assert text == "0.000459 (0.000002 to 0.000916)" and not fmt.scientific


def test_a_column_keeps_trailing_zeros():
    fmt = column_format([0.926, 0.93], [0.922, 0.925], [0.93, 0.935])
    assert fmt.interval(0.926, 0.922, 0.93).replace(NBSP, " ") == "0.926 (0.922 to 0.930)"


def test_no_scientific_notation_where_fixed_decimals_do():
    fmt = column_format([0.000459, 1.2], [2.09e-06, 1.1], [0.000916, 1.3])
    assert not fmt.scientific
    assert "e" not in fmt.interval(0.000459, 2.09e-06, 0.000916)


def test_scientific_notation_where_the_column_needs_it():
    fmt = column_format([3e-9, 5e-9], [1e-9, 4e-9], [4e-9, 6e-9])
    assert fmt.scientific and fmt.number(3e-9) == "3.00e-09"


def test_single_numbers_have_three_significant_digits():
    assert (number(41.26), number(-0.00213), number(1066), number(0.5)) == (
        "41.3",
        "-0.00213",
        "1,066",
        "0.500",
    )
    assert number(-0.0001, significant=1) == "-0.0001" and number(-0.00001) == "-1.00e-05"


def test_negative_zero_prints_without_a_sign():
    assert column_format([1.0, -0.0004]).number(-0.0004) == "0.00"


def test_p_values():
    assert p_value(0.0213) == "0.021"
    assert p_value(0.0) == p_value(2e-26) == f"<{NBSP}0.001"
    assert p_value(math.nan) == ""


@given(finite, widths, widths)
def test_nothing_printed_can_wrap(estimate, below, above):
    text = interval(estimate, estimate - below, estimate + above)
    assert " " not in text and "\n" not in text
