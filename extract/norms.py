"""Per-token L2 norms of every attention update, for a corpus, as the tidy frame.

Holds:
- ``attention_norms``: model + tokenizer + texts -> the tidy frame (DESIGN.md's schema);
- ``encode``: texts -> token id lists, with empty texts skipped and long ones truncated;
- ``measure``: encoded texts -> per-text ``(layers, tokens)`` float32 norm arrays, batch by
  batch (length-sorted, token budget, halving a batch that runs out of memory);
- ``default_max_tokens``: the token budget per batch for a device.

Usage::

    frame = attention_norms(model, tokenizer, ["a first text", "a second one"], layers=[0, 1])
"""

from __future__ import annotations

import inspect
import json
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from attnmag.errors import AttnmagError
from attnmag.extract.adapters import adapter_for, attention_modules, base_model, blocks
from attnmag.extract.batching import length_batches, pad_batch
from attnmag.extract.frame import tidy_frame
from attnmag.extract.hooks import NormRecorder
from attnmag.extract.provenance import provenance

CPU_MAX_TOKENS = 512
GPU_MAX_TOKENS = 16384


@dataclass
class Encoded:
    """A corpus as token ids: ``sequences[i]`` is the corpus index of ``token_ids[i]``."""

    sequences: list[int]
    token_ids: list[list[int]]
    n_texts: int
    skipped_empty: int = 0
    truncated: int = 0
    max_length: int | None = None
    source: dict = field(default_factory=dict)


def as_texts(texts: object) -> tuple[list[str], dict]:
    """A ``datasets.Dataset`` with a ``text`` column, or a list of str -> (texts, corpus info)."""
    info: dict = {}
    if hasattr(texts, "column_names") and hasattr(texts, "info"):
        if "text" not in texts.column_names:
            raise AttnmagError(
                f"the dataset has no 'text' column; its columns are {texts.column_names}"
            )
        info = _corpus_info(texts)
        texts = texts["text"]
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise AttnmagError("texts must be a datasets.Dataset with a 'text' column or a list of str")
    return list(texts), info


def _corpus_info(dataset: object) -> dict:
    """The provenance ``load_corpus`` left in ``dataset.info.description`` (JSON), if any."""
    try:
        return json.loads(dataset.info.description or "{}")
    except (TypeError, ValueError):
        return {}


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's position scheme supports, where the config says."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def encode(tokenizer: object, texts: Sequence[str], *, max_length: int | None) -> Encoded:
    """Tokenize ``texts`` (the tokenizer's own special tokens), skipping blank texts and
    truncating those longer than ``max_length`` tokens; both are counted."""
    keep = [i for i, text in enumerate(texts) if text.strip()]
    ids = tokenizer([texts[i] for i in keep], verbose=False)["input_ids"] if keep else []
    truncated = sum(max_length is not None and len(x) > max_length for x in ids)
    if max_length is not None:
        ids = [list(x[:max_length]) for x in ids]
    nonempty = [(i, x) for i, x in zip(keep, ids, strict=True) if len(x)]
    return Encoded(
        sequences=[i for i, _ in nonempty],
        token_ids=[list(x) for _, x in nonempty],
        n_texts=len(texts),
        skipped_empty=len(texts) - len(nonempty),
        truncated=truncated,
        max_length=max_length,
    )


def default_max_tokens(device: torch.device | str) -> int:
    """Padded tokens per batch at most, by device: on a CPU, batches of about 512 tokens
    ran fastest (``python -m benchmarks.extract --max-tokens 256,512,2048,16384``: 2048 was
    10-20% slower, 16384 slower still and with more memory); a GPU wants large batches."""
    return CPU_MAX_TOKENS if torch.device(device).type == "cpu" else GPU_MAX_TOKENS


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def measure(
    model: nn.Module,
    encoded: Encoded,
    layers: list[int],
    *,
    pad_id: int,
    padding_side: str,
    batch_size: int,
    max_tokens: int | None = None,
    progress: bool | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, norms)`` for each encoded text ``i``: a float32 ``(len(layers), tokens)``
    array. Batches run longest first; a batch that runs out of memory is halved and retried,
    and later batches keep the smaller size."""
    base = base_model(model)
    modules = attention_modules(model, layers)
    device = getattr(model, "device", None) or next(model.parameters()).device
    takes_positions = "position_ids" in inspect.signature(base.forward).parameters
    budget = max_tokens or default_max_tokens(device)
    queue = deque(
        length_batches(
            [len(x) for x in encoded.token_ids], batch_size=batch_size, max_tokens=budget
        )
    )
    total = sum(len(x) for x in encoded.token_ids)
    with (
        tqdm(
            total=total,
            unit="tok",
            desc="attention norms",
            disable=None if progress is None else not progress,
            leave=False,
        ) as bar,
        NormRecorder(modules, stop_after=max(layers)) as recorder,
        torch.inference_mode(),
    ):
        while queue:
            batch = queue.popleft()
            inputs = pad_batch(
                [encoded.token_ids[i] for i in batch], pad_id=pad_id, side=padding_side
            )
            if not takes_positions:
                inputs.pop("position_ids")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            try:
                norms = recorder.run(
                    lambda inputs=inputs: base(**inputs, use_cache=False),
                    shape=tuple(inputs["input_ids"].shape),
                    device=device,
                )
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_oom(error) or len(batch) == 1:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                half = len(batch) // 2
                queue = deque(
                    b[i : i + half] for b in [batch, *queue] for i in range(0, len(b), half)
                )
                continue
            stacked = torch.stack([norms[layer] for layer in layers]).float().cpu().numpy()
            mask = inputs["attention_mask"].bool().cpu().numpy()
            for row, i in enumerate(batch):
                yield i, stacked[:, row, mask[row]]
            bar.update(int(mask.sum()))


def attention_norms(
    model: nn.Module,
    tokenizer: object,
    texts: object,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    *,
    max_tokens: int | None = None,
    max_length: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """The tidy frame of attention-update norms for ``texts`` (a Dataset or a list of str).

    One row per text x layer x real token, texts in corpus order (``sequence`` is the index
    of the text as given); ``layers=None`` means all. ``max_length`` defaults to the model's
    context; ``max_tokens`` (padded tokens per batch) to ``default_max_tokens`` of the model's
    device (512 on a CPU, 16384 elsewhere). The tokenizer's padding side is used as set;
    nothing of the caller's model or tokenizer is changed. ``frame.attrs`` holds the run's
    provenance.

    >>> frame = attention_norms(model, tokenizer, ["Hello there."], layers=[0])  # doctest: +SKIP
    """
    start = time.perf_counter()
    text_list, corpus = as_texts(texts)
    if not text_list:
        raise AttnmagError("the corpus is empty: there are no texts to measure")
    adapter_for(model)
    layers = sorted(set(range(len(blocks(model))) if layers is None else layers))
    encoded = encode(tokenizer, text_list, max_length=max_length or context_length(model))
    if not encoded.token_ids:
        raise AttnmagError(f"all {len(text_list)} texts are empty: there is nothing to measure")
    # Any id will do (padding is masked); GPT-2 has no pad token, so its eos stands in.
    pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
    norms = _preallocated(len(layers), [len(x) for x in encoded.token_ids])
    for i, values in measure(
        model,
        encoded,
        layers,
        pad_id=pad_id,
        padding_side=tokenizer.padding_side,
        batch_size=batch_size,
        max_tokens=max_tokens,
        progress=progress,
    ):
        norms[i][:] = values
    frame = tidy_frame(
        sequences=encoded.sequences,
        token_ids=[np.asarray(x) for x in encoded.token_ids],
        norms=norms,
        layers=layers,
        token_text=token_texts(tokenizer, encoded.token_ids),
    )
    frame.attrs.update(
        provenance(
            model,
            encoded,
            layers=layers,
            corpus=corpus,
            batch_size=batch_size,
            seconds=time.perf_counter() - start,
        )
    )
    return frame


def _preallocated(n_layers: int, lengths: list[int]) -> list[np.ndarray]:
    """Per text, a ``(n_layers, length)`` float32 view of one array allocated up front:
    a thousand small arrays kept among the forward passes' freed activations would
    fragment the heap (the resident set grew 2x more than the arrays' size)."""
    ends = np.cumsum(lengths) * n_layers
    store = np.empty(int(ends[-1]), dtype=np.float32)
    return [
        store[end - n * n_layers : end].reshape(n_layers, n)
        for end, n in zip(ends, lengths, strict=True)
    ]


def token_texts(tokenizer: object, token_ids: Sequence[Sequence[int]]) -> dict[int, str]:
    """Each distinct token id's text, as the tokenizer decodes it alone."""
    vocab = sorted({i for ids in token_ids for i in ids})
    return dict(zip(vocab, tokenizer.batch_decode([[i] for i in vocab]), strict=True))
