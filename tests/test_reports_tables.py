"""The report's coefficient tables: stars agree with the intervals, one format per column."""

from __future__ import annotations

import pandas as pd
import pytest

from attnmag import models
from attnmag.reports.numbers import NBSP
from attnmag.reports.tables import TERM_LABELS, coefficient_display, lag_check_display, stars_rule
from tests.simulate import simulated_frame


@pytest.fixture(scope="module")
def fitted() -> dict[str, pd.DataFrame]:
    # A small slope and a weak lag, so that some layers' intervals include zero.
    frame = simulated_frame(60, 4, lag1=0.05, seed=7)
    fits = models.fit_all(frame, conf_level=0.9, progress=False)
    return {name: item.tidy for name, item in fits.items()}


def _bounds(cell: str) -> tuple[float, float]:
    inside = cell.split("(", 1)[1].split(")")[0]
    low, high = inside.split(f"{NBSP}to{NBSP}")
    return float(low.replace(",", "")), float(high.replace(",", ""))


@pytest.mark.parametrize("name", ["position_trend", "lag_effects"])
def test_a_star_marks_exactly_the_intervals_that_exclude_zero(fitted, name):
    table = fitted[name]
    cells = 0
    for term, shown in coefficient_display(table).items():
        for column in [c for c in shown.columns if c.endswith("(90% CI)")]:
            method = column.removesuffix(" (90% CI)")
            labels = table["term"].map(lambda t: TERM_LABELS.get(t, t))
            rows = table[(table["method"] == method) & (labels == term)]
            rows = rows.set_index(rows["layer"].astype(int)).reindex(shown["layer"])
            for cell, p in zip(shown[column], rows["p_value"], strict=True):
                if not cell or cell.startswith("no estimate"):
                    continue
                low, high = _bounds(cell)
                excludes = low > 0 or high < 0
                assert ("*" in cell) == excludes, (term, method, cell)
                assert excludes == (p < 0.1), (term, method, cell, p)
                cells += 1
    assert cells > 0


def test_some_stars_and_some_not(fitted):
    shown = "".join(
        "".join(frame.iloc[:, 1:].to_numpy().ravel())
        for frame in coefficient_display(fitted["lag_effects"]).values()
    )
    assert "*" in shown and shown.count(")") > shown.count("*")


def test_every_method_column_shares_its_decimals(fitted):
    for shown in coefficient_display(fitted["position_trend"]).values():
        for column in [c for c in shown.columns if c.endswith("CI)")]:
            numbers = " ".join(shown[column]).replace("(", " ").replace(")", " ")
            numbers = numbers.replace("*", " ").replace("†", " ").replace(NBSP, " ").split()
            decimals = {len(x.split(".")[1]) for x in numbers if x[0] in "-0123456789"}
            assert len(decimals) == 1, (column, decimals)


def test_the_holm_column_sits_beside_each_method(fitted):
    shown = coefficient_display(fitted["position_trend"])["slope (position)"]
    methods = models.METHODS["position_trend"]
    expected = ["layer"] + [c for m in methods for c in (f"{m} (90% CI)", f"{m} Holm p")]
    assert list(shown.columns) == expected


def test_the_rule_says_what_stars_and_holm_mean():
    rule = stars_rule(0.9, holm="across layers", alpha=0.05)
    assert "* the 90% CI excludes zero, that is the unadjusted p < 0.1" in rule
    assert "Holm's correction across layers" in rule and "below 0.05" in rule


def test_counts_the_same_in_every_layer_are_stated_once():
    compared = pd.DataFrame(
        {
            "layer": [0, 1, 2],
            "texts_gmm": [10, 10, 10],
            "rows_gmm": [200, 200, 200],
            "texts_ols": [12, 12, 11],
            "rows_ols": [230, 230, 228],
        }
    )
    shown, same = lag_check_display(compared)
    assert same == {"gmm texts / rows": "10 / 200"}
    assert "gmm texts / rows" not in shown and list(shown["ols texts / rows"])[2] == "11 / 228"
