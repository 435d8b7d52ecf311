"""Tests of fits from a shard folder: equal to the same fits of its frame.

A folder's rows reach DuckDB from its shards, a frame's from memory (``models.source``);
each fit of a folder is compared with ``models.position_trend`` / ``models.lag_effects`` on
the same frame: OLS and the aggregate fit to 1e-9 (relative) in estimates and standard
errors, the REML and Arellano-Bond fits to 1e-6; the tables' columns, dtypes and glance
records match. Folders come from ``write_shards`` on a tiny random GPT-2, and from simulated frames
written through the shard writer's own functions (with and without the ``site``/``head``
grouping columns).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from simulate import simulated_frame, with_derived, write_folder

from attnmag import AttnmagError, models
from attnmag.extract.frame import frame_columns
from attnmag.extract.shards import (
    read_shards,
    write_shards,
)
from attnmag.models import named

CASES = [
    ("position_trend", "ols", {}, 1e-9),
    ("position_trend", "aggregate", {}, 1e-9),
    ("position_trend", "mixed", {}, 1e-6),
    ("position_trend", "mixed", {"cov_type": "model"}, 1e-6),
    ("position_trend", "mixed", {"random_slope": True}, 1e-6),
    ("lag_effects", "ols", {}, 1e-9),
    ("lag_effects", "initial_conditions", {}, 1e-6),
    ("lag_effects", "initial_conditions", {"cov_type": "model"}, 1e-6),
    ("lag_effects", "gmm", {}, 1e-6),
    ("lag_effects", "gmm", {"first_position": 0}, 1e-6),
]
#: One case of each method (and the random intercept's mixed fit).
EACH_METHOD = CASES[:3] + CASES[5:7] + CASES[8:9]
FOLDER_FITS = {"position_trend": models.position_trend, "lag_effects": models.lag_effects}


def with_sites_and_heads(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s layers as four (site, head) series each: the grouping columns of a run
    with sites and heads, with different values in each series."""
    rng = np.random.default_rng(5)
    parts = []
    for site in ("attn", "mlp"):
        for head in (0, 1):
            part = frame.copy()
            shift = rng.normal(0, 0.3, size=part["sequence"].max() + 1)[part["sequence"]]
            part["norm"] = np.exp(part["log_norm"] + shift).astype(np.float32)
            part["site"] = pd.Categorical([site] * len(part), categories=["attn", "mlp"])
            part["head"] = np.int16(head)
            parts.append(part)
    both = pd.concat(parts, ignore_index=True)
    both = both.sort_values(["sequence", "site", "layer", "head", "position"], kind="stable")
    return with_derived(both[frame_columns(["site", "head"])].reset_index(drop=True))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """A simulated frame (random intercepts and slopes, lag effects), as a 4-shard folder."""
    frame = simulated_frame(60, 2, lag1=0.3, lag2=0.1, sd_slope=0.01, seed=3)
    folder = tmp_path_factory.mktemp("simulated")
    write_folder(frame, folder, shard_texts=16)
    return frame, folder


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """A frame with ``site`` and ``head`` columns, as a 3-shard folder."""
    frame = with_sites_and_heads(simulated_frame(30, 2, lag1=0.2, seed=4))
    folder = tmp_path_factory.mktemp("grouped")
    write_folder(frame, folder, shard_texts=10)
    return frame, folder


def assert_same_table(got: models.Fits, expected: models.Fits, rtol: float) -> None:
    """Same columns, dtypes, groups and terms; numbers equal to ``rtol`` (relative)."""
    summary, reference = models.glance(got), models.glance(expected)
    got, expected = got.tidy, expected.tidy
    assert list(got.columns) == list(expected.columns)
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    numbers = ["estimate", "std_error", "statistic", "conf_low", "conf_high", "df"]
    exact = [column for column in got.columns if column not in [*numbers, "p_value"]]
    exact.remove("p_adjusted")
    pd.testing.assert_frame_equal(got[exact], expected[exact])
    np.testing.assert_allclose(got[numbers], expected[numbers], rtol=rtol)
    p_values = ["p_value", "p_adjusted"]
    np.testing.assert_allclose(got[p_values], expected[p_values], rtol=100 * rtol, atol=1e-12)
    assert list(summary.columns) == list(reference.columns)
    fields = ["n_obs", "n_groups", "r2", "loglik", "aic", "bic", "sigma"]
    np.testing.assert_allclose(summary[fields], reference[fields], rtol=rtol)
    assert summary["converged"].tolist() == reference["converged"].tolist()


def in_memory(model: str, frame: pd.DataFrame, method: str, options: dict) -> models.Fits:
    """The in-memory fit of ``model`` by ``method`` on ``frame``."""
    fit = {"position_trend": models.position_trend, "lag_effects": models.lag_effects}[model]
    return fit(frame, method=method, n_jobs=1, progress=False, **options)


@pytest.mark.parametrize(("model", "method", "options", "rtol"), CASES)
def test_folder_fits_equal_the_in_memory_fits(simulated, model, method, options, rtol):
    frame, folder = simulated
    got = FOLDER_FITS[model](folder, method=method, **options)
    assert_same_table(got, in_memory(model, frame, method, options), rtol)


@pytest.mark.parametrize(("model", "method", "options", "rtol"), EACH_METHOD)
def test_folder_fits_run_per_site_layer_and_head(grouped, model, method, options, rtol):
    frame, folder = grouped
    got = FOLDER_FITS[model](folder, method=method, **options)
    assert got.tidy[["site", "layer", "head"]].drop_duplicates().shape[0] == 8
    assert_same_table(got, in_memory(model, frame, method, options), rtol)


def test_folder_fits_of_an_extraction_equal_the_in_memory_fits(tiny_gpt2, gpt2_tokenizer, tmp_path):
    texts = [
        f"Text {i} says " + "rather more, and then some, " * (i % 5) + "the end." for i in range(12)
    ]
    write_shards(tiny_gpt2, gpt2_tokenizer, texts, tmp_path, shard_texts=5, progress=False)
    frame = read_shards(tmp_path)
    for model, method, options, rtol in EACH_METHOD:
        got = FOLDER_FITS[model](tmp_path, method=method, layers=[0, 2], **options)
        expected = in_memory(model, frame, method, {"layers": [0, 2], **options})
        if method in ("mixed", "initial_conditions"):
            # With 12 texts REML is flat along the variance: statsmodels' optimum, which the
            # in-memory fit reports within 1e-7 of REML's maximum, stops up to 1e-5 away
            # from the maximum the folder fit reports, whose REML is not lower.
            got_reml = models.glance(got)["loglik"].to_numpy()
            assert np.all(got_reml >= models.glance(expected)["loglik"].to_numpy() - 1e-9)
            rtol = 1e-4
        assert_same_table(got, expected, rtol)


def test_python_receives_per_sequence_sums_whatever_the_rows(tmp_path, monkeypatch):
    """Four times the rows (texts four times as long) hand Python the same arrays: one row
    of sums per group and sequence, one group at a time."""
    received = []

    def recording(reader, keys):
        for key, columns in original(reader, keys):
            received.append(sum(values.nbytes for values in columns.values()))
            yield key, columns

    original = named.by_group
    monkeypatch.setattr(named, "by_group", recording)
    sizes = {}
    for scale in (1, 4):
        frame = simulated_frame(40, 3, length=(10 * scale, 20 * scale), lag1=0.3, seed=1)
        folder = tmp_path / f"x{scale}"
        write_folder(frame, folder, shard_texts=10)
        received.clear()
        models.lag_effects(folder, method="ols")
        sizes[scale] = (len(frame), list(received))
    assert sizes[4][0] > 3 * sizes[1][0]
    # Per sequence: layer (int16), sequence (int32); n, 9 sums (8 bytes each); first and last
    # position (int32); n_bad (8 bytes).
    row_bytes = 2 + 4 + 8 * (1 + 9) + 4 + 4 + 8
    # First, the leading-position diagnostic's: n, 5 sums and the levels at positions 1-3.
    leading_bytes = 2 + 4 + 8 * (1 + 5 + 3)
    # The leading diagnostic's sums are queried first, then the fit's; the sizes are checked.
    expected = sorted([40 * leading_bytes] * 3 + [40 * row_bytes] * 3)
    assert sorted(sizes[1][1]) == sorted(sizes[4][1]) == expected


def test_bad_folders_and_options_are_one_clear_error(simulated, tmp_path):
    frame, folder = simulated
    with pytest.raises(AttnmagError, match=r"the frame has no layers \[7\]"):
        models.position_trend(folder, layers=[7])
    with pytest.raises(AttnmagError, match="has no method 'lstsq'"):
        models.position_trend(folder, method="lstsq")
    with pytest.raises(
        AttnmagError, match="layer 0 has 5 texts of at least 5 tokens; method 'gmm'"
    ):
        models.lag_effects(write_only(frame[frame.sequence < 5], tmp_path / "few"), method="gmm")
    with pytest.raises(AttnmagError, match="layer 0 has 30 rows from 1 sequences covering"):
        models.position_trend(write_only(frame[frame.sequence == 0], tmp_path / "one"))
    broken = frame.copy()
    broken.loc[broken.index[5], "norm"] = 0.0  # log_norm -inf
    with pytest.raises(AttnmagError, match="missing or infinite values"):
        models.position_trend(write_only(broken, tmp_path / "inf"))
    gap = frame[~((frame.sequence == 3) & (frame.position == 6))]
    gap_folder = write_only(gap, tmp_path / "gap")
    for method in ("initial_conditions", "gmm"):
        with pytest.raises(AttnmagError, match="sequence 3 does not have every position from 3"):
            models.lag_effects(gap_folder, method=method)
    # Without norm, log_norm cannot be computed (the shards store no log_norm or lags).
    with pytest.raises(AttnmagError, match=r"frame 0 has the columns .*, not the folder's"):
        write_only(frame.drop(columns="norm"), tmp_path / "cols")


def write_only(frame: pd.DataFrame, folder: Path) -> Path:
    """``frame`` as a one-shard folder."""
    write_folder(frame, folder, shard_texts=int(frame["sequence"].max()) + 1)
    return folder
