"""Tests written for mutants that survived ``python -m benchmarks.mutation``.

Each guards a behaviour the rest of the suite reaches only through results that do not depend
on it (norms are equal on either padding side whatever ``pad_batch`` does with ``side``), or
does not reach at all (options passed on, provenance fields, the exact text of a refusal).
Held here: batching (count, token budget, stable order, padding side), the tidy frame of no
texts, glance and tidy rows (errors and df by term), mixed fits' AIC/BIC, statsmodels result
and notes (the criterion named), the slope test's refusal, OLS's glance against statsmodels
and its statsmodels result, shard provenance (merged across shards) and refusals (a linked
shard), ``write_frames``' sink columns and frame count, ``max_length``, the progress label,
``seconds_extract``, ``frame_from_columns``' norm column (the array given) and its refusal
of token counts for more texts than it has, the t reference of ``cluster_ols_result``, a
failed fit's converged column, a mixed fit whose search did not converge, ``glance``'s
refusal, an outcome far from zero or steep in position that is no exact fit, and OLS's r2
where the terms span the intercept without naming it, and a shard folder's claim while a shard
is measured, texts past a shard's range, the row group size and an unreadable shard's advice.
``benchmarks.mutation.KILLED_BY`` names the mutant each kills.
"""

import fcntl
import hashlib
import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats
from statsmodels.regression.linear_model import OLS
from test_models_lags import dense_stacked_errors, with_initial_conditions

from attnmag import AttnmagError, extract, models
from attnmag.extract.batching import length_batches, pad_batch
from attnmag.extract.frame import COLUMNS, SINK_COLUMNS, frame_from_columns, tidy_frame
from attnmag.extract.shards import (
    merged_provenance,
    read_frame,
    read_shards,
    verified_shards,
    write_frames,
    write_shards,
)
from attnmag.models.mixed import GroupedDesign, reml_maximum, slope_test
from attnmag.models.ols import cluster_ols_result, ols_fit
from attnmag.models.tidy import (
    MIXED_GLANCE_COLUMNS,
    Estimate,
    failed_fit,
    glance,
    glance_row,
    tidy_rows,
)
from tests.mixed_direct import fit_mixed
from tests.simulate import simulated_frame
from tests.simulate_burn_in import burn_in_frame


def test_length_batches_go_longest_first_under_the_count() -> None:
    assert length_batches([3, 9, 5, 4], batch_size=2, max_tokens=100) == [[1, 2], [3, 0]]
    assert length_batches([1] * 5, batch_size=2, max_tokens=100) == [[0, 1], [2, 3], [4]]


def test_length_batches_fill_the_token_budget_exactly_and_no_further() -> None:
    # Padded to its longest text (10): two texts take 20 tokens, three would take 30.
    assert length_batches([10, 10, 10], batch_size=8, max_tokens=20) == [[0, 1], [2]]
    assert length_batches([10, 10, 10], batch_size=8, max_tokens=29) == [[0, 1], [2]]
    assert length_batches([10, 10, 10], batch_size=8, max_tokens=30) == [[0, 1, 2]]
    assert length_batches([10, 4, 3], batch_size=8, max_tokens=19) == [[0], [1, 2]]


def test_length_batches_keep_corpus_order_among_equal_lengths() -> None:
    lengths = np.random.default_rng(0).integers(1, 4, size=60).tolist()
    order = [
        index
        for batch in length_batches(lengths, batch_size=7, max_tokens=10**6)
        for index in batch
    ]
    assert order == sorted(range(60), key=lambda i: (-lengths[i], i))


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_batch_pads_the_side_asked_and_counts_positions_over_real_tokens(side: str) -> None:
    batch = pad_batch([[5, 6, 7], [8]], pad_id=0, side=side)
    if side == "left":
        ids, mask, positions = (
            [[5, 6, 7], [0, 0, 8]],
            [[1, 1, 1], [0, 0, 1]],
            [[0, 1, 2], [0, 0, 0]],
        )
    else:
        ids, mask, positions = (
            [[5, 6, 7], [8, 0, 0]],
            [[1, 1, 1], [1, 0, 0]],
            [[0, 1, 2], [0, 0, 0]],
        )
    assert batch["input_ids"].tolist() == ids
    assert batch["attention_mask"].tolist() == mask
    assert batch["position_ids"].tolist() == positions
    assert all(tensor.dtype == torch.long for tensor in batch.values())


def test_tidy_frame_of_no_texts_is_empty_with_every_column() -> None:
    frame = tidy_frame(sequences=[], token_ids=[], norms=[], layers=[0, 1], token_text={})
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 0
    assert frame["norm"].dtype == np.float32 and frame["position"].dtype == np.int32


def test_glance_row_keeps_booleans_and_the_mixed_columns() -> None:
    stats = {"r2": 0.5, "loglik": -1.0, "aic": 6.0, "bic": 7.0, "sigma": 0.3}
    stats |= {"boundary": np.bool_(True), "var_intercept": 0.0, "var_position": np.nan}
    stats |= {"cov_intercept_position": np.nan}
    fit = Estimate(pd.Series([1.0]), pd.Series([0.1]), 9.0, 10, 3, True, stats, notes=["note"])
    row = glance_row(fit, fit="m", method="mixed", layer=2, seconds=1.5, warnings=["w", "note"])
    assert list(row) == MIXED_GLANCE_COLUMNS
    assert row["boundary"] is True and row["converged"] is True
    assert type(row["var_intercept"]) is float and row["layer"] == 2
    assert row["warnings"] == "w; note"


@pytest.mark.parametrize("measure", ["attention_norms", "update_norms"])
def test_max_length_truncates_each_text_and_counts_it(measure, tiny_gpt2, gpt2_tokenizer) -> None:
    texts = ["one two three four five six seven", "hi"]
    frame = getattr(extract, measure)(
        tiny_gpt2, gpt2_tokenizer, texts, max_length=4, progress=False
    )
    assert frame.groupby("sequence")["position"].max().to_dict() == {0: 3, 1: 0}
    assert frame.attrs["n_truncated"] == 1


def test_tidy_rows_align_standard_errors_by_term_and_are_float64() -> None:
    estimate = pd.Series([1.0, 2.0], index=["a", "b"], dtype=np.float32)
    std_error = pd.Series([0.2, 0.1], index=["b", "a"])
    fit = Estimate(estimate, std_error, np.inf, 10, 3, True, {})
    rows = tidy_rows(fit, fit="m", method="ols", layer=0, conf_level=0.95)
    assert rows["std_error"].tolist() == [0.1, 0.2]
    assert rows["estimate"].dtype == np.float64 and rows["statistic"].tolist() == [10.0, 10.0]


@pytest.mark.parametrize("random_slope, n_params", [(False, 4), (True, 6)])
def test_mixed_aic_and_bic_count_every_parameter(random_slope: bool, n_params: int) -> None:
    # lme4's count: fixed effects, the random-effects covariance's free elements, sigma.
    rows = simulated_frame(40, 1, sd_slope=0.01, seed=5).query("position >= 1")
    fit = fit_mixed(rows, "log_norm ~ position", random_slope=random_slope, cov_type="model")
    loglik = fit.stats["loglik"]
    assert fit.stats["aic"] == pytest.approx(-2 * loglik + 2 * n_params, rel=1e-12)
    assert fit.stats["bic"] == pytest.approx(-2 * loglik + np.log(len(rows)) * n_params, rel=1e-12)


def test_a_mixed_fit_inside_the_space_carries_statsmodels_result() -> None:
    rows = simulated_frame(40, 1, sd_sequence=0.5, seed=2).query("position >= 1")
    fit = fit_mixed(rows, "log_norm ~ position", cov_type="model")
    assert not fit.notes and callable(fit.result)
    np.testing.assert_allclose(fit.result().fe_params, fit.estimate, rtol=1e-6)


def test_a_zero_variance_maximum_says_so_in_its_note() -> None:
    rows = simulated_frame(150, 1, lag1=0.3, lag2=0.1, sd_sequence=0.0, seed=3)
    fit = fit_mixed(rows[rows.position >= 3], "log_norm ~ lag1 + lag2", cov_type="model")
    assert fit.notes == [
        "zero random-effect variance is REML's global maximum: the boundary fit (GLS at "
        "zero variance, i.e. OLS) is reported, MixedLM's optimiser not run"
    ]


def _write(model, tokenizer, folder, texts, **options):
    return write_shards(model, tokenizer, texts, folder, shard_texts=2, progress=False, **options)


def test_shards_keep_their_range_max_length_and_summed_seconds(
    tiny_gpt2, gpt2_tokenizer, tmp_path
) -> None:
    texts = ["one two three four five", "six", " ", ""]
    paths = _write(tiny_gpt2, gpt2_tokenizer, tmp_path, texts, max_length=3)
    attrs = [pd.read_parquet(path).attrs for path in paths]
    assert [(a["shard_start"], a["shard_stop"]) for a in attrs] == [(0, 2), (2, 4)]
    assert [a["max_length"] for a in attrs] == [3, 3]  # the blank shard's too
    frame = read_shards(tmp_path)
    assert frame.groupby("sequence")["position"].max().to_dict() == {0: 2, 1: 0}
    assert frame.attrs["n_truncated"] == 1 and frame.attrs["max_length"] == 3
    assert frame.attrs["seconds_extract"] == round(sum(a["seconds_extract"] for a in attrs), 3)


def test_shard_texts_true_is_refused(tiny_gpt2, gpt2_tokenizer, tmp_path) -> None:
    with pytest.raises(AttnmagError, match="shard_texts must be a whole number"):
        write_shards(tiny_gpt2, gpt2_tokenizer, ["a"], tmp_path, shard_texts=True)


def test_a_rank_that_is_not_a_number_is_one_clear_error(
    tiny_gpt2, gpt2_tokenizer, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("RANK", "first")
    with pytest.raises(AttnmagError) as error:
        _write(tiny_gpt2, gpt2_tokenizer, tmp_path, ["a"])
    assert str(error.value) == (
        "the environment variable RANK='first' must be a whole number "
        "(as torchrun and accelerate launch set it)"
    )


def test_a_manifest_of_another_format_and_a_folder_without_shards_are_refused(
    tiny_gpt2, gpt2_tokenizer, tmp_path
) -> None:
    paths = _write(tiny_gpt2, gpt2_tokenizer, tmp_path, ["a b", "c"])
    for path in paths:
        path.unlink()
    with pytest.raises(AttnmagError, match=r"holds no Parquet shards \(shard-\*\.parquet\)"):
        verified_shards(tmp_path, partial=True)
    run_file = tmp_path / "run.json"
    record = json.loads(run_file.read_text())
    record["arguments"]["format"] = 99
    run_file.write_text(json.dumps(record))
    with pytest.raises(AttnmagError, match="another attnmag version \\(format 99, this one"):
        read_shards(tmp_path)


def test_the_progress_bar_says_what_is_measured(tiny_gpt2, gpt2_tokenizer, capsys) -> None:
    texts = ["one two three"]
    extract.update_norms(tiny_gpt2, gpt2_tokenizer, texts, sites="attn", heads=True, progress=True)
    assert "attention norms by head" in capsys.readouterr().err
    extract.update_norms(tiny_gpt2, gpt2_tokenizer, texts, sites=("attn", "mlp"), progress=True)
    assert "attn/mlp norms:" in capsys.readouterr().err


@pytest.mark.parametrize("measure", ["attention_norms", "update_norms"])
def test_seconds_extract_is_the_time_the_run_took(measure, tiny_gpt2, gpt2_tokenizer) -> None:
    began = time.perf_counter()
    frame = getattr(extract, measure)(tiny_gpt2, gpt2_tokenizer, ["one two"], progress=False)
    took = time.perf_counter() - began
    assert 0 < frame.attrs["seconds_extract"] <= round(took, 3) + 1e-3


def _ols_design(rows: pd.DataFrame, formula: str) -> tuple[GroupedDesign, list[str]]:
    """The design of ``formula`` on ``rows``, with the random intercept ``ols_fit`` expects."""
    model = OLS.from_formula(formula, rows)
    ones = np.ones((len(rows), 1))
    design = GroupedDesign.of(model.exog, ones, model.endog, rows["sequence"].to_numpy())
    return design, list(model.exog_names)


@pytest.mark.parametrize(
    "formula",
    [
        "log_norm ~ position + lag1",  # an intercept: R2 about the mean
        "log_norm ~ 0 + position + lag1",  # none: R2 about zero, as statsmodels and R's lm
        "log_norm ~ 0 + C(position % 2) + lag1",  # an intercept spanned by the dummies
    ],
)
def test_ols_glance_is_statsmodels(formula: str) -> None:
    rows = simulated_frame(30, 1, lag1=0.3, seed=7).query("position >= 1")
    design, terms = _ols_design(rows, formula)
    fit = ols_fit(design, terms, 30, cov_type="model")
    reference = OLS.from_formula(formula, rows).fit()
    assert fit.stats["r2"] == pytest.approx(reference.rsquared, rel=1e-9)
    assert fit.stats["loglik"] == pytest.approx(reference.llf, rel=1e-9)
    assert fit.stats["aic"] == pytest.approx(reference.aic, rel=1e-9)
    assert fit.stats["bic"] == pytest.approx(reference.bic, rel=1e-9)


def test_ols_results_refit_the_rows_by_default_and_only_under_cr1() -> None:
    rows = simulated_frame(30, 1, seed=8).query("position >= 1")
    formula = "log_norm ~ position"
    design, terms = _ols_design(rows, formula)
    fit = ols_fit(design, terms, 30, rows=lambda: rows, formula=formula)  # CR1, the default
    np.testing.assert_allclose(fit.result().bse, fit.std_error, rtol=1e-9)
    # A CR1 refit would report other errors than the classical or CR2 ones: none is offered.
    for cov_type in ("model", "cr2"):
        assert ols_fit(design, terms, 30, cov_type=cov_type, rows=lambda: rows).result is None


@pytest.mark.parametrize("ml, criterion", [(False, "REML"), (True, "the likelihood")])
def test_a_zero_variance_note_names_the_criterion_maximised(ml: bool, criterion: str) -> None:
    rows = simulated_frame(150, 1, lag1=0.3, lag2=0.1, sd_sequence=0.0, seed=3)
    rows = rows[rows.position >= 3]
    x = np.column_stack([np.ones(len(rows)), rows["lag1"], rows["lag2"]])
    design = GroupedDesign.of(x, x[:, :1], rows["log_norm"].to_numpy(), rows["sequence"])
    cov_rel, _, notes = reml_maximum(replace(design, ml=ml))
    assert not cov_rel.any()
    assert notes[0].startswith(f"zero random-effect variance is {criterion}'s global maximum")


def test_the_slope_test_refuses_a_design_it_cannot_test() -> None:
    rows = simulated_frame(20, 1, seed=4).query("position >= 1")
    x = np.column_stack([np.ones(len(rows)), rows["position"]])
    y, groups = rows["log_norm"].to_numpy(), rows["sequence"]
    slope, intercept = GroupedDesign.of(x, x, y, groups), GroupedDesign.of(x, x[:, :1], y, groups)
    message = "slope_test needs an ML design with a random intercept and slope"
    for refused in (slope, replace(intercept, ml=True)):  # REML; no random slope
        with pytest.raises(ValueError, match=message):
            slope_test(refused)


def test_tidy_rows_align_df_by_term_and_store_it_as_float64() -> None:
    estimate = pd.Series([1.0, 2.0], index=["a", "b"])
    std_error = pd.Series([0.5, 0.5], index=["a", "b"])
    by_term = Estimate(estimate, std_error, pd.Series([50, 3], index=["b", "a"]), 10, 3, True, {})
    rows = tidy_rows(by_term, fit="m", method="cr2", layer=0, conf_level=0.95)
    assert rows["df"].tolist() == [3.0, 50.0]
    np.testing.assert_allclose(rows["p_value"], 2 * stats.t.sf([2.0, 4.0], [3, 50]))
    whole = Estimate(estimate, std_error, 7, 10, 3, True, {})
    assert tidy_rows(whole, fit="m", method="ols", layer=0, conf_level=0.95)["df"].dtype == float


def _frames_with_sink(n_texts: int) -> list[pd.DataFrame]:
    """Two shards' simulated frames, with the sink columns a ``sink=True`` run stores."""
    frame = simulated_frame(n_texts, 1, seed=9)
    rng = np.random.default_rng(9)
    frame["sink_weight"] = rng.uniform(size=len(frame)).astype(np.float32)
    frame["sink_norm"] = rng.uniform(size=len(frame)).astype(np.float32)
    half = frame["sequence"] < n_texts // 2
    return [frame[half].reset_index(drop=True), frame[~half].reset_index(drop=True)]


def test_write_frames_keeps_the_sink_columns(tmp_path) -> None:
    frames = _frames_with_sink(4)
    write_frames(frames, tmp_path / "norms", n_texts=4, shard_texts=2, layers=[0])
    stored = read_frame(tmp_path / "norms")
    for column in SINK_COLUMNS:
        assert stored[column].tolist() == pd.concat(frames)[column].tolist()


@pytest.mark.parametrize(("n_frames", "message"), [(1, "1 frames for the 2"), (3, "more frames")])
def test_write_frames_refuses_a_frame_count_other_than_the_shards(
    n_frames, message, tmp_path
) -> None:
    frames = (_frames_with_sink(4) * 2)[:n_frames]
    with pytest.raises(AttnmagError, match=f"{message}.* shards of 4 texts"):
        write_frames(frames, tmp_path / "norms", n_texts=4, shard_texts=2, layers=[0])


def test_merged_provenance_lists_the_values_shards_disagree_on() -> None:
    shards = [{"device": "cuda:0", "dtype": "float32"}, {"device": "cuda:1", "dtype": "float32"}]
    merged = merged_provenance(shards)
    assert merged["device"] == ["cuda:0", "cuda:1"] and merged["dtype"] == "float32"


def test_a_shard_that_is_a_link_is_refused(tiny_gpt2, gpt2_tokenizer, tmp_path) -> None:
    folder = tmp_path / "norms"
    path = _write(tiny_gpt2, gpt2_tokenizer, folder, ["a b", "c"])[0]
    target = tmp_path / "elsewhere.parquet"
    path.rename(target)
    path.symlink_to(target)
    with pytest.raises(AttnmagError, match=f"{path} is not a file: a shard is a Parquet file"):
        verified_shards(folder)


def test_cluster_errors_of_few_texts_are_the_dense_stacked_sandwich() -> None:
    # Eight texts: each text's share of the Fisher information, which Mancl and DeRouen's
    # correction removes, is large enough for every element of it to show in the errors
    # (the finite differences agree to about 1e-6 here).
    frame = burn_in_frame(8, 1, seed=2)
    fits = models.lag_effects(frame, n_jobs=1)
    table, summary = fits.tidy, fits.glance.iloc[0]
    assert summary.var_intercept > 0  # inside the space: the variance components enter
    rows = frame.loc[frame.position >= 3, ["sequence", "position", "log_norm", "lag1", "lag2"]]
    scale = summary.sigma**2
    theta = np.r_[table.estimate, scale, summary.var_intercept / scale]
    expected = dense_stacked_errors(with_initial_conditions(rows, first=1), theta)
    np.testing.assert_allclose(table.std_error, expected, rtol=1e-5)


def _two_texts(lengths: list[int]) -> dict:
    """``frame_from_columns``' arguments for texts 0 and 2 (3 and 2 tokens) over two layers,
    with the texts' token counts ``lengths`` and a seeded float32 ``norm`` of 10 rows."""
    norm = np.random.default_rng(0).uniform(1, 2, size=10).astype(np.float32)
    return dict(
        sequences=np.array([0, 2]),
        lengths=np.array(lengths),
        token_ids=np.array([5, 6, 7, 5, 8]),
        norm=norm,
        layers=[0, 1],
        token_text={5: "a", 6: "b", 7: "c", 8: "a"},
    )


def test_frame_from_columns_keeps_the_norm_array_as_its_column() -> None:
    """The docstring's promise: the ``norm`` column is the array given, not a copy of it (a
    frame of every layer's norms is the run's largest allocation)."""
    arguments = _two_texts([3, 2])
    frame = frame_from_columns(**arguments)
    assert np.shares_memory(frame["norm"].to_numpy(), arguments["norm"])
    assert frame["norm"].tolist() == arguments["norm"].tolist()
    assert frame["token"].tolist() == ["a", "b", "c"] * 2 + ["a", "a"] * 2


def test_frame_from_columns_refuses_lengths_of_more_texts_than_sequences() -> None:
    """Three token counts for two texts (the norms sized to the counts) would leave the third
    text's rows unwritten, whatever np.empty held: refused instead."""
    arguments = _two_texts([3, 1, 1])
    with pytest.raises(ValueError):  # zip's strict check
        frame_from_columns(**arguments)


def test_cluster_ols_result_tests_on_t_with_groups_minus_one_df() -> None:
    """statsmodels' result says what the docstring and the tidy rows say: t on G - 1 df."""
    rows = simulated_frame(30, 1, seed=10).query("position >= 1")
    result = cluster_ols_result(rows, "log_norm ~ position")
    df = rows["sequence"].nunique() - 1
    expected = 2 * stats.t.sf(np.abs(result.tvalues), df)
    np.testing.assert_allclose(result.pvalues, expected, rtol=1e-10)
    half = stats.t.ppf(0.975, df) * result.bse
    np.testing.assert_allclose(result.conf_int(), np.c_[result.params - half, result.params + half])


def test_a_failed_fit_is_not_converged_in_a_boolean_column() -> None:
    """A failed fit's tidy rows are NaN and not converged, as a bool like a fitted group's (a
    column of objects would break ``tidy[tidy.converged]``)."""
    failed = failed_fit(["Intercept", "position"], n_obs=10, n_groups=2, message="failed")
    rows = tidy_rows(failed, fit="position_trend", method="ols", conf_level=0.95, layer=0)
    assert rows["estimate"].isna().all() and rows["p_value"].isna().all()
    assert rows["converged"].dtype == bool and not rows["converged"].any()


def test_a_mixed_fit_whose_search_did_not_converge_says_so(monkeypatch) -> None:
    """With a gradient tolerance no search can meet, the random-slope search reports no
    convergence: the fit says so although its estimates are finite."""
    rows = simulated_frame(40, 1, sd_slope=0.01, seed=5).query("position >= 1")
    monkeypatch.setattr(models.mixed, "SEARCH_GTOL", -1.0)
    fit = fit_mixed(rows, "log_norm ~ position", random_slope=True, cov_type="model")
    assert np.isfinite(fit.estimate).all() and np.isfinite(fit.std_error).all()
    assert not fit.converged


def test_glance_of_rows_without_glance_says_where_glance_rows_are() -> None:
    with pytest.raises(AttnmagError, match="or read_fits of a folder with glance.csv$"):
        glance(pd.DataFrame({"fit": ["position_trend"], "method": ["ols"], "term": ["position"]}))


@pytest.mark.parametrize("shift, trend", [(1e6, 0.0), (0.0, 100.0)])
def test_a_noisy_outcome_far_from_zero_or_steep_is_no_exact_fit(shift, trend) -> None:
    """Adding a constant or a multiple of position to the outcome leaves its residuals and the
    text effect as they were: the fit is not taken for an exact one (no note, a variance)."""
    rows = simulated_frame(40, 1, sd_sequence=0.5, seed=2).query("position >= 1")
    base = fit_mixed(rows, "log_norm ~ position", cov_type="model")
    moved = rows.assign(log_norm=rows["log_norm"] + shift + trend * rows["position"])
    fit = fit_mixed(moved, "log_norm ~ position", cov_type="model")
    assert not fit.notes and base.stats["var_intercept"] > 0
    assert fit.stats["var_intercept"] == pytest.approx(base.stats["var_intercept"], rel=0.1)


def test_ols_r2_is_centred_where_the_terms_span_the_intercept_unnamed() -> None:
    """``position * 0.001`` and ``1 - position`` span the intercept without naming it: the
    column space of ``Intercept + position``, so the same fit and the same centred r2 (the
    residual of 1 on such columns is rounding, not zero)."""
    frame = simulated_frame(200, 1, seed=3)
    formulas = ["log_norm ~ position", "log_norm ~ 0 + I(position * 0.001) + I(1 - position)"]
    named, unnamed = (models.glance(models.fit(frame, f, method="ols", n_jobs=1)) for f in formulas)
    assert unnamed.r2.iloc[0] == pytest.approx(named.r2.iloc[0], rel=1e-9)
    assert unnamed.sigma.iloc[0] == pytest.approx(named.sigma.iloc[0], rel=1e-9)


def test_a_claim_is_not_taken_over_while_a_shard_is_being_measured(tmp_path) -> None:
    folder = tmp_path / "norms"
    with pytest.raises(AttnmagError, match="0 frames for the 2 shards"):
        write_frames([], folder, n_texts=4, shard_texts=2, layers=[5])  # a claim, no shard
    frames = _frames_with_sink(4)
    with (folder / ".shard-00000.parquet.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another open file: as another process's claim
        with pytest.raises(AttnmagError, match="a run with other arguments"):
            write_frames(frames, folder, n_texts=4, shard_texts=2, layers=[0])
    paths = write_frames(frames, folder, n_texts=4, shard_texts=2, layers=[0])  # taken over
    assert len(verified_shards(folder)) == len(paths) == 2


def test_a_shard_holding_a_text_past_its_range_is_refused(tmp_path) -> None:
    first, second = _frames_with_sink(4)
    first.loc[first["sequence"] == 1, "sequence"] = 2  # shard 0 holds texts 0 and 1 only
    write_frames([first, second], tmp_path / "norms", n_texts=4, shard_texts=2, layers=[0])
    with pytest.raises(AttnmagError, match="does not hold the rows run.json recorded"):
        read_frame(tmp_path / "norms")


def test_write_frames_passes_the_row_group_size_on(tmp_path) -> None:
    frames = _frames_with_sink(4)
    paths = write_frames(
        frames, tmp_path / "n", n_texts=4, shard_texts=2, layers=[0], row_group_size=7
    )
    for path, frame in zip(paths, frames, strict=True):
        assert pq.ParquetFile(path).metadata.num_row_groups == -(-len(frame) // 7)


def test_an_unreadable_shard_with_its_recorded_checksum_says_what_to_do(tmp_path) -> None:
    folder = tmp_path / "norms"
    path = write_frames(_frames_with_sink(4), folder, n_texts=4, shard_texts=2, layers=[0])[0]
    path.write_bytes(b"not parquet")
    record = json.loads((folder / "run.json").read_text())
    record["shards"][path.name]["sha256"] = hashlib.sha256(b"not parquet").hexdigest()
    (folder / "run.json").write_text(json.dumps(record))
    advice = (
        "is not a readable Parquet shard; remove it and rerun the extraction to measure it again"
    )
    with pytest.raises(AttnmagError, match=f"{path}.* {advice}$"):
        verified_shards(folder)
