"""Nothing lost, nothing mixed: each case of the safety review, on the tiny models.

Outputs: ``--force`` replaces only attnmag's outputs, never the current folder, an ancestor
or an input, by two renames; a second process on one output is refused. Shard folders:
``run.json`` is a verified manifest, claimed atomically, with a fingerprint of every
weight. Options: each is checked before any work, as one line naming it.
"""

import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
import torch
from test_cli import error_of

from attnmag import AttnmagError, cli, extract
from attnmag.cli import build_parser, main
from attnmag.extract.shards import read_shards, write_shards
from attnmag.models import METHODS
from attnmag.outputs import MARKER, mark, read_marker, replacing

TEXTS = [f"Text {i} says {'more and ' * (i % 4)}something." for i in range(6)]
FIT = ["--methods", "aggregate", "--lag-methods", "ols", "--n-jobs", "1", "--quiet"]


@pytest.fixture
def shards(tiny_gpt2, gpt2_tokenizer, tmp_path) -> Path:
    """A finished shard folder of TEXTS (three shards of two texts)."""
    folder = tmp_path / "norms"
    write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, shard_texts=2, progress=False)
    return folder


@pytest.fixture
def frame_file(tiny_gpt2, gpt2_tokenizer, tmp_path) -> Path:
    path = tmp_path / "norms.parquet"
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False).to_parquet(path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# 1. The current folder and its ancestors are never an output.
@pytest.mark.parametrize("out", [".", ".."])
def test_force_never_replaces_the_current_folder_or_an_ancestor(
    out, tmp_path, monkeypatch, capsys, frame_file
):
    here = tmp_path / "work"
    here.mkdir()
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    message = error_of(["fit", str(frame_file), *FIT, "--out", out, "--force"], capsys)
    assert "current folder" in message and out in message
    assert snapshot(tmp_path) == before


# 2. An output never is, nor holds, an input.
def test_force_never_replaces_an_input(shards, frame_file, tmp_path, capsys):
    before = snapshot(shards)
    for command in ("fit", "report"):
        message = error_of([command, str(shards), "--out", str(shards), "--force"], capsys)
        assert (
            message == f"--out {shards} is the input {shards}; choose another folder for the output"
        )
    assert "contains the input" in error_of(
        ["fit", str(frame_file), "--out", str(tmp_path), "--force"], capsys
    )
    assert snapshot(shards) == before


def test_run_never_replaces_the_folder_of_its_corpus_or_model(
    source_args, corpus_csv, tiny_model_dir, capsys
):
    corpus = corpus_csv.read_bytes()
    for out, relation in ((corpus_csv.parent, "contains"), (tiny_model_dir, "is")):
        message = error_of(["run", *source_args, "--out", str(out), "--force"], capsys)
        assert message.startswith(f"--out {out} {relation} the input ")
    assert corpus_csv.read_bytes() == corpus and (tiny_model_dir / "config.json").is_file()


def test_force_replaces_only_attnmag_outputs(frame_file, tmp_path, capsys):
    out = tmp_path / "tables"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    message = error_of(["fit", str(frame_file), *FIT, "--out", str(out), "--force"], capsys)
    assert "is not an attnmag output" in message
    assert (out / "thesis.tex").read_text() == "years of work"
    assert main(["fit", str(frame_file), *FIT, "--out", str(tmp_path / "t2")]) == 0
    assert (tmp_path / "t2" / MARKER).is_file()
    assert main(["fit", str(frame_file), *FIT, "--out", str(tmp_path / "t2"), "--force"]) == 0
    (tmp_path / "link").symlink_to(tmp_path / "t2")
    message = error_of(
        ["fit", str(frame_file), *FIT, "--out", str(tmp_path / "link"), "--force"], capsys
    )
    assert message.endswith("is a symbolic link; give the folder it points to")


# 3. Replacement by two renames: an interruption leaves the old or the new output whole.
def test_an_interrupted_replacement_leaves_the_new_output_whole(
    frame_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "tables"
    assert main(["fit", str(frame_file), *FIT, "--out", str(out)]) == 0
    for i in range(50):
        (out / f"extra-{i}.txt").write_text("old")
    mark(out, "tables")  # a bigger output, every file of it listed
    real_unlink, deleted = Path.unlink, []

    def interrupted_unlink(path, *args, **kwargs):
        """Delete a few of the old output's files, then stop as Ctrl-C would."""
        if path.name.startswith("extra-") and len(deleted) == 10:
            raise KeyboardInterrupt
        deleted.append(path)
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", interrupted_unlink)
    assert main(["fit", str(frame_file), *FIT, "--out", str(out), "--force"]) == 130
    monkeypatch.setattr(Path, "unlink", real_unlink)
    names = {MARKER, "position_trend.csv", "lag_effects.csv", "glance.csv"}
    assert {p.name for p in out.iterdir()} == names  # the new output, whole
    assert len(list(tmp_path.glob(".tables.*"))) == 1  # the old one, half deleted
    assert main(["fit", str(frame_file), *FIT, "--out", str(out), "--force"]) == 0
    assert not list(tmp_path.glob(".tables.*"))  # the next run removed what was left


def test_a_crash_between_the_renames_is_undone_by_the_next_run(frame_file, tmp_path):
    out = tmp_path / "tables"
    assert main(["--quiet", "fit", str(frame_file), *FIT, "--out", str(out)]) == 0
    old = snapshot(out)
    out.rename(tmp_path / f".tables.trash-{read_marker(out)['run']}")  # killed after a rename
    run = "0a1b2c3d" * 4
    (tmp_path / f".tables.partial-{run}").mkdir()
    mark(tmp_path / f".tables.partial-{run}", "tables", run=run)
    (tmp_path / ".tables.partial-mine").mkdir()
    (tmp_path / ".tables.partial-mine" / "notes.txt").write_text("not attnmag's")
    with pytest.raises(RuntimeError), replacing(out, force=True, kind="tables"):
        assert snapshot(out) == old  # moved back before any work
        raise RuntimeError
    assert snapshot(out) == old
    leftovers = sorted(p.name for p in tmp_path.glob(".tables.*"))
    assert leftovers == [".tables.partial-mine"]  # attnmag's removed, the user's kept


def test_outputs_are_created_with_the_users_umask(frame_file, tmp_path):
    previous = os.umask(0o022)
    try:
        assert main(["--quiet", "fit", str(frame_file), *FIT, "--out", str(tmp_path / "t")]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "t").stat().st_mode) == 0o755


# 4. A second writer on one output is refused while the first writes it. The lock is an
# fcntl lock on an open file, so a thread holding it stands for another process.
def test_a_second_run_on_the_same_output_is_refused(frame_file, tmp_path, monkeypatch, capsys):
    out, release = tmp_path / "tables", threading.Event()
    fit_options = cli._fit_options

    def waiting_fit(*args):
        release.wait(timeout=60)
        return fit_options(*args)

    monkeypatch.setattr(cli, "_fit_options", waiting_fit)
    statuses = []
    first = threading.Thread(
        target=lambda: statuses.append(main(["fit", str(frame_file), *FIT, "--out", str(out)]))
    )
    first.start()
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".tables.partial-*")):
            assert first.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        message = error_of(["fit", str(frame_file), *FIT, "--out", str(out)], capsys)
    finally:
        release.set()
        first.join()
    assert message.startswith(f"{out} is being written by another attnmag process; wait")
    assert statuses == [0]
    assert (out / "position_trend.csv").is_file() and (out / MARKER).is_file()


# 5. Reading a shard folder checks the shards against run.json.
def test_a_shard_of_another_run_is_refused(shards, tiny_llama, gpt2_tokenizer, tmp_path):
    other = tmp_path / "other"
    write_shards(tiny_llama, gpt2_tokenizer, TEXTS, other, shard_texts=2, progress=False)
    shutil.copy(other / "shard-00001.parquet", shards / "shard-00001.parquet")
    with pytest.raises(AttnmagError, match=r"shard-00001\.parquet is damaged"):
        read_shards(shards)


def test_an_extra_shard_is_refused(shards):
    shutil.copy(shards / "shard-00001.parquet", shards / "shard-00003.parquet")
    with pytest.raises(AttnmagError, match=r"shard-00003\.parquet is not in this run's run\.json"):
        extract.read_frame(shards)


def test_a_folder_without_its_manifest_is_refused(shards):
    (shards / "run.json").unlink()
    (shards / "shard-00002.parquet").unlink()
    with pytest.raises(AttnmagError, match="has no run.json"):
        read_shards(shards)


# 6. Corruption is found on resume and on reading.
def test_a_truncated_shard_is_not_skipped_on_resume(
    shards, tiny_gpt2, gpt2_tokenizer, tmp_path, capsys
):
    path = shards / "shard-00001.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AttnmagError, match=r"shard-00001\.parquet is damaged"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, shards, shard_texts=2, progress=False)
    message = error_of(["fit", str(shards), *FIT, "--out", str(tmp_path / "t")], capsys)
    assert "shard-00001.parquet is damaged" in message


def test_overwritten_bytes_are_found_on_reading(shards):
    path = shards / "shard-00002.parquet"
    data = bytearray(path.read_bytes())
    data[200:216] = b"\x7f" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(AttnmagError, match=r"shard-00002\.parquet is damaged"):
        read_shards(shards)


# 7. A folder is claimed atomically: a run that starts at the same moment is refused.
def test_a_run_that_claims_the_folder_first_wins(
    tiny_gpt2, tiny_llama, gpt2_tokenizer, tmp_path, monkeypatch
):
    other, folder = tmp_path / "other", tmp_path / "norms"
    write_shards(tiny_llama, gpt2_tokenizer, TEXTS, other, shard_texts=2, progress=False)
    real_dumps = json.dumps

    def racing_dumps(value, *args, **kwargs):
        """Let the other run write its run.json just as this one writes its own."""
        if isinstance(value, dict) and "arguments" in value and not (folder / "run.json").exists():
            shutil.copy(other / "run.json", folder / "run.json")
        return real_dumps(value, *args, **kwargs)

    monkeypatch.setattr(json, "dumps", racing_dumps)
    with pytest.raises(AttnmagError, match="holds shards of a run with other arguments"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, shard_texts=2, progress=False)
    assert (folder / "run.json").read_bytes() == (other / "run.json").read_bytes()


# 8. The fingerprint covers every weight.
def test_other_weights_under_the_same_name_do_not_resume(shards, tiny_gpt2, gpt2_tokenizer):
    (shards / "shard-00002.parquet").unlink()
    with torch.no_grad():
        tiny_gpt2.transformer.h[1].attn.c_attn.weight[20, 30] += 0.5  # far past the first values
    with pytest.raises(AttnmagError, match="weights"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, shards, shard_texts=2, progress=False)


# 9. A failed extraction leaves no claim behind.
def test_a_failed_extract_does_not_block_the_corrected_one(source_args, tmp_path, capsys):
    out = tmp_path / "norms"
    argv = ["--quiet", "extract", *source_args, "--layers", "99", "--out", str(out)]
    message = error_of(argv, capsys)
    assert message == "layers [99] do not exist: the model has layers 0..2 (layers=None means all)"
    assert not out.exists()
    assert main(["--quiet", "extract", *source_args, "--layers", "2", "--out", str(out)]) == 0
    assert set(read_shards(out)["layer"]) == {2}


# 10. Every option is checked before any work, as one line naming it.
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--layers", "3-1"], "argument --layers: must be layer indices"),
        (["--batch-size", "0"], "argument --batch-size: must be a whole number of at least 1"),
        (["--batch-size", "-3"], "argument --batch-size: must be a whole number of at least 1"),
        (["--limit", "-5"], "argument --limit: must be a whole number of at least 0"),
        (["--max-position", "0"], "argument --max-position: must be a whole number"),
        (["--conf-level", "1"], "argument --conf-level: must be a number strictly between"),
        (["--n-jobs", "0"], "argument --n-jobs: must be a whole number of at least 1"),
        (["--lag-methods", "mixed,gmm"], "argument --lag-methods: choose from"),
    ],
)
def test_bad_options_are_refused_before_loading_anything(options, expected, tmp_path, capsys):
    argv = ["run", "--model", "no-such-org/no-such-model", *options, "--out", str(tmp_path / "o")]
    assert error_of(argv, capsys).startswith(expected)
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_cannot_be_written_are_refused(frame_file, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    message = error_of(["fit", str(frame_file), "--out", str(a_file), "--force"], capsys)
    assert message == f"--out {a_file} is a file; it must be a folder"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root writes anywhere: let the check see what a user sees
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and real_access(p, m))
    message = error_of(["fit", str(frame_file), "--out", str(locked / "t")], capsys)
    assert message == f"--out {locked / 't'}: cannot write in {locked} (permission denied)"


def test_a_csv_given_as_a_frame_is_refused(corpus_csv, tmp_path, capsys):
    message = error_of(["fit", str(corpus_csv), "--out", str(tmp_path / "t")], capsys)
    assert message.startswith(f"frame {corpus_csv} is not a Parquet file")


def test_a_bad_world_size_is_refused(source_args, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "x")
    message = error_of(["extract", *source_args, "--out", str(tmp_path / "n")], capsys)
    assert message.startswith("the environment variable WORLD_SIZE='x' must be a whole number")
    assert not (tmp_path / "n").exists()


def test_a_manifest_missing_keys_is_refused(shards, tmp_path, capsys):
    record = json.loads((shards / "run.json").read_text())
    del record["arguments"]["n_texts"]
    (shards / "run.json").write_text(json.dumps(record))
    message = error_of(["fit", str(shards), *FIT, "--out", str(tmp_path / "t")], capsys)
    assert message == (
        f"{shards / 'run.json'}: arguments: 'n_texts' is a required property (restore the "
        "run.json write_shards wrote, or extract again into a new folder)"
    )


# 11. --quiet and --debug work before and after the sub-command.
def test_common_options_go_before_or_after_the_command():
    parse = build_parser().parse_args
    assert parse(["--quiet", "run"]).quiet and not parse(["--quiet", "run"]).debug
    late = parse(["run", "--quiet", "--limit", "3", "--debug"])
    assert late.quiet and late.debug and late.limit == 3
    assert not parse(["run"]).quiet and not parse(["run"]).debug


# 12. --help says what each command does and every default.
def help_of(argv: list[str], capsys) -> str:
    assert main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_describes_commands_and_defaults(capsys):
    top = help_of([], capsys)
    assert "``" not in top and "write the tables and an HTML/Markdown report." in top
    run = help_of(["run"], capsys)
    for default in (
        "(default: 64)",
        f"(default: {','.join(METHODS['position_trend'])})",
        f"(default: {','.join(METHODS['lag_effects'])})",
        "(default: html,md)",
        "(default: 0.95)",
        "(default: out)",
    ):
        assert default in run, default
    assert "Extract, fit and report in one go." in run
    assert "report formats, comma-separated (default: html,md)" in help_of(["report"], capsys)
    extract_help = help_of(["extract"], capsys)
    assert "resumes" in extract_help and "--shard-texts SHARD_TEXTS texts per shard" in extract_help
    assert "Writes position_trend.csv" in help_of(["fit"], capsys)
