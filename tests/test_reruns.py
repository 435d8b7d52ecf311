"""A failed start leaves no trace that blocks its correction: options are checked before
anything is written, and a claim cut short, or one that finished no shard, is taken over.
"""

import json

import pytest
from test_cli import error_of
from test_safety import TEXTS

from attnmag import AttnmagError, extract
from attnmag.cli import main
from attnmag.extract import shards as shards_module
from attnmag.extract.shards import read_shards, write_shards


def test_a_claim_killed_before_run_json_is_reclaimed(source_args, tmp_path):
    out = tmp_path / "norms"
    out.mkdir()
    (out / ".run.json.4242.tmp").write_text('{"arguments": ')  # killed while writing it
    argv = ["--quiet", "extract", *source_args, "--layers", "1", "--out", str(out)]
    assert main(argv) == 0
    assert set(read_shards(out)["layer"]) == {1}


def test_max_length_beyond_the_models_positions_is_refused_before_anything_is_written(
    source_args, tiny_gpt2, gpt2_tokenizer, tmp_path, capsys
):
    out = tmp_path / "norms"
    argv = ["--quiet", "extract", *source_args, "--max-length", "500", "--out", str(out)]
    expected = "max_length 500 is beyond the model's 128 positions: give at most 128"
    assert error_of(argv, capsys).startswith(expected)
    assert not out.exists()
    assert main([*argv[:-4], "--max-length", "128", "--out", str(out)]) == 0
    with pytest.raises(AttnmagError, match=expected):
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, max_length=500, progress=False)


def test_a_claim_that_finished_no_shard_is_taken_over(
    tiny_gpt2, gpt2_tokenizer, tmp_path, monkeypatch
):
    folder = tmp_path / "norms"

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory")

    with monkeypatch.context() as patched:
        patched.setattr(shards_module, "_measure_shard", failing)
        with pytest.raises(RuntimeError):
            write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, layers=[0], progress=False)
    first = json.loads((folder / "run.json").read_text())
    assert first["shards"] == {} and first["arguments"]["layers"] == [0]
    write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, layers=[2], progress=False)
    assert set(read_shards(folder)["layer"]) == {2}
    with pytest.raises(AttnmagError, match=r"other arguments \(layers: \[2\] then, \[0\] now"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, layers=[0], progress=False)


def test_a_shard_recorded_after_the_folder_was_taken_over_is_refused(
    tiny_gpt2, gpt2_tokenizer, tmp_path, monkeypatch
):
    folder = tmp_path / "norms"
    real_record = shards_module._record_shard

    def taken_over(folder, name, entry, run):
        record = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**record, "run": "f" * 32}))
        real_record(folder, name, entry, run)

    monkeypatch.setattr(shards_module, "_record_shard", taken_over)
    with pytest.raises(AttnmagError, match="was claimed anew by a run with other arguments"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, folder, progress=False)
    assert json.loads((folder / "run.json").read_text())["shards"] == {}
