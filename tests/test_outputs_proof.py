"""An output attnmag can prove it wrote: the marker lists every file (size, sha256) under a
random run id, ``--force`` replaces a folder only when its contents match that list, and
only leftovers whose marker holds the run id their name carries are ever removed.
"""

import json
from pathlib import Path

import pytest
from test_cli import error_of
from test_safety import FIT, TEXTS, snapshot

from attnmag import extract
from attnmag.cli import main
from attnmag.outputs import MARKER, clean_leftovers, mark, read_marker, replacing, unknown_files


@pytest.fixture
def frame_file(tiny_gpt2, gpt2_tokenizer, tmp_path) -> Path:
    path = tmp_path / "norms.parquet"
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False).to_parquet(path)
    return path


@pytest.fixture
def tables(frame_file, tmp_path) -> Path:
    """A finished ``attnmag fit`` output."""
    out = tmp_path / "tables"
    assert main(["--quiet", "fit", str(frame_file), *FIT, "--out", str(out)]) == 0
    return out


def test_the_marker_lists_every_file_with_size_and_sha256_under_a_run_id(tables):
    record = read_marker(tables)
    assert len(record["run"]) == 32 and record["attnmag"] == "tables"
    assert set(record["files"]) == {"position_trend.csv", "lag_effects.csv", "glance.csv"}
    entry = record["files"]["glance.csv"]
    assert entry["size"] == (tables / "glance.csv").stat().st_size
    assert unknown_files(tables) == []


def test_a_copied_marker_proves_nothing(frame_file, tables, tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("precious")
    for marker in ((tables / MARKER).read_bytes(), b"", b'{"attnmag": "run"}'):
        (victim / MARKER).write_bytes(marker)
        message = error_of(["fit", str(frame_file), *FIT, "--out", str(victim), "--force"], capsys)
        assert "proves nothing" in message or "notes.txt, sub/" in message, message
        assert (victim / "notes.txt").read_text() == "precious" and (victim / "sub").is_dir()


def test_a_file_added_to_an_output_is_named_and_kept(frame_file, tables, capsys):
    (tables / "notes.txt").write_text("mine")
    (tables / "glance.csv").write_text("edited")
    argv = ["fit", str(frame_file), *FIT, "--out", str(tables), "--force"]
    message = error_of(argv, capsys)
    assert message == (
        f"--out {tables} holds files attnmag did not write or that changed since (glance.csv, "
        "notes.txt); --force replaces only what attnmag wrote: move them out or choose another "
        "folder"
    )
    assert (tables / "notes.txt").read_text() == "mine"
    (tables / "notes.txt").unlink()
    (tables / "glance.csv").unlink()  # a listed file removed: what is left is still attnmag's
    assert main(["--quiet", *argv]) == 0
    assert (tables / "glance.csv").is_file() and unknown_files(tables) == []


def test_a_file_added_while_the_run_works_keeps_the_old_output(frame_file, tables, tmp_path):
    old = snapshot(tables)
    with pytest.raises(Exception, match="changed while this run was working"):
        with replacing(tables, force=True, kind="tables") as folder:
            (folder / "new.csv").write_text("new")
            (tables / "late.txt").write_text("added meanwhile")
    assert snapshot(tables) == {**old, "late.txt": b"added meanwhile"}
    assert [p.name for p in tmp_path.glob(".tables.partial-*")] != []


@pytest.mark.parametrize("role", ["deleting", "trash", "partial"])
def test_user_folders_with_leftover_names_are_kept(tables, tmp_path, role):
    user = tmp_path / f".tables.{role}-anything"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    copied = tmp_path / f".tables.{role}-{'0' * 32}"
    copied.mkdir()
    (copied / MARKER).write_text((tables / MARKER).read_text())  # another run's id
    (copied / "notes.txt").write_text("mine too")
    clean_leftovers(tables)
    assert (user / "notes.txt").read_text() == "mine"
    assert (copied / "notes.txt").read_text() == "mine too"


def test_a_leftover_loses_only_the_files_its_marker_lists(tables, tmp_path):
    run = read_marker(tables)["run"]
    deleting = tmp_path / f".tables.deleting-{run}"
    (tables / "late.txt").write_text("added after the marker")
    tables.rename(deleting)  # an old output whose deletion was cut short
    clean_leftovers(tmp_path / "tables")
    assert sorted(p.name for p in deleting.iterdir()) == [MARKER, "late.txt"]
    (tmp_path / ".tables.deleting-empty").mkdir()  # its marker already deleted: nothing in it
    clean_leftovers(tmp_path / "tables")
    assert not (tmp_path / ".tables.deleting-empty").exists()


def test_an_output_made_bigger_is_replaced_once_marked(tables, frame_file):
    (tables / "ballast").mkdir()
    (tables / "ballast" / "0.txt").write_text("more")
    assert unknown_files(tables) == ["ballast/", "ballast/0.txt"]
    mark(tables, "tables")
    assert json.loads((tables / MARKER).read_text())["files"]["ballast/0.txt"]["size"] == 4
    assert main(["--quiet", "fit", str(frame_file), *FIT, "--out", str(tables), "--force"]) == 0
    assert not (tables / "ballast").exists()
