"""Fits of a frame of several language models: one fit per (model, layer), equal to each
model's frame fitted alone; Holm's correction across the groups of one term and method.

Two simulated "models" of different depths and lag structures are combined with
``extract.combine`` (the simulated frames record the same corpus); every named fit and a
formula fit of the combined frame must give each model's estimates and standard errors
exactly as fitting that model's frame alone does.
"""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from attnmag import extract, models
from attnmag.models.tidy import GLANCE_COLUMNS, LEADING_GLANCE_COLUMNS, TIDY_COLUMNS
from tests.simulate import simulated_frame

ALONE = ["fit", "method", "layer", "term", "estimate", "std_error", "df", "n_obs", "n_groups"]


@pytest.fixture(scope="module")
def parts() -> dict[str, pd.DataFrame]:
    return {
        "deep": simulated_frame(40, 3, lag1=0.3, seed=11),
        "shallow": simulated_frame(40, 2, slope=0.01, lag1=-0.2, seed=12),
    }


@pytest.fixture(scope="module")
def both(parts) -> pd.DataFrame:
    return extract.combine(parts)


FITS = [
    ("position_trend", "aggregate"),
    ("position_trend", "ols"),
    ("position_trend", "mixed"),
    ("lag_effects", "ols"),
    ("lag_effects", "initial_conditions"),
    ("lag_effects", "gmm"),
]


@pytest.mark.parametrize(("name", "method"), FITS)
def test_each_model_of_a_combined_frame_is_fitted_as_alone(parts, both, name, method):
    table = getattr(models, name)(both, method=method, n_jobs=1).tidy
    assert list(table.columns) == ["fit", "method", "model", *TIDY_COLUMNS[2:]]
    assert table["model"].tolist() == sorted(table["model"], key=list(parts).index)
    for model, frame in parts.items():
        alone = getattr(models, name)(frame, method=method, n_jobs=1).tidy
        rows = table[table["model"] == model].drop(columns="model").reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[ALONE], alone[ALONE], check_exact=False, rtol=1e-9)
        assert rows["layer"].max() == frame["layer"].max()
    summary = models.glance(table)
    assert list(summary.columns[:4]) == ["fit", "method", "model", "layer"]
    assert len(summary) == 3 + 2


def test_holm_runs_across_the_groups_of_one_term_and_method(both):
    table = models.position_trend(both, method="ols").tidy
    for _, rows in table.groupby("term"):
        assert len(rows) == 5  # 3 layers of one model, 2 of the other
        expected = multipletests(rows["p_value"].to_numpy(), method="holm")[1]
        np.testing.assert_allclose(rows["p_adjusted"].to_numpy(), expected)


def test_a_formula_fit_keys_its_results_by_model_and_layer(parts, both):
    fits = models.fit(both, "log_norm ~ position + lag1")
    assert list(fits.results) == [
        ("deep", 0),
        ("deep", 1),
        ("deep", 2),
        ("shallow", 0),
        ("shallow", 1),
    ]
    alone = models.fit(parts["shallow"], "log_norm ~ position + lag1")
    np.testing.assert_allclose(
        fits.results[("shallow", 1)].bse.to_numpy(), alone.results[1].bse.to_numpy(), rtol=1e-9
    )
    assert list(fits.glance.columns) == ["fit", "method", "model", *GLANCE_COLUMNS[2:]]
    augmented = fits.augment()
    assert list(augmented.columns[:4]) == ["fit", "method", "model", "layer"]
    assert set(augmented["model"]) == {"deep", "shallow"}


def test_a_frame_without_a_model_column_gives_the_plain_tables(parts):
    frame = parts["deep"]
    table = models.position_trend(frame, method="ols").tidy
    assert list(table.columns) == TIDY_COLUMNS
    assert list(models.glance(table).columns) == [
        *GLANCE_COLUMNS[:-2],
        *LEADING_GLANCE_COLUMNS,
        *GLANCE_COLUMNS[-2:],
    ]
    one = models.fit(frame.assign(model="deep"), "log_norm ~ position").tidy
    plain = models.fit(frame, "log_norm ~ position").tidy
    pd.testing.assert_frame_equal(one.drop(columns="model"), plain)
    assert (one["model"] == "deep").all()


def test_layers_asked_for_select_in_every_model(both):
    table = models.position_trend(both, method="ols", layers=[2]).tidy
    assert table[["model", "layer"]].drop_duplicates().values.tolist() == [["deep", 2]]
