"""Stage 1: texts + model -> tidy long DataFrame of per-token attention norms.

Holds the stage's public functions:
- ``load_model``: the bundled SmolLM2, a hub id, a local folder or a GGUF file;
- ``load_corpus``: the bundled Rotten Tomatoes snippets, a hub dataset or a local file;
- ``attention_norms``: the tidy frame (one row per sequence x layer x real token);
- ``read_frame``: a saved frame (Parquet file or folder of shards), provenance kept.

Usage::

    from attnmag import extract
    model, tokenizer = extract.load_model()
    frame = extract.attention_norms(model, tokenizer, extract.load_corpus(limit=64))
"""

import warnings

with warnings.catch_warnings():
    # datasets and transformers import tqdm.auto, which in a notebook without ipywidgets
    # warns "IProgress not found" and falls back to text bars; attnmag's own bars choose
    # text there themselves, so importing the stage prints nothing.
    warnings.filterwarnings("ignore", message="IProgress not found")
    from attnmag.extract.corpus import load_corpus
    from attnmag.extract.frame import COLUMNS, read_frame
    from attnmag.extract.norms import attention_norms
    from attnmag.extract.sources import load_model

__all__ = ["COLUMNS", "attention_norms", "load_corpus", "load_model", "read_frame"]
