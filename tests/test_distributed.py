"""Several processes: ranks split the shards by RANK/WORLD_SIZE; merged, they equal one run;
identical runs started together share the work without measuring a shard twice."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from attnmag import AttnmagError, extract
from attnmag.extract.shards import read_shards, write_shards

TEXTS = [f"Text number {i} says {'more and ' * (i % 5)}something." for i in range(11)]

# One rank, as torchrun or accelerate launch starts it: RANK and WORLD_SIZE in the environment.
WORKER = """
import sys
from attnmag import extract
from attnmag.extract.shards import write_shards
model, tokenizer = extract.load_model(sys.argv[1])
write_shards(model, tokenizer, {texts!r}, sys.argv[2], batch_size=2, shard_texts=3,
             progress=False)
"""


# The same run, started together with others (a barrier file), printing each shard it measures.
SAME_RUN = """
import sys, time
from pathlib import Path
from attnmag import extract
from attnmag.extract import shards
model, tokenizer = extract.load_model(sys.argv[1])
model.transformer.h[0].register_forward_pre_hook(lambda *args: time.sleep(0.2))
measure = shards._measure_shard
def announced(*args, start, **kwargs):
    print(start, flush=True)
    return measure(*args, start=start, **kwargs)
shards._measure_shard = announced
print("ready", flush=True)
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
shards.write_shards(model, tokenizer, {texts!r}, sys.argv[2], batch_size=2, shard_texts=2,
                    progress=False)
"""


@pytest.fixture
def model_dir(tiny_gpt2, gpt2_tokenizer, tmp_path):
    folder = tmp_path / "model"
    tiny_gpt2.save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return folder


def test_two_ranks_write_shards_that_merge_into_one_runs_frame(model_dir, tmp_path):
    script, out = tmp_path / "worker.py", tmp_path / "shards"
    script.write_text(WORKER.format(texts=TEXTS))
    ranks = [
        subprocess.Popen(
            [sys.executable, script, model_dir, out],
            env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"},
            stderr=subprocess.PIPE,
        )
        for rank in range(2)
    ]
    for process in ranks:
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    shards = sorted(out.glob("shard-*.parquet"))
    assert [pd.read_parquet(p).attrs["rank"] for p in shards] == [0, 1, 0, 1]
    model, tokenizer = extract.load_model(model_dir)
    expected = extract.attention_norms(model, tokenizer, TEXTS, progress=False)
    frame = read_shards(out)
    pd.testing.assert_frame_equal(frame, expected, rtol=1e-5)
    assert frame.attrs["n_texts"] == len(TEXTS) and frame.attrs["n_shards"] == 4


def test_rank_comes_from_the_environment(model_dir, tmp_path, monkeypatch):
    model, tokenizer = extract.load_model(model_dir, device_map="auto")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    paths = write_shards(model, tokenizer, TEXTS, tmp_path / "out", shard_texts=2, progress=False)
    assert [p.name for p in paths] == ["shard-00001.parquet", "shard-00004.parquet"]
    assert set(pd.read_parquet(paths[1])["sequence"]) == {8, 9}
    with pytest.raises(AttnmagError, match="rank 3 is not within a world of 3"):
        write_shards(model, tokenizer, TEXTS, tmp_path / "out", rank=3, progress=False)


def test_identical_runs_started_together_measure_each_shard_once(model_dir, tmp_path):
    script, out, go = tmp_path / "same_run.py", tmp_path / "shards", tmp_path / "go"
    script.write_text(SAME_RUN.format(texts=TEXTS))
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    runs = [
        subprocess.Popen(
            [sys.executable, script, model_dir, out, go],
            env={**environment, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.stdout.readline() == "ready\n", run.stderr.read()
    go.touch()
    measured = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        measured.append([int(line) for line in stdout.split()])
    assert sorted(measured[0] + measured[1]) == list(range(0, len(TEXTS), 2))  # each once
    model, tokenizer = extract.load_model(model_dir)
    expected = extract.attention_norms(model, tokenizer, TEXTS, progress=False)
    pd.testing.assert_frame_equal(read_shards(out), expected, rtol=1e-5)
    assert not [p.name for p in out.iterdir() if p.name.endswith((".lock", ".tmp"))]
