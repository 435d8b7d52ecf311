"""The command line: a whole run on a tiny model, the stage commands, and one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnmag import cli, extract, models
from attnmag.cli import main, parse_layers
from attnmag.outputs import MARKER, mark


def test_run_writes_report_frame_and_tables(source_args, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            Path(sys.executable).parent / "attnmag",
            "--quiet",
            "run",
            *source_args,
            "--out",
            out,
            "--n-jobs",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "index.html")
    names = {p.name for p in out.iterdir()}
    assert {
        "index.html",
        "report.md",
        "figures",
        "norms.parquet",
        "position_trend.csv",
        "lag_effects.csv",
        "glance.csv",
    } <= names
    assert len(list((out / "figures").glob("*.png"))) == 5
    frame = extract.read_frame(out / "norms.parquet")
    assert frame["sequence"].nunique() == 16 and frame.attrs["n_model_layers"] == 3
    trend = pd.read_csv(out / "position_trend.csv")
    assert set(trend["method"]) == {"aggregate", "ols", "mixed"}
    assert not list(tmp_path.glob(".out.partial-*"))


def test_run_raises_an_import_that_failed_in_its_background_thread(
    source_args, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(cli, "LATER", ("attnmag.models", "attnmag.no_such_stage"))
    assert main(["--quiet", "run", *source_args, "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "ModuleNotFoundError: No module named 'attnmag.no_such_stage'" in error
    assert not (tmp_path / "out").exists()


def test_stage_commands_chain(source_args, tmp_path, capsys, monkeypatch):
    common = [*source_args, "--layers", "0,2"]
    assert main(["--quiet", "extract", *common, "--out", str(tmp_path / "norms")]) == 0
    frame = extract.read_frame(tmp_path / "norms")
    assert sorted(frame["layer"].unique()) == [0, 2]

    def refused(path: object) -> None:
        raise AssertionError(f"read_frame({path}): fit and report stream a shard folder")

    monkeypatch.setattr(extract, "read_frame", refused)
    assert (
        main(
            [
                "--quiet",
                "fit",
                str(tmp_path / "norms"),
                "--methods",
                "aggregate,ols",
                "--lag-methods",
                "ols",
                "--conf-level",
                "0.9",
                "--out",
                str(tmp_path / "tables"),
            ]
        )
        == 0
    )
    trend = pd.read_csv(tmp_path / "tables" / "position_trend.csv")
    lags = pd.read_csv(tmp_path / "tables" / "lag_effects.csv")
    assert set(trend["method"]) == {"aggregate", "ols"} and set(lags["method"]) == {"ols"}
    assert (trend["conf_level"] == 0.9).all() and (lags["conf_level"] == 0.9).all()
    expected = models.fit_all(
        frame, trend_methods=["aggregate", "ols"], lag_methods=["ols"], conf_level=0.9
    )
    for name, table in (("position_trend", trend), ("lag_effects", lags)):
        tidy = expected[name].tidy
        assert table[["method", "layer", "term"]].equals(tidy[["method", "layer", "term"]])
        numbers = ["estimate", "std_error", "conf_low", "conf_high"]
        np.testing.assert_allclose(table[numbers], tidy[numbers], rtol=1e-9)
    assert (
        main(
            [
                "--quiet",
                "report",
                str(tmp_path / "norms"),
                "--tables",
                str(tmp_path / "tables"),
                "--format",
                "md",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert (tmp_path / "r" / "report.md").is_file()
    assert not (tmp_path / "r" / "index.html").exists()


def error_of(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit status 2 and exactly one stderr line ``attnmag: error: ...``
    (no traceback, not an unexpected error); return the message."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and err == lines[0] + "\n", err
    assert lines[0].startswith("attnmag: error: ") and "unexpected" not in lines[0], err
    return lines[0].removeprefix("attnmag: error: ")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "no-such-org/no-such-model"], "unknown model 'no-such-org/no-such-model'"),
        (["--dataset", "no-such-org/no-such-dataset"], "unknown corpus"),
        (["--text-column", "body"], "has no text column 'body'"),
    ],
)
def test_bad_input_is_one_line_and_keeps_the_existing_output(
    options, message, source_args, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    mark(out, "run")
    argv = [
        "--quiet",
        "run",
        *source_args,
        *options,
        "--out",
        str(out),
        "--force",
    ]
    assert message in error_of(argv, capsys)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier results"
    assert not list(tmp_path.glob(".out.partial-*"))


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    assert "pass --force" in error_of(["run", "--out", str(out)], capsys)
    assert (out / "keep.txt").read_text() == "earlier results"


def test_layers_option():
    assert parse_layers("0,2,5-7") == [0, 2, 5, 6, 7]


@pytest.fixture
def llama_dir(tmp_path, tiny_llama, gpt2_tokenizer) -> Path:
    """A second tiny model folder: a random Llama of 3 layers and 4 heads (2 key-value)."""
    folder = tmp_path / "llama-tiny"
    tiny_llama.save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return folder


def test_run_measures_several_models_sites_and_heads_into_one_report(
    source_args, llama_dir, corpus_csv, tmp_path, capsys
):
    out = tmp_path / "both"
    argv = [
        "--quiet",
        "run",
        *source_args,
        "--model",
        str(llama_dir),
        "--sites",
        "attn,mlp,resid",
        "--heads",
        "--methods",
        "aggregate,ols",
        "--lag-methods",
        "ols",
        "--n-jobs",
        "1",
        "--format",
        "md",
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    frame = extract.read_frame(out / "norms.parquet")
    assert list(frame["model"].cat.categories) == [Path(source_args[1]).name, "llama-tiny"]
    assert list(frame["site"].cat.categories) == ["attn", "mlp", "resid"]
    assert sorted(frame["head"].unique()) == [-1, 0, 1, 2, 3]
    texts = extract.load_corpus(str(corpus_csv), text_column="review")
    alone = extract.update_norms(
        *extract.load_model(str(llama_dir)),
        texts,
        sites="attn,mlp,resid",
        heads=True,
        progress=False,
    )
    mine = frame[frame["model"] == "llama-tiny"].drop(columns="model").reset_index(drop=True)
    np.testing.assert_allclose(mine["norm"], alone["norm"], rtol=1e-5)
    trend = pd.read_csv(out / "position_trend.csv")
    assert list(trend.columns[:6]) == ["fit", "method", "model", "site", "layer", "head"]
    assert len(trend[["model", "site", "layer", "head"]].drop_duplicates()) == 2 * 3 * (5 + 2)
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"figure1-models.png", "figure2-sites.png", "figure3-heads.png"} <= set(figures)
    assert len(figures) == 3 + 2 * 5
    assert "## 1. Models side by side" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--heads", "--sites", "mlp,resid"], "--heads splits the attention update"),
        (["--sites", "attn,ffn"], "choose from attn,mlp,resid"),
        (["--model", "{model}"], "is given twice"),
        (["--model", "not-here.gguf"], "unknown model 'not-here.gguf': no such GGUF file"),
    ],
)
def test_bad_sites_heads_and_models_are_one_line_before_any_work(
    options, message, source_args, tmp_path, capsys
):
    options = [o.replace("{model}", source_args[1]) for o in options]
    out = tmp_path / "out"
    assert message in error_of(["run", *source_args, *options, "--out", str(out)], capsys)
    assert not out.exists()


def test_extract_writes_sites_and_heads_shards(source_args, tmp_path):
    folder = tmp_path / "norms"
    argv = ["--quiet", "extract", *source_args, "--sites", "attn,resid", "--heads"]
    assert main([*argv, "--out", str(folder)]) == 0
    frame = extract.read_frame(folder)
    assert list(frame.columns[:4]) == ["sequence", "site", "layer", "head"]
    assert set(frame["site"]) == {"attn", "resid"}


@pytest.mark.parametrize("command", ["run", "extract"])
def test_max_length_truncates_every_text_and_is_recorded(command, source_args, tmp_path):
    out = tmp_path / "out"
    argv = ["--quiet", command, *source_args, "--layers", "0", "--max-length", "8"]
    assert (
        main(
            [*argv, "--n-jobs", "1", "--out", str(out)]
            if command == "run"
            else [*argv, "--out", str(out)]
        )
        == 0
    )
    frame = extract.read_frame(out / "norms.parquet" if command == "run" else out)
    assert frame.groupby("sequence")["position"].max().max() == 7
    assert frame.attrs["max_length"] == 8 and frame.attrs["n_truncated"] > 0


def test_max_length_must_be_a_positive_whole_number(source_args, tmp_path, capsys):
    argv = ["run", *source_args, "--max-length", "0", "--out", str(tmp_path / "out")]
    assert "--max-length" in error_of(argv, capsys)
    assert not (tmp_path / "out").exists()


def test_first_position_reaches_the_fits(tmp_path, capsys):
    from attnmag.extract.frame_file import write_frame
    from tests.simulate import simulated_frame

    frame = simulated_frame(20, 2, length=(8, 20), lag1=0.2, lag2=0.1, seed=5)
    write_frame(frame, tmp_path / "norms.parquet")
    fit = ["fit", "--methods", "ols", "--lag-methods", "ols"]
    for where, argv in {
        "before": ["--quiet", *fit, "--first-position", "2", str(tmp_path / "norms.parquet")],
        "after": ["--quiet", *fit, str(tmp_path / "norms.parquet"), "--first-position", "2"],
    }.items():
        assert main([*argv, "--out", str(tmp_path / where)]) == 0
        trend = pd.read_csv(tmp_path / where / "position_trend.csv")
        lags = pd.read_csv(tmp_path / where / "lag_effects.csv")
        first = frame[frame.layer == 0].position
        assert (trend.n_obs == ((first >= 2) & (first <= 30)).sum()).all()
        assert (lags.n_obs == (first >= 4).sum()).all()
    fit += [str(tmp_path / "norms.parquet"), "--out", str(tmp_path / "bad")]
    message = error_of([*fit, "--first-position", "x"], capsys)
    assert message.startswith("argument --first-position: ") and "'x'" in message
    message = error_of([*fit, "--first-position", "30", "--max-position", "30"], capsys)
    assert message == "--first-position 30 must be below --max-position 30"
    assert not (tmp_path / "bad").exists()


def test_run_adds_token_and_sink_columns_and_their_section(source_args, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--quiet", "run", *source_args, "--token-columns", "surprisal,punct", "--sink"]
    options = ["--methods", "ols", "--lag-methods", "ols", "--n-jobs", "1", "--format", "md"]
    assert main([*argv, *options, "--out", str(out)]) == 0, capsys.readouterr().err
    frame = extract.read_frame(out / "norms.parquet")
    assert list(frame.columns[-4:]) == ["surprisal", "punct", "sink_weight", "sink_norm"]
    assert frame.loc[frame["position"] == 0, "surprisal"].isna().all()
    report = (out / "report.md").read_text()
    assert "What tracks the magnitude" in report and "log_norm ~ position + surprisal" in report
    folder = tmp_path / "norms"
    argv = ["--quiet", "extract", *source_args, "--token-columns", "word_start", "--sink"]
    assert main([*argv, "--out", str(folder)]) == 0
    assert list(extract.read_frame(folder).columns[-3:]) == [
        "word_start",
        "sink_weight",
        "sink_norm",
    ]


def test_bad_token_columns_are_one_line_before_any_work(source_args, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", *source_args, "--token-columns", "surprisal,entropy", "--out", str(out)]
    assert "choose from surprisal,log_frequency,word_start,punct" in error_of(argv, capsys)
    assert not out.exists()
