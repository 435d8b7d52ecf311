"""Findings agree with the tables and the frame they summarise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnmag import models
from attnmag.reports.findings import METHOD_WORDS, findings
from attnmag.reports.summaries import sequence_lengths
from attnmag.reports.tables import coefficient_display, markdown_table, provenance_rows
from tests.simulate import simulated_frame
from tests.test_reports_support import fake_tables

ALPHA = 0.05


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Layers 0-1 fall over positions and carry lags; layer 2 is flat with none.

    Both simulations share a seed, so their texts have the same lengths.
    """
    falling = simulated_frame(120, 2, length=(3, 40), slope=-0.03, lag1=0.4, seed=5)
    flat = simulated_frame(120, 1, length=(3, 40), slope=0.0, seed=5, intercept=1.5)
    flat["layer"] = 2
    frame = pd.concat([falling, flat], ignore_index=True)
    frame = frame.sort_values(["sequence", "layer", "position"], ignore_index=True)
    frame.attrs.update(falling.attrs, n_skipped_empty=3, n_truncated=0)
    return frame


@pytest.fixture(scope="module")
def tables(frame) -> dict[str, pd.DataFrame]:
    return fake_tables(frame, unconverged=(1,), gmm_apart=(2,), gmm_rejects=(0,))


@pytest.fixture(scope="module")
def found(frame, tables):
    return findings(
        frame,
        trend=tables["position_trend"],
        lags=tables["lag_effects"],
        glance=tables["glance"],
        alpha=ALPHA,
    )


def _count(table, *, method, term, sign):
    rows = table[(table["method"] == method) & (table["term"] == term)]
    significant = rows["p_adjusted"] < ALPHA
    side = rows["estimate"] < 0 if sign == "-" else rows["estimate"] > 0
    return int((significant & side).sum())


def test_trend_counts_match_the_table(found, tables):
    trend = tables["position_trend"]
    numbers = found["trend"].numbers
    for method in ("aggregate", "ols", "mixed"):
        entry = numbers[method]
        assert entry["n_below_zero"] == _count(trend, method=method, term="position", sign="-")
        assert entry["n_above_zero"] == _count(trend, method=method, term="position", sign="+")
        assert entry["n_below_zero"] + entry["n_above_zero"] + entry["n_not_significant"] == 3
        slopes = trend[(trend["method"] == method) & (trend["term"] == "position")]
        assert entry["median_slope"] == pytest.approx(slopes["estimate"].median())
        assert f"below zero in {entry['n_below_zero']} of 3 layers with {method}" in (
            found["trend"].text
        )
    assert numbers["ols"]["n_below_zero"] == 2 and numbers["ols"]["n_not_significant"] == 1


def test_lag_counts_and_pattern_match_the_table(found, tables):
    lags = tables["lag_effects"]
    for method in ("ols", "initial_conditions", "gmm"):
        entry = found["lags"].numbers[method]
        for term in ("lag1", "lag2"):
            assert entry[term]["n_positive"] == _count(lags, method=method, term=term, sign="+")
            assert entry[term]["n_negative"] == _count(lags, method=method, term=term, sign="-")
        rows = lags[lags["method"] == method].pivot(
            index="layer", columns="term", values="estimate"
        )
        assert entry["lag1"]["median"] == pytest.approx(rows["lag1"].median())
        assert entry["n_layers_pattern"] <= entry["n_layers"] == 3
    read = found["lags"].numbers["initial_conditions"]
    assert (
        f"with initial_conditions, lag-1 is positive in {read['lag1']['n_positive']} of 3 layers "
        f"and negative in {read['lag1']['n_negative']}" in found["lags"].text
    )
    assert found["lags"].text.startswith("The lag-1 coefficient says how much")
    assert found["lags"].numbers["ols"]["lag1"]["n_positive"] >= 2


def _by_hand(lags: pd.DataFrame, layer: int, method: str, term: str) -> pd.Series:
    rows = lags[(lags["layer"] == layer) & (lags["method"] == method) & (lags["term"] == term)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_lag_section_flags_the_layers_where_the_within_text_estimators_disagree(found, tables):
    lags, numbers = tables["lag_effects"], found["lags"].numbers
    flagged = {"lag1": [], "lag2": []}
    for layer in range(3):
        for term in flagged:
            default = _by_hand(lags, layer, "initial_conditions", term)
            check = _by_hand(lags, layer, "gmm", term)
            if abs(default["estimate"] - check["estimate"]) > 2 * check["std_error"]:
                flagged[term].append(layer)
    assert flagged["lag1"] == [2]  # the layer fake_tables moved gmm's lag-1 in
    assert numbers["flagged_lag1"] == flagged["lag1"]
    assert numbers["flagged_lag2"] == flagged["lag2"]
    assert numbers["flagged_layers"] == sorted(set(flagged["lag1"]) | set(flagged["lag2"]))
    text = found["lags"].text
    assert "the two differ by more than 2 of gmm's standard errors in 1 of 3 layers" in text
    assert "read initial_conditions in layers 0–1, where the two agree" in text
    assert "read gmm's wider intervals in layer 2" in text and "neither estimate" not in text
    assert not found["lags"].warnings  # merged into the paragraph


def test_where_gmm_fails_its_own_tests_neither_estimate_is_recommended(frame):
    tables = fake_tables(frame, gmm_apart=(1, 2), gmm_rejects=(1,))
    found = findings(
        frame, trend=tables["position_trend"], lags=tables["lag_effects"], glance=tables["glance"]
    )
    text = found["lags"].text
    assert "read initial_conditions in layer 0, where the two agree" in text
    assert "read gmm's wider intervals in layer 2" in text
    assert "in layer 1 the two disagree and gmm's checks fail as well, so neither estimate" in text
    assert found["lags"].numbers["unread_layers"] == [1]
    assert "in 1 of those its own checks fail too" in found["lags"].headline


def test_lag_section_reports_gmm_tests_and_what_each_estimator_used(found, tables, frame):
    glance, numbers = tables["glance"], found["lags"].numbers
    gmm = glance[glance["method"] == "gmm"]
    assert numbers["hansen_rejects"] == gmm.loc[gmm["hansen_p"] < ALPHA, "layer"].tolist() == [0]
    assert numbers["ar2_rejects"] == gmm.loc[gmm["ar2_p"] < ALPHA, "layer"].tolist()
    text = found["lags"].text
    assert "Hansen's J test asks whether the earlier log norms it uses as instruments" in text
    assert "it rejects (p < 0.05) in 1 of 3 layers" in text
    assert "the AR(2) test asks whether the changes from token to token are correlated" in text
    lags = tables["lag_effects"]
    for method in ("ols", "initial_conditions", "gmm"):
        sizes = lags[lags["method"] == method].drop_duplicates("layer")
        entry = numbers[method]
        assert entry["median_texts"] == sizes["n_groups"].median()
        assert entry["median_rows"] == sizes["n_obs"].median()
    lengths = sequence_lengths(frame)["length"]
    assert numbers["gmm"]["median_texts"] == (lengths >= 5).sum()
    assert numbers["initial_conditions"]["median_texts"] == (lengths >= 4).sum()


def test_where_texts_differ_in_lag1_the_report_says_so(frame, tables, found):
    assert "slope_rejects" not in found["lags"].numbers  # no test in the glance, no sentence
    glance = tables["glance"].copy()
    within = glance["method"] == "initial_conditions"
    glance.loc[within, "lag1_slope_p"] = np.where(glance.loc[within, "layer"] == 1, 0.001, 0.6)
    found = findings(
        frame, trend=tables["position_trend"], lags=tables["lag_effects"], glance=glance
    )
    numbers, text = found["lags"].numbers, found["lags"].text
    assert numbers["slope_rejects"] == [1] and numbers["n_layers_slope_tested"] == 3
    assert "Texts differ in their lag-1 in 1 of 3 layers (layer 1)" in text
    glance.loc[within, "lag1_slope_p"] = 0.6
    found = findings(
        frame, trend=tables["position_trend"], lags=tables["lag_effects"], glance=glance
    )
    assert found["lags"].numbers["slope_rejects"] == []
    assert "Texts differ in their lag-1" not in found["lags"].text


def test_the_pooled_fit_is_described_against_the_within_text_one(found, tables):
    lags = tables["lag_effects"]
    one = lags[lags["term"] == "lag1"].pivot(index="layer", columns="method", values="estimate")
    gap = one["ols"] - one["initial_conditions"]
    pooled = found["lags"].numbers["pooled_vs_within"]
    # every layer: the texts' lasting levels (sd 0.3) pass for persistence in a pooled fit
    assert pooled["n_layers_pooled_larger"] == int((gap > 0).sum()) == 3
    assert pooled["median_difference"] == pytest.approx(gap.median())
    assert "its lag-1 exceeds that of initial_conditions in 3 of 3 layers" in found["lags"].text


def test_a_pooled_fit_alone_is_called_a_description(frame):
    tables = fake_tables(frame, lag_methods=("ols",))
    found = findings(frame, trend=tables["position_trend"], lags=tables["lag_effects"])
    assert "flagged_layers" not in found["lags"].numbers
    assert "No within-text estimator was fitted" in found["lags"].text
    assert "with ols, lag-1 is positive in" in found["lags"].text
    assert found["lags"].headline.startswith("Pooled over texts (ols)")


def test_method_words_cover_every_method_of_the_models_stage():
    for model, methods in models.METHODS.items():
        assert set(methods) <= set(METHOD_WORDS[model]), model


def test_layer_and_position_numbers_match_the_frame(found, frame):
    rest = frame[frame["position"] >= 1].groupby("layer")["norm"].mean()
    numbers = found["layers"].numbers
    assert numbers["layer_largest_mean_norm"] == rest.idxmax() == 2
    assert numbers["largest_mean_norm"] == pytest.approx(rest.max(), rel=1e-6)
    assert numbers["layer_smallest_mean_norm"] == rest.idxmin()
    assert f"layer {rest.idxmax()} has the largest mean norm" in found["layers"].text
    lengths = frame[frame["layer"] == 0].groupby("sequence").size()
    data = found["data"].numbers
    assert data["n_tokens"] == lengths.sum() and data["n_sequences"] == 120
    assert data["median_length"] == lengths.median()
    assert "3 empty texts skipped" in found["data"].text
    positions = found["positions"].numbers
    assert positions["n_sequences_reaching_max"] == int((lengths > 30).sum())
    first = frame[frame["position"] == 0].groupby("layer")["norm"].mean()
    window = frame[frame["position"].between(1, 30)].groupby("layer")["norm"].mean()
    assert positions["n_layers_first_larger"] == int((first > window).sum())


def test_warnings_say_where_they_apply(found):
    assert any("mixed fit did not converge in 1 layer (1)" in w for w in found["trend"].warnings)
    # the lag section's warnings are sentences of its one paragraph
    assert "The initial_conditions fits warned: ConvergenceWarning" in found["lags"].text
    assert "MLE may be on the boundary (layer 1)." in found["lags"].text
    assert not found["layers"].warnings and not found["data"].warnings


def test_no_convergence_warning_when_every_fit_converged(frame):
    tables = fake_tables(frame)
    found = findings(
        frame, trend=tables["position_trend"], lags=tables["lag_effects"], glance=tables["glance"]
    )
    assert not any("converge" in w for w in found["trend"].warnings)
    assert "converge" not in found["lags"].text


def test_a_failed_fit_is_counted_apart(frame, tables):
    trend = tables["position_trend"].copy()
    failed = (trend["method"] == "mixed") & (trend["layer"] == 0)
    trend.loc[failed, ["estimate", "conf_low", "conf_high", "p_value", "p_adjusted"]] = np.nan
    trend.loc[failed, "converged"] = False
    found = findings(frame, trend=trend, lags=tables["lag_effects"])
    assert found["trend"].numbers["mixed"]["n_no_estimate"] == 1
    assert "with no estimate in 1" in found["trend"].text
    display = coefficient_display(trend)["slope (position)"]
    assert display.loc[display["layer"] == 0, "mixed (95% CI)"].str.startswith("no estimate").all()


def test_markdown_table_and_provenance_rows():
    table = pd.DataFrame({"layer": [0, 1], "cell": ["a|b", "c"]})
    assert markdown_table(table).splitlines() == [
        "| layer | cell |",
        "| ---: | --- |",
        "| 0 | a\\|b |",
        "| 1 | c |",
    ]
    rows = dict(
        provenance_rows(
            {
                "model": "gpt2",
                "layers": list(range(12)),
                "n_tokens": 12345,
                "seconds_extract": 3.0,
                "versions": {"torch": "2.13.0"},
                "custom_key": "x",
            },
            timings={"fit": 2.0},
        )
    )
    assert rows["layers measured"] == "0 to 11 (12)"
    assert rows["tokens measured"] == "12,345"
    assert rows["wall time"] == "extract 3.0 s, fit 2.0 s"
    assert rows["package versions"] == "torch 2.13.0" and rows["custom key"] == "x"


def test_a_method_with_no_estimate_in_any_layer_still_reads(frame, tables):
    trend = tables["position_trend"].copy()
    failed = trend["method"] == "mixed"
    trend.loc[failed, ["estimate", "conf_low", "conf_high", "p_value", "p_adjusted"]] = np.nan
    trend.loc[failed, "converged"] = False
    found = findings(frame, trend=trend, lags=tables["lag_effects"])
    assert "with no estimate in 3" in found["trend"].text
    assert found["trend"].headline.startswith("With ols")
