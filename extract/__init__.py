"""Stage 1: texts + model -> tidy long DataFrame of per-token norms.

Holds the stage's public functions:
- ``load_model``: the bundled SmolLM2, a hub id, a local folder or a GGUF file;
- ``load_corpus``: the bundled Rotten Tomatoes snippets, a hub dataset or a local file;
- ``attention_norms``: the tidy frame (one row per sequence x layer [x head] x real token);
- ``update_norms``: the same at several sites per layer (attention, MLP, residual stream);
  both take ``token_columns=`` (``surprisal``, ``log_frequency``, ``word_start``, ``punct``)
  and ``sink=True`` (``sink_weight``, ``sink_norm``: the first token's share);
- ``combine``: frames of several models on one corpus -> one frame with a ``model`` column;
- ``read_frame``: a saved frame (Parquet file or folder of shards), provenance kept;
- ``write_shards``, ``read_shards``: a resumable extraction into a folder of Parquet shards,
  and that folder read back as one frame; ``verified_shards`` checks the folder's files;
- ``scan``: a shard folder as a lazy DuckDB relation with the frame's columns, for queries
  in bounded memory;
- ``COLUMNS``, ``GROUP_COLUMNS``: the plain frame's columns, and the grouping columns
  (``model``, ``site``, ``layer``, ``head``) that lags and fits run within.

Usage::

    from attnmag import extract
    model, tokenizer = extract.load_model()
    frame = extract.attention_norms(model, tokenizer, extract.load_corpus(limit=64))
"""

import importlib
import warnings

with warnings.catch_warnings():
    # datasets and transformers import tqdm.auto, which in a notebook without ipywidgets
    # warns "IProgress not found" (once, when first imported) and falls back to text bars;
    # attnmag's own bars choose text there themselves, so importing the stage prints nothing.
    warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: F401

from attnmag.extract.combine import combine
from attnmag.extract.frame import COLUMNS, GROUP_COLUMNS

#: The other public names -> the module that holds each. Those modules are imported on first
#: use, so that ``attnmag.models`` and ``attnmag.reports``, which read the frame's columns
#: and shards, need not import torch and transformers.
_HOMES = {
    "attention_norms": "norms",
    "load_corpus": "corpus",
    "load_model": "sources",
    "read_frame": "shards",
    "read_shards": "shards",
    "scan": "shards",
    "update_norms": "norms",
    "verified_shards": "shards",
    "write_shards": "shards",
}

__all__ = [
    "COLUMNS",
    "GROUP_COLUMNS",
    "attention_norms",
    "combine",
    "load_corpus",
    "load_model",
    "read_frame",
    "read_shards",
    "scan",
    "update_norms",
    "verified_shards",
    "write_shards",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return __all__
