"""Shards that vouch for themselves: ``run.json`` checked against its schema before any
work, and each shard's own metadata against its entry, by one check that ``fit``,
``report``, a resumed ``extract`` and ``read_frame`` share.
"""

import json
import shutil
from pathlib import Path

import pytest
from test_cli import error_of
from test_safety import FIT, TEXTS

from attnmag import AttnmagError, extract
from attnmag.cli import main
from attnmag.extract.shards import write_shards


@pytest.fixture
def shards(tiny_gpt2, gpt2_tokenizer, tmp_path) -> Path:
    folder = tmp_path / "norms"
    write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, shard_texts=2, progress=False)
    return folder


def edit_manifest(folder: Path, edit) -> None:
    record = json.loads((folder / "run.json").read_text())
    edit(record)
    (folder / "run.json").write_text(json.dumps(record))


def refusals(folder: Path, tmp_path: Path, capsys, resume) -> list[str]:
    """The messages of fit, report, a resumed extract and read_frame on ``folder``."""
    messages = [
        error_of([command, str(folder), *FIT, "--out", str(tmp_path / command)], capsys)
        for command in ("fit", "report")
    ]
    for call in (resume, lambda: extract.read_frame(folder)):
        with pytest.raises(AttnmagError) as refused:
            call()
        messages.append(str(refused.value))
    return messages


def first_shard(record: dict) -> dict:
    return record["shards"]["shard-00000.parquet"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: first_shard(r).update(rows=3), "its rows "),
        (lambda r: first_shard(r).update(start=1), "start 1 and stop 2 are not"),
        (lambda r: first_shard(r).pop("rows"), "'rows' is a required property"),
        (lambda r: first_shard(r).pop("sha256"), "'sha256' is a required property"),
        (lambda r: r["arguments"].update(n_texts=None), "None is not of type 'integer'"),
        (lambda r: r["arguments"].update(shard_texts=0), "0 is less than the minimum of 1"),
        (lambda r: r["arguments"].update(shard_texts="8"), "'8' is not of type 'integer'"),
    ],
)
def test_an_edited_manifest_is_refused_alike_by_every_reader(
    shards, tiny_gpt2, gpt2_tokenizer, tmp_path, capsys, edit, expected
):
    edit_manifest(shards, edit)
    resume = lambda: write_shards(  # noqa: E731
        tiny_gpt2, gpt2_tokenizer, TEXTS, shards, shard_texts=2, progress=False
    )
    messages = refusals(shards, tmp_path, capsys, resume)
    assert all(expected in message for message in messages), messages
    assert len(set(messages)) == 1, messages  # one check, one message
    assert not (tmp_path / "fit").exists() and not (tmp_path / "report").exists()


def test_each_violation_is_one_line(shards):
    edit_manifest(shards, lambda r: r["arguments"].update(n_texts=None, shard_texts="8"))
    with pytest.raises(AttnmagError) as refused:
        extract.read_frame(shards)
    lines = str(refused.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["arguments.n_texts", "arguments.shard_texts"]


def test_a_shard_of_another_model_with_its_entry_is_refused(
    shards, tiny_gpt2, tiny_llama, gpt2_tokenizer, tmp_path, capsys
):
    other = tmp_path / "other"
    write_shards(tiny_llama, gpt2_tokenizer, TEXTS, other, shard_texts=2, progress=False)
    shutil.copy(other / "shard-00001.parquet", shards / "shard-00001.parquet")
    entry = json.loads((other / "run.json").read_text())["shards"]["shard-00001.parquet"]
    edit_manifest(shards, lambda r: r["shards"].update({"shard-00001.parquet": entry}))
    resume = lambda: write_shards(  # noqa: E731
        tiny_gpt2, gpt2_tokenizer, TEXTS, shards, shard_texts=2, progress=False
    )
    messages = refusals(shards, tmp_path, capsys, resume)
    assert len(set(messages)) == 1, messages
    assert messages[0].startswith(
        f"{shards / 'shard-00001.parquet'} is not the shard run.json records for it (its run id "
    )
    assert "; its weights " in messages[0] and "a shard of another run" in messages[0]


@pytest.mark.parametrize("rename", [True, False])
def test_an_extra_or_renamed_shard_is_refused_on_resume(
    shards, tiny_gpt2, gpt2_tokenizer, capsys, rename
):
    source = shards / "shard-00002.parquet"
    target = shards / "shard-00007.parquet"
    (source.rename if rename else lambda t: shutil.copy(source, t))(target)
    with pytest.raises(AttnmagError, match=r"shard-00007\.parquet is not in this run's run\.json"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, shards, shard_texts=2, progress=False)


def test_a_shard_name_that_is_a_folder_is_refused(
    shards, tiny_gpt2, gpt2_tokenizer, tmp_path, capsys
):
    path = shards / "shard-00001.parquet"
    path.unlink()
    path.mkdir()
    resume = lambda: write_shards(  # noqa: E731
        tiny_gpt2, gpt2_tokenizer, TEXTS, shards, shard_texts=2, progress=False
    )
    for message in refusals(shards, tmp_path, capsys, resume):
        assert message == f"{path} is not a file: a shard is a Parquet file; remove it"
    assert main(["--quiet", "fit", str(shards), *FIT, "--out", str(tmp_path / "t")]) == 2
