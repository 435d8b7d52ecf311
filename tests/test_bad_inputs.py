"""Every bad input is one line and exit status 2, never an "unexpected error", and nothing
silently wrong: each case of the second safety review.
"""

import errno
import shutil
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_cli import error_of
from test_safety import FIT, TEXTS, snapshot

from attnmag import AttnmagError, extract, models
from attnmag.cli import main
from attnmag.extract.shards import write_shards


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def extract_args(corpus_csv, model, out) -> list[str]:
    return ["--quiet", "extract", "--model", str(model), "--dataset", str(corpus_csv),
            "--text-column", "review", "--out", str(out)]  # fmt: skip


def test_a_truncated_safetensors_file_is_one_line(model_copy, corpus_csv, tmp_path, capsys):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    message = error_of(extract_args(corpus_csv, model_copy, tmp_path / "n"), capsys)
    assert message.startswith(f"model '{model_copy}' could not be loaded (SafetensorError")
    assert message.endswith("check that its files are complete, or download it again")
    assert not (tmp_path / "n").exists()


def test_a_gguf_without_its_magic_is_one_line(corpus_csv, tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file" * 10)
    message = error_of(extract_args(corpus_csv, fake, tmp_path / "n"), capsys)
    assert message.startswith(f"model '{fake}' is not a GGUF file (it does not start with")


def test_a_model_folder_without_tokenizer_files_is_named(model_copy, corpus_csv, tmp_path, capsys):
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (model_copy / name).unlink(missing_ok=True)
    message = error_of(extract_args(corpus_csv, model_copy, tmp_path / "n"), capsys)
    assert message.startswith(f"the tokenizer of model '{model_copy}' makes no tokens")


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("bogus", "unknown device 'bogus': expected cpu, cuda, cuda:N or mps"),
        ("cuda:99", "device 'cuda:99' is not here: this machine has "),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(
    device, expected, tiny_model_dir, corpus_csv, tmp_path, capsys
):
    argv = [*extract_args(corpus_csv, tiny_model_dir, tmp_path / "n"), "--device", device]
    assert error_of(argv, capsys).startswith(expected)
    assert not (tmp_path / "n").exists()


def test_a_huge_layer_range_is_refused_while_parsing(tmp_path, capsys):
    argv = ["extract", "--layers", "0-99999999999", "--out", str(tmp_path / "n")]
    assert error_of(argv, capsys).startswith(
        "argument --layers: must be layer indices (0 to 99999)"
    )


def test_an_empty_table_given_to_report_is_one_line(frame_file, tmp_path, capsys):
    tables = tmp_path / "tables"
    assert main(["--quiet", "fit", str(frame_file), *FIT, "--out", str(tables)]) == 0
    (tables / "lag_effects.csv").write_text("")
    argv = ["report", str(frame_file), "--tables", str(tables), "--out", str(tmp_path / "r")]
    message = error_of(argv, capsys)
    assert message.startswith(f"--tables: {tables / 'lag_effects.csv'} is not a table of")
    assert not (tmp_path / "r").exists()


def test_an_output_name_too_long_for_the_file_system_is_one_line(frame_file, tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    message = error_of(["fit", str(frame_file), "--out", str(out)], capsys)
    assert "its name is too long" in message and "choose a shorter name" in message


def test_an_output_where_nothing_can_be_written_is_one_line(source_args, capsys):
    message = error_of(["--quiet", "extract", *source_args, "--out", "/proc/attnmag-x"], capsys)
    assert message.startswith("/proc/attnmag-x: cannot write in /proc")


def test_a_full_disk_is_one_line_and_keeps_the_old_output(
    frame_file, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "tables"
    assert main(["--quiet", "fit", str(frame_file), *FIT, "--out", str(out)]) == 0
    old = snapshot(out)

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    message = error_of(["fit", str(frame_file), *FIT, "--out", str(out), "--force"], capsys)
    assert message.startswith(
        f"no space left on the device while writing {out}: {out} is untouched"
    )
    assert snapshot(out) == old


def test_a_full_disk_while_extracting_keeps_the_finished_shards(
    source_args, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "norms"
    assert main(["--quiet", "extract", *source_args, "--shard-texts", "8", "--out", str(out)]) == 0
    (out / "shard-00001.parquet").unlink()
    kept = (out / "shard-00000.parquet").read_bytes()

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    argv = ["--quiet", "extract", *source_args, "--shard-texts", "8", "--out", str(out)]
    assert error_of(argv, capsys).startswith("no space left on the device (")
    assert (out / "shard-00000.parquet").read_bytes() == kept


def test_a_flipped_byte_in_a_runs_frame_is_found(source_args, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--quiet", "run", *source_args, *FIT, "--layers", "0", "--out", str(out)]
    assert main(argv) == 0
    path = out / "norms.parquet"
    chunk = (
        pq.read_metadata(path)
        .row_group(0)
        .column(pq.read_metadata(path).schema.names.index("log_norm"))
    )
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    offset = start + chunk.total_compressed_size // 2  # inside the pages' data
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))
    message = error_of(["fit", str(path), *FIT, "--out", str(tmp_path / "t")], capsys)
    assert message.startswith(f"{path} is damaged: its sha256 differs from the one")
    alone = tmp_path / "copied.parquet"  # out of its folder: the page checksums still check it
    shutil.copy(path, alone)
    with pytest.raises(AttnmagError, match=r"copied\.parquet is damaged or not a frame"):
        extract.read_frame(alone)


def test_a_file_that_only_starts_like_parquet_is_one_line(tmp_path, capsys):
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1 and then nothing")
    with pytest.raises(AttnmagError, match=r"fake\.parquet is damaged or not a frame"):
        extract.read_frame(fake)
    assert "is damaged or not a frame" in error_of(
        ["fit", str(fake), "--out", str(tmp_path / "t")], capsys
    )


def test_frame_columns_of_another_type_are_one_line(frame_file, tmp_path):
    frame = pd.read_parquet(frame_file)
    frame["position"] = frame["position"].astype(str)
    frame.to_parquet(tmp_path / "str.parquet")
    with pytest.raises(AttnmagError, match="position holds str"):
        extract.read_frame(tmp_path / "str.parquet")


def test_a_missing_tokenizer_is_one_line(tiny_gpt2, tmp_path):
    with pytest.raises(AttnmagError, match="tokenizer must be the model's tokenizer"):
        extract.attention_norms(tiny_gpt2, None, TEXTS, progress=False)
    with pytest.raises(AttnmagError, match="tokenizer must be the model's tokenizer"):
        write_shards(tiny_gpt2, None, TEXTS, tmp_path / "n", progress=False)
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("limit", [-1, 0, 2.5])
def test_a_limit_below_one_is_refused(corpus_csv, limit):
    with pytest.raises(AttnmagError, match=f"limit must be a whole number of at least 1.*{limit}"):
        extract.load_corpus(corpus_csv, text_column="review", limit=limit)


def test_a_kept_number_column_with_gaps_stays_a_number(tiny_gpt2, gpt2_tokenizer, tmp_path):
    scores = [0.5, None, 1.5, 2.0, 3.5, 1.0]
    corpus = datasets.Dataset.from_dict({"text": TEXTS, "score": scores})
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, corpus, keep=["score"], progress=False
    )
    assert frame["score"].dtype == np.float64 and frame["score"].isna().any()
    terms = set(models.fit(frame, "log_norm ~ position + score", n_jobs=1).tidy["term"])
    assert terms == {"Intercept", "position", "score"}
    csv = tmp_path / "scores.csv"  # a csv's blank cell
    pd.DataFrame({"text": TEXTS, "score": ["1", "", "2", "3", "4", "5"]}).to_csv(csv, index=False)
    loaded = extract.load_corpus(csv, limit=None)
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, loaded, keep=["score"], progress=False
    )
    assert frame["score"].dtype == np.float64


@pytest.fixture
def frame_file(tiny_gpt2, gpt2_tokenizer, tmp_path) -> Path:
    path = tmp_path / "norms.parquet"
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False).to_parquet(path)
    return path
