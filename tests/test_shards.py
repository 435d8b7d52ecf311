"""Sharded extraction: shards read back as the uninterrupted frame, resume, refusal, kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from simulate import simulated_frame, write_folder

from attnmag import AttnmagError, extract
from attnmag.extract.shards import read_shards, shard_ranges, write_frames, write_shards

TEXTS = [
    "",
    "  ",
    "Short.",
    "A considerably longer text that runs on, so that padding matters for the others.",
    "Mid-length text with a few words.",
    "Another one, of a length somewhere in between.",
    "The seventh text.",
]

# Writes shards of TEXTS from a saved model, slowed down so that it can be killed midway.
WORKER = """
import sys, time
from transformers import AutoModelForCausalLM, GPT2Tokenizer
from attnmag.extract.shards import write_shards
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
tokenizer = GPT2Tokenizer.from_pretrained(sys.argv[2])
model.model.layers[0].register_forward_pre_hook(lambda *args: time.sleep(0.4))
print("ready", flush=True)
write_shards(model, tokenizer, {texts!r}, sys.argv[3], batch_size=1, shard_texts=2,
             progress=False)
"""


def assert_same_frame(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same rows, columns, dtypes and token categories; norms equal to float32 precision."""
    pd.testing.assert_frame_equal(got, expected, rtol=1e-5)


def test_shard_ranges_cover_the_corpus_once_across_ranks():
    ranges = [r for rank in range(3) for r in shard_ranges(10, 3, rank=rank, world_size=3)]
    assert sorted(ranges) == [(0, 0, 3), (1, 3, 6), (2, 6, 9), (3, 9, 10)]
    assert shard_ranges(10, 3, rank=1, world_size=3) == [(1, 3, 6)]


def test_shards_read_back_as_the_uninterrupted_frame(tiny_gpt2, gpt2_tokenizer, tmp_path):
    paths = write_shards(
        tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path, batch_size=2, shard_texts=2, progress=False
    )
    assert [p.name for p in paths] == [f"shard-0000{k}.parquet" for k in range(4)]
    first = pd.read_parquet(paths[0])
    assert first.empty and first.attrs["n_skipped_empty"] == 2  # two blank texts: no rows
    assert pd.read_parquet(paths[1])["sequence"].unique().tolist() == [2, 3]
    frame = read_shards(tmp_path)
    expected = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    assert_same_frame(frame, expected)
    assert_same_frame(extract.read_frame(tmp_path), expected)
    for key in ("n_texts", "n_sequences", "n_skipped_empty", "n_tokens", "layers", "model"):
        assert frame.attrs[key] == expected.attrs[key], key
    assert frame.attrs["n_shards"] == 4 and "shard" not in frame.attrs


def test_rerun_resumes_and_other_arguments_are_refused(tiny_llama, gpt2_tokenizer, tmp_path):
    def run(model=tiny_llama, texts=TEXTS, **options):
        options = {"batch_size": 4, "shard_texts": 3, "progress": False, **options}
        return write_shards(model, gpt2_tokenizer, texts, tmp_path, **options)

    paths = run()
    written = {p: p.stat().st_mtime_ns for p in paths}
    paths[1].unlink()
    with pytest.raises(AttnmagError, match="unfinished: 1 of 3 shards"):
        read_shards(tmp_path)
    assert set(read_shards(tmp_path, partial=True)["sequence"]) == {2, 6}  # shard 1: texts 3-5
    time.sleep(0.01)
    run(batch_size=1)  # batch size only changes speed: resuming with another is fine
    assert paths[1].is_file()
    assert [p.stat().st_mtime_ns == written[p] for p in paths] == [True, False, True]
    with pytest.raises(AttnmagError, match="layers: \\[0, 1, 2\\] then, \\[0\\] now"):
        run(layers=[0])
    with pytest.raises(AttnmagError, match="texts"):
        run(texts=[*TEXTS[:-1], "A different last text."])
    with pytest.raises(AttnmagError, match="shard_texts"):
        run(shard_texts=2)
    with torch.no_grad():
        tiny_llama.model.norm.weight.add_(1.0)
    with pytest.raises(AttnmagError, match="weights"):
        run()
    assert json.loads((tmp_path / "run.json").read_text())["arguments"]["layers"] == [0, 1, 2]


def test_a_killed_run_resumes_where_it_stopped(tiny_llama, gpt2_tokenizer, tmp_path):
    model_dir, out = tmp_path / "model", tmp_path / "shards"
    tiny_llama.save_pretrained(model_dir)
    gpt2_tokenizer.save_pretrained(tmp_path / "tokenizer")
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(texts=TEXTS))
    worker = subprocess.Popen(
        [sys.executable, script, model_dir, tmp_path / "tokenizer", out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "shard-00001.parquet").exists():
            assert worker.poll() is None, worker.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard appeared"
            time.sleep(0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    done = sorted(p.name for p in out.glob("shard-*.parquet"))
    assert done[:2] == ["shard-00000.parquet", "shard-00001.parquet"] and len(done) < 4
    (out / done.pop(0)).unlink()  # a hole before the finished shards, as well as after them
    kept = {name: (out / name).stat().st_mtime_ns for name in done}
    with pytest.raises(AttnmagError, match="unfinished"):
        read_shards(out)

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    write_shards(model, gpt2_tokenizer, TEXTS, out, batch_size=1, shard_texts=2, progress=False)
    assert {name: (out / name).stat().st_mtime_ns for name in done} == kept
    assert (out / "shard-00000.parquet").is_file() and not list(out.glob(".*.tmp"))
    expected = extract.attention_norms(model, gpt2_tokenizer, TEXTS, progress=False)
    frame = read_shards(out)
    assert_same_frame(frame, expected)
    assert np.isfinite(frame["norm"]).all() and frame.attrs["n_texts"] == len(TEXTS)


def test_folders_not_written_by_write_shards_are_refused(tiny_gpt2, gpt2_tokenizer, tmp_path):
    (tmp_path / "shard-00000.parquet").write_bytes(b"not ours")
    with pytest.raises(AttnmagError, match="holds files but no run.json"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path, progress=False)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(AttnmagError, match="not a run record"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path, progress=False)
    with pytest.raises(AttnmagError, match="no shard folder at"):
        read_shards(tmp_path / "empty")


def test_shard_folders_of_one_corpus_carry_its_fingerprint_and_combine(
    tiny_gpt2, tiny_llama, gpt2_tokenizer, tmp_path
):
    whole = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path / "a", shard_texts=2, progress=False)
    write_shards(tiny_llama, gpt2_tokenizer, TEXTS, tmp_path / "b", shard_texts=3, progress=False)
    a, b = read_shards(tmp_path / "a"), read_shards(tmp_path / "b")
    assert a.attrs["texts_sha256"] == b.attrs["texts_sha256"] == whole.attrs["texts_sha256"]
    both = extract.combine({"gpt2": a, "llama": b})
    assert list(both["model"].cat.categories) == ["gpt2", "llama"] and len(both) == len(a) + len(b)


def test_scan_gives_the_verified_folder_as_a_relation_with_the_frame_columns(
    tiny_gpt2, gpt2_tokenizer, tmp_path
):
    write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path, shard_texts=2, progress=False)
    rows = extract.scan(tmp_path)
    frame = read_shards(tmp_path)
    assert rows.columns == list(frame.columns)
    # log_norm and the lags, which the shards do not store, equal the frame's exactly.
    scanned = rows.order("sequence, layer, position").df()
    for column in frame.columns:
        np.testing.assert_array_equal(
            scanned[column].to_numpy(), frame[column].to_numpy(), err_msg=column
        )
    layer = rows.filter("layer = 1").order("sequence, position").select("sequence, norm").df()
    expected = frame.loc[frame.layer == 1, ["sequence", "norm"]].reset_index(drop=True)
    np.testing.assert_array_equal(layer.to_numpy(), expected.to_numpy())
    shard = sorted(tmp_path.glob("shard-*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:-16] + bytes(16))
    with pytest.raises(AttnmagError, match=f"{shard.name} is damaged"):
        extract.scan(tmp_path)


def test_sites_and_heads_shards_read_back_as_the_uninterrupted_frame(
    tiny_gpt2, gpt2_tokenizer, tmp_path
):
    options = {"batch_size": 2, "shard_texts": 2, "progress": False, "heads": True}
    paths = write_shards(
        tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path, sites=("resid", "attn"), **options
    )
    blank = pd.read_parquet(paths[0])  # two blank texts: no rows, but every column
    assert blank.empty and list(blank.columns)[:4] == ["sequence", "site", "layer", "head"]
    frame = read_shards(tmp_path)
    assert list(frame["site"].cat.categories) == ["attn", "resid"]
    expected = extract.update_norms(
        tiny_gpt2, gpt2_tokenizer, TEXTS, sites=("attn", "resid"), heads=True, progress=False
    )
    assert_same_frame(frame, expected)
    arguments = json.loads((tmp_path / "run.json").read_text())["arguments"]
    assert arguments["sites"] == ["attn", "resid"] and arguments["heads"] is True
    with pytest.raises(AttnmagError, match="heads: True then, None now"):
        write_shards(
            tiny_gpt2,
            gpt2_tokenizer,
            TEXTS,
            tmp_path,
            sites="attn,resid",
            **{**options, "heads": False},
        )
    heads = tmp_path / "heads"
    write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, heads, **options)
    expected = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, heads=True, progress=False)
    assert_same_frame(read_shards(heads), expected)
    with pytest.raises(AttnmagError, match="heads must be True or False"):
        write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path / "bad", heads="yes")
    assert not (tmp_path / "bad").exists()


def test_shards_store_no_derived_columns_and_an_older_format_is_refused(
    tiny_gpt2, gpt2_tokenizer, tmp_path
):
    import pyarrow.parquet as pq

    from attnmag.extract.frame import DERIVED
    from attnmag.extract.shards import FORMAT

    options = {"shard_texts": 3, "progress": False, "heads": True}
    paths = write_shards(tiny_gpt2, gpt2_tokenizer, TEXTS, tmp_path / "norms", **options)
    whole = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, heads=True, progress=False)
    for path in paths:
        stored = pq.read_schema(path).names
        assert stored == [c for c in whole.columns if c not in DERIVED]
    run_file = tmp_path / "norms" / "run.json"
    record = json.loads(run_file.read_text())
    assert record["arguments"]["format"] == FORMAT == 3
    # Read back, log_norm and the lags equal the uninterrupted frame's, dtypes included.
    pd.testing.assert_frame_equal(extract.read_frame(tmp_path / "norms"), whole)
    record["arguments"]["format"] = 2  # a folder whose shards stored log_norm and the lags
    run_file.write_text(json.dumps(record))
    with pytest.raises(AttnmagError, match=r"format 2, this one reads 3\); extract again") as info:
        extract.read_frame(tmp_path / "norms")
    assert "\n" not in str(info.value)


def test_write_frames_declares_the_frames_extra_columns_so_that_read_frame_gives_them_back(
    tmp_path,
):
    frame = simulated_frame(12, 2, seed=3)
    parts = []
    for head in (0, 1):
        part = frame.assign(head=np.int16(head), site=pd.Categorical(["attn"] * len(frame)))
        parts.append(part.assign(label=np.where(part["sequence"] % 2, "fresh", "rotten")))
    grouped = pd.concat(parts, ignore_index=True).assign(surprisal=np.float32(1.5))
    write_folder(grouped, tmp_path / "norms", shard_texts=5)
    arguments = json.loads((tmp_path / "norms" / "run.json").read_text())["arguments"]
    assert arguments["keep"] == ["label"] and arguments["token_columns"] == ["surprisal"]
    assert arguments["sites"] == ["attn"] and arguments["heads"] is True
    stored = extract.read_frame(tmp_path / "norms")
    keys = ["sequence", "site", "layer", "head", "position"]
    expected = grouped.sort_values(keys, ignore_index=True)
    got = stored.sort_values(keys, ignore_index=True)
    assert sorted(got.columns) == sorted(expected.columns)
    for column in ("label", "head", "surprisal", "norm"):
        assert (got[column].to_numpy() == expected[column].to_numpy()).all(), column
    mixed = (part.drop(columns="label") if k else part for k, part in enumerate(parts))
    with pytest.raises(AttnmagError, match="frame 1 has the columns"):
        write_frames(mixed, tmp_path / "mixed", n_texts=12, shard_texts=6, layers=[0, 1])
    with pytest.raises(AttnmagError, match="one model's rows"):
        write_frames(
            [frame.assign(model="a")], tmp_path / "m", n_texts=12, shard_texts=12, layers=[0, 1]
        )
