"""A GGUF's quantisation, recorded at load and carried by the provenance and run.json."""

from __future__ import annotations

import json

import pytest

from attnmag import extract
from attnmag.extract import sources
from attnmag.extract.quantisation import gguf_weights, weights_provenance
from attnmag.extract.shards import RUN_FILE, write_shards


@pytest.fixture(scope="module")
def bundled():
    return extract.load_model()


def test_the_bundled_gguf_is_q4_1_with_its_mix():
    weights = gguf_weights(sources.bundled_gguf())
    assert weights["quantisation"] == "Q4_1"
    assert weights["weights_format"].startswith("GGUF")
    shares = [part.split()[1] for part in weights["quantisation_mix"].split(", ")]
    assert weights["quantisation_mix"].startswith("Q4_1 ") and "Q8_0" in weights["quantisation_mix"]
    assert sum(float(s.rstrip("%")) for s in shares if not s.startswith("<")) == pytest.approx(
        100, abs=0.2
    )


def test_load_records_the_quantisation_and_the_frame_and_run_json_carry_it(bundled, tmp_path):
    model, tokenizer = bundled
    assert weights_provenance(model)["quantisation"] == "Q4_1"
    texts = extract.load_corpus(limit=2)
    frame = extract.attention_norms(model, tokenizer, texts, layers=[0], progress=False)
    assert frame.attrs["quantisation"] == "Q4_1" and frame.attrs["dtype"] == "float32"
    write_shards(model, tokenizer, texts, tmp_path / "norms", layers=[0], progress=False)
    arguments = json.loads((tmp_path / "norms" / RUN_FILE).read_text())["arguments"]
    assert arguments["quantisation"] == "Q4_1"
    assert extract.read_frame(tmp_path / "norms").attrs["quantisation"] == "Q4_1"


def test_a_model_not_from_a_gguf_records_no_quantisation(tiny_gpt2, gpt2_tokenizer):
    frame = extract.attention_norms(tiny_gpt2, gpt2_tokenizer, ["a short text"], progress=False)
    assert "quantisation" not in frame.attrs and weights_provenance(tiny_gpt2) == {}


def test_a_load_reads_the_quantisation_its_cache_entry_recorded(tmp_path, monkeypatch):
    """A load whose cache entry's marker holds the weights' description does not read the
    GGUF's tensor table again; one whose entry lacks it (an older entry) does."""
    gguf = sources.bundled_gguf()
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / sources.COMPLETE).write_text(json.dumps({"gguf": str(gguf), "weights": {"a": "b"}}))

    def unread(path):
        raise AssertionError("the GGUF's tensor table was read again")

    monkeypatch.setattr(sources, "gguf_weights", unread)
    assert sources._recorded_weights(gguf, entry) == {"a": "b"}
    (entry / sources.COMPLETE).write_text(json.dumps({"gguf": str(gguf)}))
    monkeypatch.setattr(sources, "gguf_weights", lambda path: {"read": str(path)})
    assert sources._recorded_weights(gguf, entry) == {"read": str(gguf)}
