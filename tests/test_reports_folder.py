"""Tests of the report on a shard folder (``reports.folder``): the report its frame gives,
without reading the folder's rows into memory.

Folders come from ``write_shards`` on a tiny random GPT-2 (plain, and with every site and
the heads), and from a simulated frame of long texts (positions pooled into bins). Against
the in-memory report on ``read_frame`` of the same folder: every aggregate equal (keys,
``n`` and ``n_groups`` exactly; means, standard errors and interval bounds to 1e-9
relative), the same findings, the same CSV tables, figures and documents (but for the
wall time); a folder's means of bins of positions against statsmodels' cluster-robust
intercept on the same rows. The memory test makes every way of reading rows into pandas
fail and records the size of every table DuckDB returns: none grows with the rows.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import statsmodels.formula.api as smf
from matplotlib.figure import Figure
from simulate import simulated_frame
from test_models_stream import write_folder

from attnmag import AttnmagError, models, reports
from attnmag.extract import read_frame
from attnmag.extract.shards import write_shards
from attnmag.reports import folder as folder_module
from attnmag.reports import summaries, write
from attnmag.reports.findings import findings
from attnmag.reports.folder import (
    open_folder,
    positions_between,
    row_count,
    sample_note,
    sample_rows,
    where_in,
)

TEXTS = [
    f"Text {i} says " + "rather more, and then some, " * (i % 7) + "the end." for i in range(14)
]
#: The columns of ``mean_ci`` compared to 1e-9 (relative); the others must be equal.
NUMBERS = ("mean", "std_error", "conf_low", "conf_high", "log_mean", "log_low", "log_high")
#: Tables the fits give on a few texts: the trend and lag methods fitted in these tests.
FAST_FITS = {"trend_methods": ("ols", "aggregate"), "lag_methods": ("ols", "gmm")}


def tiny_model(model_dir: Path):
    """The tiny GPT-2 of ``tiny_model_dir`` and its tokenizer."""
    from transformers import GPT2LMHeadModel, GPT2Tokenizer

    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    return model, GPT2Tokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def plain(tiny_model_dir, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """A plain run of 14 texts in 3 shards, and its frame."""
    folder = tmp_path_factory.mktemp("plain") / "norms"
    write_shards(*tiny_model(tiny_model_dir), TEXTS, folder, shard_texts=5, progress=False)
    return read_frame(folder), folder


@pytest.fixture(scope="module")
def grouped(tiny_model_dir, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """A run with every site and the heads, of 10 texts in 2 shards, and its frame."""
    folder = tmp_path_factory.mktemp("grouped") / "norms"
    model, tokenizer = tiny_model(tiny_model_dir)
    sites = ("attn", "mlp", "resid")
    write_shards(
        model, tokenizer, TEXTS[:10], folder, shard_texts=5, sites=sites, heads=True, progress=False
    )
    return read_frame(folder), folder


@pytest.fixture(scope="module")
def long(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """A simulated frame of 24 texts of 60 to 300 tokens, as a 3-shard folder."""
    frame = simulated_frame(24, 2, length=(60, 300), seed=6)
    folder = tmp_path_factory.mktemp("long") / "norms"
    write_folder(frame, folder, shard_texts=8)
    return read_frame(folder), folder


def assert_same_means(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same keys, ``n``, ``n_groups`` and dtypes; the numbers of ``NUMBERS`` to 1e-9 (and
    1e-12 absolute: the standard error of the first token, which is the same token in every
    text, is zero but for rounding)."""
    assert list(got.columns) == list(expected.columns)
    exact = [c for c in expected.columns if c not in NUMBERS and c != "position"]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    for column in [c for c in (*NUMBERS, "position") if c in expected.columns]:
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-9, atol=1e-12)


AGGREGATES = {
    "layer_means log_norm": lambda d: summaries.layer_means(d),
    "layer_means norm, every position": lambda d: summaries.layer_means(
        d, value="norm", first_position=0, conf_level=0.9
    ),
    "position_means": lambda d: summaries.position_means(d, max_position=20),
    "position_means log_norm, layers 0 and 2": lambda d: summaries.position_means(
        d, value="log_norm", layers=[0, 2]
    ),
    "position_means_across_layers": lambda d: summaries.position_means_across_layers(d),
    "means_by_position in bins of 4": lambda d: summaries.means_by_position(
        positions_between(d, last=30), value="log_norm", by=["layer"], bin_width=4
    ),
    "mean_ci by layer alone": lambda d: summaries.mean_ci(
        d, value="log_norm", by=["layer"], conf_level=0.8
    ),
    "sequence_lengths": lambda d: summaries.sequence_lengths(d),
}


@pytest.mark.parametrize("name", AGGREGATES)
def test_aggregates_of_a_plain_folder_equal_the_frames(plain, name):
    frame, folder = plain
    got, expected = AGGREGATES[name](open_folder(folder)), AGGREGATES[name](frame)
    if name == "sequence_lengths":
        pd.testing.assert_frame_equal(got, expected)
    else:
        assert_same_means(got, expected)


def test_aggregates_of_a_grouped_folder_equal_the_frames(grouped):
    frame, path = grouped
    folder = open_folder(path)
    by = ["site", "layer", "head"]
    for name, aggregate in AGGREGATES.items():
        if name == "means_by_position in bins of 4":
            got = summaries.means_by_position(
                positions_between(folder, last=30), value="log_norm", by=by, bin_width=4
            )
            expected = summaries.means_by_position(
                positions_between(frame, last=30), value="log_norm", by=by, bin_width=4
            )
        else:
            got, expected = aggregate(folder), aggregate(frame)
        if name == "sequence_lengths":
            pd.testing.assert_frame_equal(got, expected)
        else:
            assert {"site", "head"} <= set(got.columns) or name.startswith("mean_ci")
            assert_same_means(got, expected)
    attn = where_in(where_in(folder, "site", ["attn"]), "head", [-1])
    assert_same_means(
        summaries.site_ratios(where_in(folder, "head", [-1]), conf_level=0.9),
        summaries.site_ratios(frame[frame["head"] == -1], conf_level=0.9),
    )
    assert_same_means(
        summaries.layer_means(attn),
        summaries.layer_means(frame[(frame["site"] == "attn") & (frame["head"] == -1)]),
    )


def test_position_bins_of_a_folder_of_long_texts_equal_the_frames(long):
    frame, path = long
    folder = open_folder(path)
    got = summaries.position_means(folder, max_position=300)
    expected = summaries.position_means(frame, max_position=300)
    assert set(expected["bin_width"]) == {8}
    assert_same_means(got, expected)
    for by in (["layer"], []):
        assert_same_means(
            summaries.means_by_position(folder, value="log_norm", by=by),
            summaries.means_by_position(frame, value="log_norm", by=by),
        )


def test_a_folders_bin_means_are_statsmodels_cluster_robust_means(long):
    frame, path = long
    got = summaries.means_by_position(open_folder(path), value="log_norm", by=["layer"])
    for row in got[got["n_groups"] > 1].sample(5, random_state=0).itertuples():
        rows = frame[
            (frame["layer"] == row.layer)
            & frame["position"].between(row.first_position, row.last_position)
        ]
        fit = smf.ols("log_norm ~ 1", rows).fit(
            cov_type="cluster", cov_kwds={"groups": rows["sequence"].to_numpy()}, use_t=True
        )
        low, high = fit.conf_int().loc["Intercept"]
        assert row.n == len(rows) and row.n_groups == rows["sequence"].nunique()
        np.testing.assert_allclose(
            [row.mean, row.std_error, row.conf_low, row.conf_high],
            [fit.params["Intercept"], fit.bse["Intercept"], low, high],
            rtol=1e-9,
        )


def test_views_of_a_folder_count_and_select_as_the_frame_does(grouped):
    frame, path = grouped
    folder = open_folder(path)
    assert row_count(folder) == len(frame)
    assert folder.attrs == frame.attrs
    heads = where_in(positions_between(folder, 1, 5), "head", [0, 2])
    expected = frame[frame["position"].between(1, 5) & frame["head"].isin([0, 2])]
    assert row_count(heads) == len(expected)
    assert reports.select_layers(heads, [1]).view_cells()["layer"].unique().tolist() == [1]
    with pytest.raises(AttnmagError, match=r"layers \[7\] are not in the data"):
        reports.select_layers(folder, [7])
    with pytest.raises(AttnmagError, match="no rows to average"):
        summaries.layer_means(positions_between(folder, first=1000))


def test_the_sample_is_seeded_and_said(plain):
    frame, path = plain
    folder = open_folder(path, sample_texts=4, seed=3)
    rows, note = sample_rows(folder)
    picked = sorted(rows["sequence"].unique().tolist())
    assert len(picked) == 4 and picked == folder.picked().tolist()
    assert note == sample_note(folder) == "a seeded sample of 4 of the 14 texts"
    expected = frame[frame["sequence"].isin(picked)]
    pd.testing.assert_frame_equal(
        rows.reset_index(drop=True), expected[rows.columns].reset_index(drop=True)
    )
    again, _ = sample_rows(open_folder(path, sample_texts=4, seed=3))
    pd.testing.assert_frame_equal(rows, again)
    other = open_folder(path, sample_texts=4, seed=4).picked().tolist()
    assert other != picked
    fig = Figure()
    grid = reports.plot_token_grid(folder, ax=fig.subplots())
    assert grid.get_ylabel() == "text (4 of 14 sampled, longest first)"
    assert grid.get_images()[0].get_array().shape[0] == 4
    violins = reports.plot_norm_violins(folder, ax=Figure().subplots())
    assert violins.get_title().endswith("drawn from every token of 4 sampled texts)")
    whole, none = sample_rows(open_folder(path))
    assert none is None and len(whole) == len(frame)
    with pytest.raises(AttnmagError, match="sample_texts must be 1 or more"):
        open_folder(path, sample_texts=0)


@pytest.mark.parametrize("case", ["plain", "grouped"])
def test_findings_of_a_folder_are_the_frames(case, request):
    frame, path = request.getfixturevalue(case)
    tables = write.fit_tables(frame, **FAST_FITS)
    part = write.series_parts(frame, tables)[0]
    folder_part = write.series_parts(open_folder(path), tables)[0]
    options = {
        "trend": part.tables["position_trend"],
        "lags": part.tables["lag_effects"],
        "glance": part.tables["glance"],
    }
    got, expected = findings(folder_part.frame, **options), findings(part.frame, **options)
    for key in expected:
        assert got[key].sentences == expected[key].sentences
        assert_same_numbers(got[key].numbers, expected[key].numbers)


def assert_same_numbers(got: object, expected: object) -> None:
    """Floats equal to 1e-12 (relative; DuckDB and numpy sum in different orders), all else
    (counts, layer choices, text) exactly, through nested dicts, lists and tuples."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys()
        for key in expected:
            assert_same_numbers(got[key], expected[key])
    elif isinstance(expected, list | tuple):
        assert type(got) is type(expected) and len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert_same_numbers(a, b)
    elif isinstance(expected, float | np.floating):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15, nan_ok=True)
    else:
        assert got == expected


def documents(paths: dict[str, Path]) -> dict[str, bytes]:
    """Each file written, the wall time (the one line that may differ) taken out."""
    out = {}
    for name, path in paths.items():
        data = path.read_bytes()
        if name in ("report.md", "index.html"):
            data = re.sub(rb"wall time.*?\n", b"", data)
        out[name] = data
    return out


@pytest.mark.parametrize("case", ["plain", "grouped"])
def test_the_report_on_a_folder_is_the_report_on_its_frame(case, request, tmp_path):
    frame, path = request.getfixturevalue(case)
    tables = models.fit_all(frame, **FAST_FITS)
    expected = reports.write_report(frame, tmp_path / "frame", tables=tables)
    got = reports.write_report(path, tmp_path / "folder", tables=tables)
    assert sorted(got) == sorted(expected)
    assert {"index.html", "report.md", "glance.csv", "position_trend.csv"} <= set(got)
    assert len([name for name in got if name.endswith(".png")]) == 5 + 2 * (case == "grouped")
    assert documents(got) == documents(expected)


def test_a_folder_reports_tables_are_fitted_from_the_folder(plain):
    frame, path = plain
    got = write.fit_tables(open_folder(path), **FAST_FITS)
    expected = write.fit_tables(frame, **FAST_FITS)
    numbers = ["estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]
    for name in ("position_trend", "lag_effects"):
        table, fitted = got[name], expected[name]
        kept = [c for c in fitted.columns if c not in [*numbers, "p_adjusted"]]
        pd.testing.assert_frame_equal(table[kept], fitted[kept])
        for method, rtol in (("ols", 1e-9), ("aggregate", 1e-9), ("gmm", 1e-6)):
            rows = (fitted["method"] == method).to_numpy()
            for column in numbers:
                np.testing.assert_allclose(
                    table.loc[rows, column], fitted.loc[rows, column], rtol=rtol, atol=1e-12
                )
    assert list(got["glance"]["method"]) == list(expected["glance"]["method"])


def test_a_large_folders_report_samples_texts_and_reads_no_rows(plain, tmp_path, monkeypatch):
    frame, path = plain
    results = {"run_query": [], "run_by_part": []}

    def recorded(name):
        run = getattr(folder_module, name)

        def wrapped(*args, **kwargs):
            table = run(*args, **kwargs)
            results[name].append(table)
            return table

        return wrapped

    def refused(*args, **kwargs):
        raise AssertionError("the rows were read into pandas")

    for name in results:
        monkeypatch.setattr(folder_module, name, recorded(name))
    monkeypatch.setattr(pd, "read_parquet", refused)
    monkeypatch.setattr(pq, "read_table", refused)
    monkeypatch.setattr(write, "read_frame", refused)
    paths = reports.write_report(path, tmp_path, **FAST_FITS, sample_texts=3)
    n_texts, n_layers = frame["sequence"].nunique(), frame["layer"].nunique()
    n_shards = len(list(path.glob("*.parquet")))
    picked = open_folder(path, sample_texts=3).picked()
    sampled = [t for t in results["run_query"] if "log_norm" in t.columns]  # rows
    assert sampled and all(len(t) <= frame["sequence"].isin(picked).sum() for t in sampled)
    whole = [len(t) for t in results["run_query"] if not any(t is s for s in sampled)]
    assert max(whole) <= max(n_texts, n_layers)  # lengths, texts, groups: no rows
    cells = n_layers * (models.MAX_POSITION + 1)  # the most cells a report averages
    assert max(len(t) for t in results["run_by_part"]) <= cells * n_shards < len(frame)
    text = paths["report.md"].read_text()
    assert "a seeded sample of 3 of the 14 texts" in text
    assert "of every text" in text


def test_bad_sources_are_refused_in_one_line(tmp_path):
    with pytest.raises(AttnmagError, match="no frame at"):
        reports.write_report(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(AttnmagError, match="not a list"):
        reports.write_report([1, 2], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AttnmagError, match="empty"):
        reports.write_report(tmp_path / "empty", tmp_path / "out")
