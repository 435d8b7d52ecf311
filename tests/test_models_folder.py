"""The public fits on a shard folder's path equal the same fits on its frame.

``models.position_trend``, ``models.lag_effects``, ``models.fit_all`` and ``models.fit`` take
the path of a folder written by ``extract.write_shards`` and stream it without building the
frame; each is compared with the same call on the frame: OLS and the aggregate fit to 1e-9
(relative) in estimates and standard errors, the REML and Arellano-Bond fits to 1e-6, with
the tables' columns, terms, groups, rows and sequences equal. The folders are simulated
frames written through the shard writer's own functions, in shards of a few texts, and read
in batches of a few hundred rows, so that texts straddle batches; one has ``site`` and
``head`` grouping columns, and a sequence-level ``label`` column for formulas.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from simulate import simulated_frame, with_derived, write_folder

from attnmag import AttnmagError, models
from attnmag.cli import main
from attnmag.models import formula as formula_module

NUMBERS = ["estimate", "std_error"]
TOLERANCE = {"ols": 1e-9, "aggregate": 1e-9, "mixed": 1e-6, "initial_conditions": 1e-6, "gmm": 1e-6}
#: The glance numbers: the variance components of a REML fit agree less closely where REML
#: is flat (statsmodels' optimum and the search's maximum are both within 1e-7 of it).
GLANCE_TOLERANCE = TOLERANCE | {"mixed": 1e-5, "initial_conditions": 1e-5}
TREND_CASES = [
    ("ols", {}),
    ("aggregate", {}),
    ("mixed", {}),
    ("mixed", {"random_slope": True, "cov_type": "model"}),
]
LAG_CASES = [("ols", {}), ("initial_conditions", {}), ("gmm", {})]
FORMULA_CASES = [
    ("log_norm ~ position + C(label)", {}),
    ("log_norm ~ position + C(label)", {"method": "mixed"}),
    ("log_norm ~ position * C(label)", {"method": "mixed", "re_formula": "~position"}),
    ("log_norm ~ 0 + C(label) + lag1 + lag2", {"positions": (0, 25)}),
    ("np.log(norm) ~ position + I(position ** 2)", {"method": "mixed", "cov_type": "model"}),
]


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a sequence-level ``label`` of three levels that shifts ``log_norm``
    (and its lags)."""
    labels = np.array(["fresh", "rotten", "mixed"])[frame["sequence"].to_numpy() % 3]
    shift = pd.Series({"fresh": 0.0, "rotten": 0.15, "mixed": -0.1})[labels].to_numpy()
    out = frame.assign(label=labels)
    out["norm"] = np.exp(out["log_norm"] + shift).astype(np.float32)
    return with_derived(out)


def with_sites_and_heads(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s layers as (site, head) series, each's ``log_norm`` (and lags) shifted per
    text differently."""
    rng = np.random.default_rng(7)
    parts = []
    for site in ("attn", "mlp"):
        for head in (0, 1):
            shift = rng.normal(0, 0.3, size=frame["sequence"].max() + 1)[frame["sequence"]]
            part = frame.copy()
            part["norm"] = np.exp(part["log_norm"] + shift).astype(np.float32)
            part["site"] = pd.Categorical([site] * len(part), categories=["attn", "mlp"])
            part["head"] = np.int16(head)
            parts.append(part)
    both = pd.concat(parts, ignore_index=True)
    both = both.sort_values(["sequence", "site", "layer", "head", "position"], kind="stable")
    columns = ["sequence", "site", "layer", "head", *frame.columns.drop(["sequence", "layer"])]
    return with_derived(both[columns].reset_index(drop=True))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """A simulated frame (random intercepts and slopes, lag effects), in 4 shards."""
    frame = simulated_frame(48, 2, lag1=0.3, lag2=0.1, sd_slope=0.01, seed=11)
    return frame, write_folder(frame, tmp_path_factory.mktemp("plain"), shard_texts=13)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """A labelled frame with ``site`` and ``head`` columns, in 3 shards."""
    frame = with_sites_and_heads(labelled(simulated_frame(30, 2, lag1=0.2, seed=12)))
    return frame, write_folder(frame, tmp_path_factory.mktemp("grouped"), shard_texts=10)


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 300 rows, so that texts straddle them."""
    monkeypatch.setattr(formula_module, "BATCH_ROWS", 300)


def assert_same(got: pd.DataFrame, expected: pd.DataFrame, rtol: float) -> None:
    """Same columns, groups, terms and counts; estimates and errors equal to ``rtol``."""
    assert list(got.columns) == list(expected.columns)
    exact = [c for c in got.columns if c not in (*NUMBERS, "statistic", "p_value", "p_adjusted")]
    exact = [c for c in exact if c not in ("conf_low", "conf_high")]
    pd.testing.assert_frame_equal(got[exact], expected[exact])
    for column in NUMBERS:
        np.testing.assert_allclose(got[column], expected[column], rtol=rtol, atol=0)


def assert_same_glance(got: pd.DataFrame, expected: pd.DataFrame, rtol: float) -> None:
    """Same glance columns, counts and flags; the numbers equal to ``rtol`` (``seconds`` and
    ``warnings`` aside)."""
    assert list(got.columns) == list(expected.columns)
    numbers = [
        c for c in expected.columns if expected[c].dtype.kind == "f" and c not in ("seconds",)
    ]
    for column in numbers:
        np.testing.assert_allclose(got[column], expected[column], rtol=rtol, atol=1e-12)
    exact = [c for c in expected.columns if c not in (*numbers, "seconds", "warnings")]
    pd.testing.assert_frame_equal(got[exact], expected[exact])


@pytest.mark.parametrize(("method", "options"), TREND_CASES)
@pytest.mark.parametrize("as_text", [False, True])
def test_position_trend_of_a_folder_equals_the_frames(plain, method, options, as_text):
    frame, folder = plain
    got = models.position_trend(str(folder) if as_text else folder, method=method, **options).tidy
    expected = models.position_trend(frame, method=method, n_jobs=1, **options).tidy
    assert_same(got, expected, TOLERANCE[method])
    assert_same_glance(models.glance(got), models.glance(expected), GLANCE_TOLERANCE[method])


@pytest.mark.parametrize(("method", "options"), LAG_CASES)
def test_lag_effects_of_a_folder_equals_the_frames(plain, method, options):
    frame, folder = plain
    got = models.lag_effects(folder, method=method, n_jobs=3, progress=True, **options).tidy
    expected = models.lag_effects(frame, method=method, n_jobs=1, **options).tidy
    assert_same(got, expected, TOLERANCE[method])


def test_fit_all_of_a_folder_equals_the_frames_with_grouping_columns(grouped):
    frame, folder = grouped
    got = models.fit_all(folder, max_position=20, conf_level=0.9)
    expected = models.fit_all(frame, max_position=20, conf_level=0.9, n_jobs=1)
    assert list(got) == list(expected) == ["position_trend", "lag_effects"]
    assert list(got["position_trend"].tidy.columns[:6]) == [
        "fit",
        "method",
        "site",
        "layer",
        "head",
        "term",
    ]
    for name in ("position_trend", "lag_effects"):
        tidy = got[name].tidy
        for method, table in expected[name].tidy.groupby("method", sort=False):
            mine = tidy[tidy["method"] == method].reset_index(drop=True)
            assert_same(mine, table.reset_index(drop=True), GLANCE_TOLERANCE[method])
    mine, theirs = (pd.concat([fits[n].glance for n in fits]) for fits in (got, expected))
    assert len(mine) == len(theirs) == 6 * 8
    # REML is flat with 30 texts: the folder's fit reports REML's maximum, not lower.
    reml = mine["method"].isin(["mixed", "initial_conditions"])
    assert (mine["loglik"] >= theirs["loglik"] - 1e-9)[reml].all()


@pytest.mark.parametrize(("formula", "options"), FORMULA_CASES)
def test_formula_fit_of_a_folder_equals_the_frames(grouped, formula, options):
    frame, folder = grouped
    got = models.fit(folder, formula, **options)
    expected = models.fit(frame, formula, n_jobs=1, **options)
    method = options.get("method", "ols")
    assert_same(got.tidy, expected.tidy, TOLERANCE[method])
    assert_same_glance(got.glance, expected.glance, GLANCE_TOLERANCE[method])
    assert set(got.tidy["site"]) == {"attn", "mlp"} and set(got.tidy["head"]) == {0, 1}


def test_formula_levels_seen_in_any_shard_are_the_frames(plain):
    """``C(token)``: the levels of every shard, in the frame's order (by token id)."""
    frame, folder = plain
    got = models.fit(folder, "log_norm ~ position + C(token)")
    expected = models.fit(frame, "log_norm ~ position + C(token)")
    assert got.tidy["term"].nunique() > 40
    assert_same(got.tidy, expected.tidy, 1e-9)


def test_folder_fits_read_a_groups_rows_again_for_statsmodels_and_augment(plain):
    frame, folder = plain
    fits = models.fit(folder, "log_norm ~ position")
    assert len(fits.results) == 2 and 0 in fits.results and 2 not in fits.results
    result = fits.results[0]
    row = fits.tidy[fits.tidy.layer == 0]
    np.testing.assert_allclose(result.params, row.estimate, rtol=1e-9)
    np.testing.assert_allclose(result.bse, row.std_error, rtol=1e-9)
    pd.testing.assert_frame_equal(
        fits.augment(), models.fit(frame, "log_norm ~ position").augment(), check_dtype=False
    )


def test_folder_formula_errors_are_one_line(plain, tmp_path):
    frame, folder = plain
    with pytest.raises(AttnmagError, match="center.position. depends on all of a group's rows"):
        models.fit(folder, "log_norm ~ center(position)")
    with pytest.raises(AttnmagError, match=r"names \['label'\], which the frame has no columns"):
        models.fit(folder, "log_norm ~ C(label)")
    with pytest.raises(AttnmagError, match="no frame at"):
        models.fit(tmp_path / "absent", "log_norm ~ position")
    with pytest.raises(AttnmagError, match="not list"):
        models.position_trend([1, 2])
    for data in (folder, frame):  # the same message
        with pytest.raises(AttnmagError, match="^layer 0 has 0 rows from 0 sequences covering"):
            models.fit(data, "log_norm ~ position", positions=(500, 600))
    singular = frame.assign(level=np.where(frame["layer"] == 0, "a", "b"))
    singular_folder = write_folder(singular, tmp_path / "singular", shard_texts=20)
    with pytest.raises(AttnmagError, match="design is singular in layer 0"):
        models.fit(singular_folder, "log_norm ~ position + C(level)")


def test_a_parquet_file_is_read_as_the_frame(plain, tmp_path):
    frame, _ = plain
    frame.to_parquet(tmp_path / "norms.parquet")
    got = models.position_trend(tmp_path / "norms.parquet").tidy
    pd.testing.assert_frame_equal(got, models.position_trend(frame).tidy)


def test_cli_fit_of_a_folder_streams_it(plain, tmp_path, monkeypatch):
    frame, folder = plain
    frame.to_parquet(tmp_path / "norms.parquet")
    options = ["--methods", "ols,aggregate", "--lag-methods", "ols,gmm", "--n-jobs", "1"]
    assert (
        main(
            [
                "--quiet",
                "fit",
                str(tmp_path / "norms.parquet"),
                *options,
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )

    def refused(path: object) -> None:
        raise AssertionError(f"read_frame({path}) on a folder")

    monkeypatch.setattr("attnmag.extract.read_frame", refused)
    assert main(["--quiet", "fit", str(folder), *options, "--out", str(tmp_path / "b")]) == 0
    for name in ("position_trend", "lag_effects"):
        got = pd.read_csv(tmp_path / "b" / f"{name}.csv")
        expected = pd.read_csv(tmp_path / "a" / f"{name}.csv")
        assert_same(got, expected, 1e-6)


def test_formula_fit_of_a_folder_holds_a_batch_and_per_sequence_sums(tmp_path, monkeypatch):
    """Four times the rows (texts four times as long): batches of at most ``BATCH_ROWS``
    rows, and the same per-(group, sequence) sums, whatever the rows."""
    batches, sums = [], []
    reader_rows, cross_products = formula_module._Reader._rows, formula_module._cross_products

    def recording_rows(self, chunk):
        batches.append(len(chunk))
        return reader_rows(self, chunk)

    def recording_sums(*args, **kwargs):
        crosses, covered = cross_products(*args, **kwargs)
        sums.extend(cross.nbytes for cross in crosses.values())
        return crosses, covered

    monkeypatch.setattr(formula_module._Reader, "_rows", recording_rows)
    monkeypatch.setattr(formula_module, "_cross_products", recording_sums)
    seen = {}
    for scale in (1, 4):
        frame = simulated_frame(40, 3, length=(10 * scale, 20 * scale), lag1=0.3, seed=1)
        folder = write_folder(frame, tmp_path / f"x{scale}", shard_texts=10)
        batches.clear(), sums.clear()
        fits = models.fit(folder, "log_norm ~ position + lag1", positions=(1, 10**6))
        assert fits.glance["n_obs"].sum() == frame["lag1"].notna().sum()
        seen[scale] = (len(frame), max(batches), list(sums))
    assert seen[4][0] > 3 * seen[1][0]
    assert formula_module.BATCH_ROWS == 300
    assert seen[1][1] <= 300 and 250 < seen[4][1] <= 300  # a batch less its position-0 rows
    assert seen[1][2] == seen[4][2] == [40 * 5 * 5 * 8] * 3  # sequences x [X | 1 | y]^2
