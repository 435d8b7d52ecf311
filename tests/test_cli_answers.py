"""The command line answers at once: parsing imports no stage or heavy library; usage, version,
"did you mean" hints, options before or after the sub-command; stage lines and the files."""

import subprocess
import sys
from pathlib import Path

import pytest

import attnmag
from attnmag import cli
from attnmag.cli import build_parser, main

HEAVY = ("torch", "transformers", "statsmodels", "matplotlib", "pandas", "datasets")
STAGES = ("attnmag.extract", "attnmag.models", "attnmag.reports")


def test_parsing_and_its_errors_import_no_stage_or_heavy_library():
    code = (
        "import sys\n"
        "from attnmag.cli import main\n"
        "for argv in ([], ['--help'], ['--version'], ['rnu'], ['run', '--batchsize', '8'],\n"
        "             ['fit', '--help'], ['run', '--methods', 'olss']):\n"
        "    main(argv)\n"
        f"print(sorted(m for m in {HEAVY + STAGES!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "[]"


def test_help_by_python_m_imports_no_torch():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "attnmag", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "usage: attnmag" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "attnmag.cli" in imported
    assert not imported & {"torch", "transformers", "statsmodels", "matplotlib"}


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"attnmag {attnmag.__version__}\n"


@pytest.mark.parametrize("argv", [[], ["--quiet"]])
def test_no_command_prints_usage_and_a_hint(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: attnmag ") and "COMMAND" in err
    assert "`attnmag run`" in err and "--help" in err and "Traceback" not in err


def error_of(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit status 2 and one stderr line; return the message."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("attnmag: error: "), err
    return err.removeprefix("attnmag: error: ").rstrip("\n")


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["rnu"], "did you mean run?"),
        (["cahce", "list"], "did you mean cache?"),
        (["run", "--batchsize", "8"], "did you mean --batch-size?"),
        (["run", "--max_length=8"], "did you mean --max-length?"),
        (["fit", "norms", "--out", "t", "--lag-method", "ols", "--methds", "ols"], "--methods?"),
        (["run", "--methods", "ols,mixd"], "did you mean mixed?"),
        (["report", "f", "--out", "r", "--lag-methods", "gm"], "did you mean gmm?"),
        (["run", "--sites", "atn"], "did you mean attn?"),
        (["run", "--dtype", "bfloat61"], "did you mean bfloat16?"),
        (["cache", "lst"], "did you mean list?"),
    ],
)
def test_typos_get_the_closest_name(argv, hint, capsys):
    assert error_of(argv, capsys).endswith(hint)


@pytest.mark.parametrize("model", ["smollm2", "SmolLM2-135M", "bundeld", "smollm2.gguf"])
def test_a_name_of_the_bundled_model_suggests_bundled(model, tmp_path, capsys):
    message = error_of(["run", "--model", model, "--out", str(tmp_path / "out")], capsys)
    assert message.startswith(f"unknown model {model!r}")
    assert message.endswith("did you mean --model bundled (SmolLM2-135M-Instruct)?")
    assert not (tmp_path / "out").exists()


def test_an_unknown_hub_model_offline_fails_before_any_work(tmp_path, capsys):
    message = error_of(["run", "--model", "no-org/no-model", "--out", str(tmp_path / "o")], capsys)
    assert "not in the local hub cache" in message and "did you mean" not in message


@pytest.mark.parametrize("where", ["before", "after"])
def test_common_options_go_before_or_after_the_command(where):
    options = ["--quiet", "--debug"]
    argv = [*options, "fit", "f", "--out", "t"] if where == "before" else ["fit", "f", *options]
    args = build_parser().parse_args(argv + (["--out", "t"] if where == "after" else []))
    assert args.quiet and args.debug and args.command == "fit"
    assert not build_parser().parse_args(["fit", "f", "--out", "t"]).quiet


@pytest.mark.parametrize("command", ["fit", "report"])
def test_the_folder_of_a_run_suggests_its_frame(command, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "norms.parquet").write_bytes(b"PAR1")
    message = error_of([command, str(tmp_path / "out"), "--out", str(tmp_path / "t")], capsys)
    assert message.endswith(f"did you mean {tmp_path / 'out' / 'norms.parquet'}?")


def test_the_parsers_choices_are_the_stages():
    from attnmag.extract.frame import SITES, TOKEN_COLUMNS
    from attnmag.extract.shards import RUN_FILE
    from attnmag.models import CONF_LEVEL, MAX_POSITION, METHODS

    assert cli.SITES == SITES and cli.RUN_FILE == RUN_FILE
    assert cli.TOKEN_COLUMNS == TOKEN_COLUMNS
    assert cli.TREND_METHODS == METHODS["position_trend"]
    assert cli.LAG_METHODS == METHODS["lag_effects"]
    assert (cli.CONF_LEVEL, cli.MAX_POSITION) == (CONF_LEVEL, MAX_POSITION)


def test_run_fit_and_report_print_stage_lines_and_name_their_files(source_args, tmp_path, capsys):
    out = tmp_path / "out"
    fitting = ["--methods", "aggregate,ols", "--lag-methods", "ols", "--n-jobs", "1"]
    assert main(["run", *source_args, *fitting, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out / 'index.html'}\n"
    lines = captured.err.splitlines()
    assert len(lines) == 7, lines  # no bars: stderr is no terminal here
    assert [line.split(":")[0] for line in lines[:2]] == [
        f"load {Path(source_args[1]).name}",
        f"extract {Path(source_args[1]).name}",
    ]
    assert lines[-5].startswith("fit: ") and lines[-4].startswith("report: ")
    assert lines[-3:] == [
        f"report: {out / 'index.html'}, {out / 'report.md'}",
        f"frame: {out / 'norms.parquet'}",
        f"tables: {out / 'position_trend.csv'}, {out / 'lag_effects.csv'}, {out / 'glance.csv'}",
    ]

    tables = tmp_path / "tables"
    assert main(["fit", str(out / "norms.parquet"), *fitting, "--out", str(tables)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"read {out / 'norms.parquet'}: ") and lines[0].endswith(" rows")
    assert lines[1].startswith("fit: ") and lines[1].endswith(" s")
    assert lines[2:] == [
        "tables: "
        + ", ".join(str(tables / f"{n}.csv") for n in ("position_trend", "lag_effects", "glance"))
    ]

    report = tmp_path / "report"
    argv = ["report", str(out / "norms.parquet"), "--tables", str(tables), "--format", "md"]
    assert main([*argv, "--out", str(report)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{report / 'report.md'}\n"
    lines = captured.err.splitlines()
    assert lines[0].startswith("read ") and lines[1].startswith("report: ")
    assert lines[2] == f"report: {report / 'report.md'}"


def test_quiet_prints_only_the_path(source_args, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", *source_args, "--quiet", "--format", "md"]
    assert main([*argv, "--methods", "ols", "--lag-methods", "ols", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out / 'report.md'}\n" and captured.err == ""
