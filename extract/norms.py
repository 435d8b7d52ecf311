"""Per-token L2 norms of what each layer adds to the residual stream, as the tidy frame.

Holds:
- ``attention_norms``: model + tokenizer + texts -> the tidy frame of attention updates
  (see ``attention_norms``), optionally one row per head;
- ``update_norms``: the same for several sites of each layer (attention's update, the MLP's,
  the residual stream entering the block), with a ``site`` column;
- ``Run``, ``prepare_run``: a run's texts, corpus info, layers and limits, every option
  checked before any work (shared with the sharded runs);
- ``norms_frame``: the frame of both, with the token counts ``log_frequency`` takes given
  (a sharded run counts its whole corpus);
- ``as_texts``: a Dataset or any iterable of str -> a list of texts and the corpus info;
- ``encode``: texts -> token id lists, with empty texts skipped and long ones truncated;
- ``measure``: encoded texts -> each batch's float32 norms at its real tokens (length-sorted
  batches under a token budget, halving a batch that runs out of memory), in eval mode;
- ``real_token_norms``: a batch's ``(rows, texts, width)`` norms on a GPU -> its real tokens'
  values, text by text, gathered on the device;
- ``text_blocks``: each text's ``(rows, tokens)`` values, as views of a batch's values on the
  host (its recorder buffer on a CPU, the gathered values from a GPU);
- ``default_max_tokens``: the token budget per batch for a device.

Usage::

    frame = attention_norms(model, tokenizer, ["a first text", "a second one"], layers=[0, 1])
    sites = update_norms(model, tokenizer, ["a first text"], sites=("attn", "mlp", "resid"))
"""

from __future__ import annotations

import inspect
import json
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from torch import nn

from attnmag.errors import AttnmagError
from attnmag.extract.adapters import adapter_for, base_model, blocks
from attnmag.extract.batching import Encoded, length_batches, pad_batch
from attnmag.extract.frame import (
    COLUMNS,
    GROUP_COLUMNS,
    SINK_COLUMNS,
    SITES,
    TOKEN_COLUMNS,
    frame_from_columns,
)
from attnmag.extract.hooks import NormRecorder, Probe, eval_mode
from attnmag.extract.keep import check_keep, kept_columns
from attnmag.extract.provenance import provenance
from attnmag.extract.sink import SinkProbes
from attnmag.extract.sites import check_sites, n_heads, plan, plan_rows
from attnmag.extract.tokens import (
    Surprisal,
    check_token_columns,
    decode_each,
    token_counts,
    vocabulary_columns,
)
from attnmag.progress import progress_bar

__all__ = [
    "Run",
    "as_texts",
    "attention_norms",
    "check_count",
    "check_tokenizer",
    "context_length",
    "default_max_tokens",
    "encode",
    "measure",
    "norms_frame",
    "prepare_run",
    "real_token_norms",
    "text_blocks",
    "update_norms",
]

CPU_MAX_TOKENS = 512
GPU_MAX_TOKENS = 16384


def as_texts(texts: object) -> tuple[list[str], dict]:
    """The texts as a list, and the corpus info ``load_corpus`` recorded.

    Parameters
    ----------
    texts : datasets.Dataset or iterable of str
        A dataset with a ``text`` column, or any iterable of str (a list, a generator, a
        pandas Series).

    Returns
    -------
    texts : list of str
    info : dict
        The corpus info (empty for texts not loaded by ``load_corpus``).

    Examples
    --------
    >>> as_texts(iter(["a", "b"]))
    (['a', 'b'], {})
    """
    info: dict = {}
    if hasattr(texts, "column_names") and hasattr(texts, "info"):
        if "text" not in texts.column_names:
            raise AttnmagError(
                f"the dataset has no 'text' column; its columns are {texts.column_names}"
            )
        info = _corpus_info(texts)
        texts = texts["text"]
    text_list = None if isinstance(texts, str | bytes) else _listed(texts)
    if text_list is None or not all(isinstance(t, str) for t in text_list):
        raise AttnmagError(
            "texts must be a datasets.Dataset with a 'text' column or a list of str "
            "(any iterable of str)"
        )
    return text_list, info


def _listed(values: object) -> list | None:
    """``values`` as a list (an iterator is consumed once), or None when not iterable."""
    return list(values) if isinstance(values, Iterable) else None


def _corpus_info(dataset: object) -> dict:
    """The provenance ``load_corpus`` left in ``dataset.info.description`` (JSON), if any."""
    try:
        return json.loads(dataset.info.description or "{}")
    except (TypeError, ValueError):
        return {}


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's position scheme supports, where the config says.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model (its ``config`` is read).

    Returns
    -------
    int or None
        ``max_position_embeddings``, ``n_positions`` or ``n_ctx``; None where none is set.

    Examples
    --------
    >>> context_length(model)
    128
    """
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Run:
    """A checked extraction run, as ``prepare_run`` returns it.

    Attributes
    ----------
    texts : list of str
        The texts, in corpus order.
    corpus : dict
        The corpus info, for the provenance.
    layers : list of int
        The sorted distinct layers measured.
    max_length : int or None
        Tokens kept per text.
    batch_size : int
        Texts per batch at most.
    max_tokens : int or None
        Padded tokens per batch at most (None: the device's default).

    Examples
    --------
    >>> run = prepare_run(model, ["A fine film.", "Dull."], batch_size=8, max_tokens=256)
    >>> run.texts, run.layers[:3], run.batch_size, run.max_tokens
    (['A fine film.', 'Dull.'], [0, 1, 2], 8, 256)
    """

    texts: list[str]
    corpus: dict
    layers: list[int]
    max_length: int | None
    batch_size: int
    max_tokens: int | None


def prepare_run(
    model: nn.Module,
    texts: object,
    *,
    batch_size: int,
    layers: object = None,
    max_tokens: int | None = None,
    max_length: int | None = None,
) -> Run:
    """Check a run's options, texts and model before any work; one ``AttnmagError`` line
    names whatever is wrong.

    Parameters
    ----------
    model
        A causal LM of a known family.
    texts
        A ``datasets.Dataset`` with a ``text`` column, or any iterable of str.
    batch_size, max_tokens, max_length
        Whole numbers of at least 1 (``max_tokens`` and ``max_length`` may be None: the
        device's token budget and the model's context).
    layers
        Block indices (0-based), at least one; None means every layer.

    Returns
    -------
    Run
        The texts as a list, the corpus info, the sorted distinct layers, the maximum
        length (the model's context when not given), ``batch_size`` and ``max_tokens``.

    Examples
    --------
    >>> run = prepare_run(model, ["a text"], batch_size=64, layers=[0, 2])
    >>> run.layers, run.max_length
    ([0, 2], 128)
    """
    check_count("batch_size", batch_size)
    check_count("max_tokens", max_tokens, optional=True)
    check_count("max_length", max_length, optional=True)
    chosen = _layer_list(layers)
    text_list, corpus = as_texts(texts)
    adapter_for(model)
    n_layers = len(blocks(model))
    if chosen is None:
        chosen = list(range(n_layers))
    bad = sorted({i for i in chosen if not 0 <= i < n_layers})
    if bad:
        raise AttnmagError(
            f"layers {bad} do not exist: the model has layers 0..{n_layers - 1} "
            "(layers=None means all)"
        )
    context = context_length(model)
    if max_length is not None and context is not None and max_length > context:
        raise AttnmagError(
            f"max_length {max_length} is beyond the model's {context} positions: give at most "
            f"{context} (or none: the model's context)"
        )
    if not text_list:
        raise AttnmagError("the corpus is empty: there are no texts to measure")
    if not any(text.strip() for text in text_list):
        raise AttnmagError(f"all {len(text_list)} texts are empty: there is nothing to measure")
    return Run(
        texts=text_list,
        corpus=corpus,
        layers=sorted(set(chosen)),
        max_length=max_length or context,
        batch_size=batch_size,
        max_tokens=max_tokens,
    )


def check_tokenizer(tokenizer: object, label: str = "tokenizer") -> None:
    """Refuse a tokenizer that is missing (None, or not callable) or that makes no tokens of
    an ordinary sentence (a model folder without its tokenizer files gives such a one).

    Parameters
    ----------
    tokenizer : object
        What was given as the model's tokenizer.
    label : str
        How the message names it.

    Examples
    --------
    >>> check_tokenizer(tokenizer)
    >>> check_tokenizer(None)
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: ...tokenizer...
    """
    if not callable(tokenizer):
        raise AttnmagError(
            f"{label} must be the model's tokenizer (as load_model returns it), not "
            f"{type(tokenizer).__name__}"
        )
    if not tokenizer("The quick brown fox.")["input_ids"]:
        raise AttnmagError(
            f"{label} makes no tokens of a sentence: its files (tokenizer.json, or vocab.json "
            "and merges.txt, …) are missing; add them to the model's folder"
        )


def check_count(name: str, value: object, *, optional: bool = False) -> None:
    """Refuse ``value`` unless it is a whole number of at least 1 (or None where optional).

    Examples
    --------
    >>> check_count("batch_size", 64)
    >>> check_count("batch_size", 0)
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: ...batch_size...
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        allowed = "a whole number of at least 1" + (" or None (the default)" if optional else "")
        raise AttnmagError(f"{name} must be {allowed}, not {value!r}")


def _layer_list(layers: object) -> list[int] | None:
    """``layers`` as a list of ints (None stays None); an empty or non-integer selection is
    refused."""
    if layers is None:
        return None
    listed = None if isinstance(layers, str | bytes) else _listed(layers)
    if listed is None or not all(
        isinstance(i, Integral) and not isinstance(i, bool) for i in listed
    ):
        raise AttnmagError(
            f"layers must be a list of layer indices (ints) or None for all, not {layers!r}"
        )
    if not listed:
        raise AttnmagError("layers is empty: name at least one layer index, or None for all")
    return [int(i) for i in listed]


def encode(tokenizer: object, texts: Sequence[str], *, max_length: int | None) -> Encoded:
    """Tokenize ``texts`` with the tokenizer's own special tokens.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer.
    texts : sequence of str
        The texts, in corpus order.
    max_length : int or None
        Texts longer than this many tokens are truncated (None: none are).

    Returns
    -------
    Encoded
        The token ids of the non-blank texts with their corpus indices; blank texts are
        skipped, and both skipped and truncated texts are counted.

    Examples
    --------
    >>> encoded = encode(tokenizer, ["A fine film.", "", "Dull."], max_length=None)
    >>> encoded.sequences, encoded.token_ids, encoded.skipped_empty
    ([0, 2], [[32, 3734, 2646, 13], [35, 724, 13]], 1)
    """
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
    """Padded tokens per batch at most, by device: small batches on a CPU, where they run
    fastest (``python -m benchmarks.extract --max-tokens 256,512,2048,16384`` compares
    budgets), large ones elsewhere.

    Parameters
    ----------
    device : torch.device or str
        Where the model runs.

    Returns
    -------
    int
        ``CPU_MAX_TOKENS`` on a CPU, else ``GPU_MAX_TOKENS``.

    Examples
    --------
    >>> default_max_tokens("cpu") == CPU_MAX_TOKENS
    True
    """
    return CPU_MAX_TOKENS if torch.device(device).type == "cpu" else GPU_MAX_TOKENS


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _description(sites: tuple[str, ...], heads: bool) -> str:
    """The progress bar's label: what is measured."""
    measured = "attention" if sites == ("attn",) else "/".join(sites)
    return f"{measured} norms" + (" by head" if heads else "")


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
    sites: tuple[str, ...] = ("attn",),
    heads: bool = False,
    surprisal: bool = False,
    sink: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """The norms of each encoded text, batch by batch, in eval mode.

    The model's own ``training`` flags come back afterwards. Batches run longest first; a
    batch that runs out of memory is halved and retried, and later batches keep the
    smaller size.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM of a known family.
    encoded : Encoded
        The texts as token ids.
    layers : list of int
        The layers measured.
    pad_id : int
        The padding token's id.
    padding_side : str
        ``"left"`` or ``"right"``.
    batch_size : int
        Texts per batch at most.
    max_tokens : int, optional
        Padded tokens per batch at most (None: ``default_max_tokens`` of the model's device).
    progress : bool, optional
        As ``attnmag.progress.progress_bar`` takes it.
    sites : tuple of str
        The sites measured (of ``SITES``).
    heads : bool
        One row per head of the attention update.
    surprisal : bool
        One more row after the plan's: each token's surprisal (``tokens.Surprisal``); the
        pass then runs to its end.
    sink : bool
        Two more rows per layer after those: ``sink_weight`` and ``sink_norm``
        (``sink.SinkProbes``).

    Yields
    ------
    batch : list of int
        The indices in ``encoded`` of a batch's texts.
    blocks : list of numpy.ndarray
        float32, per text in ``batch`` order: its ``(rows, tokens)`` norms at its real
        tokens (``text_blocks``: views, valid until the next batch is asked for); the rows
        are those of ``plan(model, layers, sites, heads).rows`` (one per layer for the
        attention update alone), then the surprisal and sink rows. On a CPU they are views
        of the recorder's buffer (no copy). On another device the values are gathered
        there and copied (on a GPU without blocking, into pinned memory), and a batch is
        yielded once the next one is queued on the device, so that the caller's work on it
        overlaps the device's on the next.
    """
    base = base_model(model)
    device = getattr(model, "device", None) or next(model.parameters()).device
    takes_positions = "position_ids" in inspect.signature(base.forward).parameters
    budget = max_tokens or default_max_tokens(device)
    lengths = [len(x) for x in encoded.token_ids]
    queue = deque(length_batches(lengths, batch_size=batch_size, max_tokens=budget))
    run_plan = plan(model, layers, sites, heads)
    probes, stop = run_plan.probes, run_plan.stop
    sinks = SinkProbes(model, layers, row=len(run_plan.rows) + surprisal) if sink else nullcontext()
    if sink:
        # Registered first, the sink's hooks on a projection run before the heads' (which
        # may stop the pass); a stop before the last layer's attention moves to its end.
        probes = [*sinks.probes, *probes]
        stop = sinks.probes[-1] if stop.pre else stop
    if surprisal:
        stop = Probe(base, row=len(run_plan.rows), measure=Surprisal(model))
        probes = [*probes, stop]
    staging = _Staging(torch.device(device))
    pending = None
    with (
        progress_bar(
            progress, total=sum(lengths), unit="tok", desc=_description(sites, heads), leave=False
        ) as bar,
        eval_mode(model),
        sinks,
        NormRecorder(probes, stop=stop) as recorder,
        torch.inference_mode(),
    ):
        while queue:
            batch = queue.popleft()
            inputs = pad_batch(
                [encoded.token_ids[i] for i in batch], pad_id=pad_id, side=padding_side
            )
            if not takes_positions:
                inputs.pop("position_ids")
            if padding_side == "right":
                # Right padding follows every real token, so causal attention alone keeps it
                # out of their values: an all-ones mask lets the attention run as its causal
                # kernel, without a padding mask built and applied per layer.
                inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
            inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
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
            batch_lengths = [lengths[i] for i in batch]
            if norms.device.type == "cpu":
                staged = (norms, None)
            else:
                staged = staging.put(real_token_norms(norms, batch_lengths, side=padding_side))
            if pending is not None:
                yield pending[0], text_blocks(staging.ready(pending[1]), pending[2], padding_side)
                bar.update(sum(pending[2]))
            pending = (batch, staged, batch_lengths)
        if pending is not None:
            yield pending[0], text_blocks(staging.ready(pending[1]), pending[2], padding_side)
            bar.update(sum(pending[2]))


def real_token_norms(norms: torch.Tensor, lengths: Sequence[int], *, side: str) -> torch.Tensor:
    """A batch's norms at its real tokens, text by text, each text's ``(rows, tokens)`` block
    in row-major order, by one index gather on the norms' device (no host synchronisation:
    the output's size is known on the host).

    Parameters
    ----------
    norms : torch.Tensor
        ``(rows, texts, width)``, contiguous, as ``NormRecorder.run`` returns it.
    lengths : sequence of int
        Each text's real tokens.
    side : str
        The padding side, ``"left"`` or ``"right"``.

    Returns
    -------
    torch.Tensor
        1-d, ``rows * sum(lengths)`` values on the norms' device.

    Examples
    --------
    >>> norms = torch.arange(12.0).reshape(2, 2, 3)  # rows 2, texts 2, width 3
    >>> real_token_norms(norms, [3, 1], side="right").tolist()
    [0.0, 1.0, 2.0, 6.0, 7.0, 8.0, 3.0, 9.0]
    """
    rows, texts, width = norms.shape
    total = rows * sum(lengths)
    device = norms.device
    length = torch.tensor(lengths, dtype=torch.int64).to(device, non_blocking=True)
    first = torch.arange(texts, device=device) * width
    if side == "left":
        first += width - length
    # Per (text, row) block: where it starts in the buffer, and how long it is.
    starts = (first[:, None] + torch.arange(rows, device=device) * (texts * width)).reshape(-1)
    sizes = length.repeat_interleave(rows)
    offsets = torch.repeat_interleave(starts - (sizes.cumsum(0) - sizes), sizes, output_size=total)
    return norms.reshape(-1).index_select(0, offsets + torch.arange(total, device=device))


def text_blocks(values: np.ndarray, lengths: Sequence[int], side: str) -> list[np.ndarray]:
    """Each text's ``(rows, tokens)`` values at its real tokens, as views of ``values``.

    Parameters
    ----------
    values : numpy.ndarray
        A batch's values on the host: its ``(rows, texts, width)`` recorder buffer, or the
        1-d values ``real_token_norms`` gathered.
    lengths : sequence of int
        Each text's real tokens.
    side : str
        The padding side, ``"left"`` or ``"right"`` (where ``values`` is the buffer).

    Returns
    -------
    list of numpy.ndarray
        One ``(rows, length)`` view per text.

    Examples
    --------
    >>> buffer = np.arange(12.0).reshape(2, 2, 3)  # rows 2, texts 2, width 3
    >>> [block.tolist() for block in text_blocks(buffer, [3, 1], side="left")]
    [[[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]], [[5.0], [11.0]]]
    """
    if values.ndim == 1:
        ends = np.cumsum(lengths).tolist()
        rows = len(values) // max(ends[-1], 1)
        return [
            values[rows * (end - length) : rows * end].reshape(rows, length)
            for end, length in zip(ends, lengths, strict=True)
        ]
    width = values.shape[2]
    if side == "left":
        return [values[:, text, width - length :] for text, length in enumerate(lengths)]
    return [values[:, text, :length] for text, length in enumerate(lengths)]


class _Staging:
    """Where a device's gathered values wait for the host: on a CUDA GPU, one of two pinned
    host buffers, filled without blocking, with an event to wait on (the caller is done with
    a batch's values before the one after next is staged); on another device, a copy."""

    def __init__(self, device: torch.device) -> None:
        self.gpu = device.type == "cuda"
        self.buffers: list[torch.Tensor] = []
        self.turn = 0

    def put(self, values: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Start copying ``values`` to the host; what ``ready`` takes."""
        if not self.gpu:
            return values.cpu(), None
        self.turn = (self.turn + 1) % 2
        if len(self.buffers) < 2:
            self.buffers.append(torch.empty(0, dtype=torch.float32, pin_memory=True))
        if self.buffers[self.turn].numel() < values.numel():
            self.buffers[self.turn] = torch.empty(
                values.numel(), dtype=torch.float32, pin_memory=True
            )
        host = self.buffers[self.turn][: values.numel()]
        host.copy_(values, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event

    @staticmethod
    def ready(staged: tuple[torch.Tensor, object]) -> np.ndarray:
        """The staged values on the host, once their copy is done (a CPU's buffer as is)."""
        values, event = staged
        if event is not None:
            event.synchronize()
        return values.numpy()


def attention_norms(
    model: nn.Module,
    tokenizer: object,
    texts: object,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    *,
    heads: bool = False,
    keep: Sequence[str] = (),
    token_columns: Sequence[str] | str = (),
    sink: bool = False,
    max_tokens: int | None = None,
    max_length: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """The tidy frame of attention-update norms, one row per text x layer x real token.

    What is measured, per layer, is the L2 norm of the vector the attention sub-layer adds
    to the residual stream: the output of the family's module (GPT-2 ``attn``, Llama-style
    ``self_attn``, Gemma 2/3 ``post_attention_layernorm``, GPT-NeoX ``attention``, OPT
    ``self_attn``), computed on the device in float32. The model runs in eval mode (no
    dropout); the ``training`` flags of the model and its submodules are restored
    afterwards, as are its hooks. Padding never reaches a real token (left padding is
    masked; right padding follows every real token, out of causal attention's reach), so
    each text's norms equal those of the text run alone, on either padding side.

    Parameters
    ----------
    model
        A causal LM of a known family (``load_model`` gives one).
    tokenizer
        Its tokenizer; its padding side is used as set, and nothing of it changes.
    texts
        A ``datasets.Dataset`` with a ``text`` column, or any iterable of str. Blank texts
        are skipped and counted; texts longer than ``max_length`` tokens are truncated and
        counted.
    batch_size
        Texts per forward pass at most (a whole number of at least 1).
    layers
        0-based block indices, at least one; None means all.
    heads
        Also measure each head's own contribution ``W_O^h z_h`` (the output projection's
        bias, which no head owns, left out; under a Gemma 2/3 post-attention norm, each
        head's share scaled as the whole update is, so the shares add up to it). Adds an
        int16 ``head`` column: 0..H-1 for the heads, -1 for the whole update's rows.
    keep
        Columns of the ``datasets.Dataset`` ``texts`` to carry into the frame as
        sequence-level columns (after ``lag2``), for covariates in formulas: categorical
        for class labels (the bundled corpus's ``label``: rotten, fresh) and strings.
    token_columns
        Token-level columns to add (any of ``surprisal``, ``log_frequency``, ``word_start``,
        ``punct``; a list or one comma-separated string), the same in every row of a token:
        ``surprisal``, ``-log p(token | tokens before)`` in nats from the model's own LM
        head, NaN at position 0 (the forward pass then runs to its end); ``log_frequency``,
        ln of the token's count in ``texts``; ``word_start``, the tokenizer marks the token
        as a word's start (Ġ, ▁, or a leading space; position 0 counts); ``punct``, the
        token is punctuation or symbols only.
    sink
        Add ``sink_weight``, the mean over heads of the attention weight from the token to
        its text's first token, and ``sink_norm``, the norm of the first token's part of the
        attention update (``||sum_h alpha^h_{t,0} W_O^h v^h_0||``, without the bias; scaled
        as the update under a Gemma post-norm), per token and layer (the same in every
        site's and head's rows of that layer). The attention runs as the family's eager
        attention for the run (the weights exist only there).
    max_tokens
        Padded tokens per batch at most; None: ``default_max_tokens`` of the model's device.
    max_length
        Tokens kept per text; None: the model's context length.
    progress
        Show a progress bar on stderr: True, False, or None (in a terminal or notebook).

    Returns
    -------
    pandas.DataFrame
        Columns ``sequence`` (the text's index in ``texts``), ``layer``, [``head``,]
        ``position`` (0-based among the text's real tokens), ``token_id``, ``token``
        (category), ``norm`` (float32), ``log_norm``, ``lag1`` and ``lag2`` (``log_norm``
        one and two positions earlier in the same sequence, layer [and head], else NaN),
        then the ``keep`` columns, the ``token_columns`` (float32 ``surprisal`` and
        ``log_frequency``, bool ``word_start`` and ``punct``) and, with ``sink``, float32
        ``sink_weight`` and ``sink_norm``. ``frame.attrs`` holds the run's provenance (model,
        dtype, device, corpus and its fingerprint, counts, versions).

    Examples
    --------
    >>> frame = attention_norms(model, tokenizer, ["Hello there."], layers=[0], progress=False)
    >>> frame[["sequence", "layer", "position", "token"]]
       sequence  layer  position   token
    0         0      0         0   Hello
    1         0      0         1   there
    2         0      0         2       .
    >>> by_head = attention_norms(model, tokenizer, ["Hello."], heads=True, progress=False)
    >>> sorted(by_head["head"].unique().tolist())
    [-1, 0, 1, 2, 3]
    """
    return norms_frame(
        model,
        tokenizer,
        texts,
        sites=("attn",),
        heads=heads,
        keep=keep,
        token_columns=token_columns,
        sink=sink,
        site_column=False,
        batch_size=batch_size,
        layers=layers,
        max_tokens=max_tokens,
        max_length=max_length,
        progress=progress,
    )


def update_norms(
    model: nn.Module,
    tokenizer: object,
    texts: object,
    sites: Sequence[str] | str = SITES,
    heads: bool = False,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    *,
    keep: Sequence[str] = (),
    token_columns: Sequence[str] | str = (),
    sink: bool = False,
    max_tokens: int | None = None,
    max_length: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """The tidy frame of per-token norms at several sites of each layer, with a ``site``
    column.

    The sites: ``attn``, the attention sub-layer's update (as ``attention_norms``
    measures it); ``mlp``, the MLP sub-layer's output as the block adds it to the residual
    stream (GPT-2, Llama-style and GPT-NeoX ``mlp``, Gemma 2/3
    ``post_feedforward_layernorm``, OPT ``fc2``); ``resid``, the residual stream entering
    the block (its input hidden state). The forward pass stops after the last requested
    layer's last requested site. Padding, eval mode and hooks as in ``attention_norms``.

    Parameters
    ----------
    model, tokenizer, texts, batch_size, layers, keep, token_columns, sink, max_tokens
        As for ``attention_norms``.
    max_length, progress
        As for ``attention_norms``.
    sites
        Names from ``("attn", "mlp", "resid")`` (or one comma-separated string), at least
        one; rows follow that order whatever order they are given in.
    heads
        Also each attention head's contribution (needs ``attn``); adds an int16 ``head``
        column, -1 on the rows of whole sub-layers and of the stream.

    Returns
    -------
    pandas.DataFrame
        ``attention_norms``' columns with a ``site`` category after ``sequence`` (and
        ``head`` after ``layer`` with ``heads``); lags run within sequence x site x layer
        [x head]; ``frame.attrs`` as for ``attention_norms``.

    Examples
    --------
    >>> frame = update_norms(model, tokenizer, ["Hi."], sites=("attn", "resid"), progress=False)
    >>> sorted(frame["site"].cat.categories)
    ['attn', 'resid']
    """
    return norms_frame(
        model,
        tokenizer,
        texts,
        sites=sites,
        heads=heads,
        keep=keep,
        token_columns=token_columns,
        sink=sink,
        site_column=True,
        batch_size=batch_size,
        layers=layers,
        max_tokens=max_tokens,
        max_length=max_length,
        progress=progress,
    )


def norms_frame(
    model: nn.Module,
    tokenizer: object,
    texts: object,
    *,
    sites: object,
    heads: object,
    keep: Sequence[str],
    token_columns: Sequence[str] | str,
    sink: object,
    site_column: bool,
    batch_size: int,
    layers: Sequence[int] | None,
    max_tokens: int | None,
    max_length: int | None,
    progress: bool | None,
    counts: dict[int, int] | None = None,
) -> pd.DataFrame:
    """The frame of ``attention_norms`` and ``update_norms``: checks, tokenizing, measuring,
    the tidy frame and its provenance.

    Parameters
    ----------
    model, tokenizer, texts, sites, heads, keep, token_columns, sink
        As for ``update_norms``.
    site_column : bool
        Add the ``site`` column (``update_norms``), else not (``attention_norms``).
    batch_size, layers, max_tokens, max_length, progress
        As for ``attention_norms``.
    counts : dict of int to int, optional
        The token counts ``log_frequency`` takes (a sharded run's whole corpus); None: those
        of ``texts``.

    Returns
    -------
    pandas.DataFrame
        The tidy frame.
    """
    start = time.perf_counter()
    sites = check_sites(sites, heads)
    token_columns = check_token_columns(token_columns)
    if not isinstance(sink, bool):
        raise AttnmagError(f"sink must be True or False, not {sink!r}")
    run = prepare_run(
        model,
        texts,
        batch_size=batch_size,
        layers=layers,
        max_tokens=max_tokens,
        max_length=max_length,
    )
    check_tokenizer(tokenizer)
    kept = check_keep(texts, keep, [*COLUMNS, *GROUP_COLUMNS, *TOKEN_COLUMNS, *SINK_COLUMNS])
    encoded = encode(tokenizer, run.texts, max_length=run.max_length)
    if not encoded.token_ids:
        raise AttnmagError(f"all {len(run.texts)} texts are empty: there is nothing to measure")
    # Any id will do (padding is masked); GPT-2 has no pad token, so its eos stands in.
    pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
    rows = plan_rows(run.layers, sites, heads, n_heads(model))
    lengths = np.array([len(x) for x in encoded.token_ids], dtype=np.int64)
    tokens = int(lengths.sum())
    norm = np.empty(tokens * len(rows), dtype=np.float32)
    # Per token: its surprisal, and its two sink values per layer.
    n_extra = ("surprisal" in token_columns) + 2 * len(run.layers) * sink
    extra = np.empty((n_extra, tokens), dtype=np.float32)
    # Each text's token count, first token and first row in the frame (texts are in corpus
    # order), as Python ints for slicing.
    n_tokens = lengths.tolist()
    token_starts = (np.cumsum(lengths) - lengths).tolist()
    text_rows = [start * len(rows) for start in token_starts]
    for batch, values in measure(
        model,
        encoded,
        run.layers,
        pad_id=pad_id,
        padding_side=tokenizer.padding_side,
        batch_size=run.batch_size,
        max_tokens=run.max_tokens,
        progress=progress,
        sites=sites,
        heads=heads,
        surprisal="surprisal" in token_columns,
        sink=sink,
    ):
        # A text's rows are contiguous in the frame: one copy each from its block.
        for text, block in zip(batch, values, strict=True):
            length, row = n_tokens[text], text_rows[text]
            norm[row : row + length * len(rows)].reshape(-1, length)[:] = block[: len(rows)]
            if n_extra:
                extra[:, token_starts[text] : token_starts[text] + length] = block[len(rows) :]
    token_ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in encoded.token_ids])
    groups: dict[str, object] = {}
    if site_column:
        groups["site"] = pd.Categorical([r[0] for r in rows], categories=list(sites))
    if heads:
        groups["head"] = [r[2] for r in rows]
    frame = frame_from_columns(
        sequences=np.asarray(encoded.sequences),
        lengths=lengths,
        token_ids=token_ids,
        norm=norm,
        layers=[r[1] for r in rows],
        token_text=token_texts(tokenizer, token_ids),
        groups=groups,
    )
    for name, values in kept_columns(texts, kept, frame["sequence"].to_numpy()).items():
        frame[name] = values
    _add_token_columns(
        frame,
        tokenizer,
        token_columns,
        token_ids=token_ids,
        counts=counts,
        measured=extra,
        sink=sink,
        series=len(rows),
        layers=run.layers,
        lengths=lengths,
    )
    frame.attrs.update(
        provenance(
            model,
            encoded,
            layers=run.layers,
            corpus=run.corpus,
            batch_size=run.batch_size,
            seconds=time.perf_counter() - start,
            texts=run.texts,
            sites=list(sites),
            heads=heads,
        )
    )
    return frame


def _add_token_columns(
    frame: pd.DataFrame,
    tokenizer: object,
    token_columns: tuple[str, ...],
    *,
    token_ids: np.ndarray,
    counts: dict[int, int] | None,
    measured: np.ndarray,
    sink: bool,
    series: int,
    layers: list[int],
    lengths: np.ndarray,
) -> None:
    """Add the token columns and the sink columns to ``frame``, in place.

    ``token_ids`` holds the texts' token ids concatenated; ``counts`` the token counts
    ``log_frequency`` takes (None: those of ``token_ids``); ``measured`` per token its
    surprisal, where asked for, then its ``sink_weight`` and ``sink_norm`` per layer. A row
    takes its token's values (and its layer's, for the sink columns)."""
    if not token_columns and not sink:
        return
    if counts is None and "log_frequency" in token_columns:
        counts = token_counts([token_ids])
    starts = np.cumsum(lengths) - lengths
    token_index = np.repeat(starts, lengths * series) + frame["position"].to_numpy()
    positions = np.arange(len(token_ids)) - np.repeat(starts, lengths)
    found = vocabulary_columns(tokenizer, token_ids, positions, token_columns, counts)
    if "surprisal" in token_columns:
        found["surprisal"] = measured[0]
    for name in TOKEN_COLUMNS:
        if name in found:
            frame[name] = found[name].take(token_index)
    if sink:
        layer = np.searchsorted(layers, frame["layer"].to_numpy())
        first = int("surprisal" in token_columns)
        for k, name in enumerate(SINK_COLUMNS):
            frame[name] = measured[first + 2 * layer + k, token_index]


def token_texts(tokenizer: object, token_ids: np.ndarray) -> dict[int, str]:
    """Each distinct token id's text, as the tokenizer decodes it alone.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer.
    token_ids : numpy.ndarray
        The texts' token ids, concatenated.

    Returns
    -------
    dict of int to str
        ``{token_id: text}``.

    Examples
    --------
    >>> token_texts(tokenizer, np.array([13, 32, 13]))
    {13: '.', 32: 'A'}
    """
    vocab = np.unique(token_ids).tolist()
    return dict(zip(vocab, decode_each(tokenizer, vocab), strict=True))
