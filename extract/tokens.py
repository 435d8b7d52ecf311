"""Token-level columns of the tidy frame (``token_columns=``): what each token is.

The columns known, ``TOKEN_COLUMNS`` in the frame's order, and their ``TOKEN_DTYPES`` are
part of the frame's schema (``attnmag.extract.frame``): ``surprisal`` (nats, from the
model's own LM head), ``log_frequency`` (ln of the token's count in the measured corpus),
``word_start`` (the token begins a word), ``punct`` (punctuation or symbols only).

Holds:
- ``check_token_columns``: a user's ``token_columns`` checked, in ``TOKEN_COLUMNS`` order;
- ``Surprisal``: the probe measurement (``attnmag.extract.hooks.Probe``) on the base model
  that turns its last hidden state into each token's surprisal;
- ``token_counts``: each token id's count in the encoded texts;
- ``decode_each``: each token id's text, as the tokenizer decodes it alone;
- ``vocabulary_columns``: ``log_frequency``, ``word_start`` and ``punct`` of token ids.

``surprisal`` is ``-log p(token | the tokens before it)`` under the model, in nats; NaN at
position 0, which has no tokens before it. Computing it runs the forward pass to its end
and through the LM head (the pass otherwise stops after the last layer measured).

Usage::

    frame = attention_norms(model, tokenizer, texts, token_columns=("surprisal", "punct"))
    models.fit(frame, "log_norm ~ position + surprisal + C(punct)")
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from attnmag.errors import AttnmagError
from attnmag.extract.frame import TOKEN_COLUMNS, TOKEN_DTYPES

__all__ = [
    "Surprisal",
    "check_token_columns",
    "decode_each",
    "token_counts",
    "vocabulary_columns",
]

#: Tokens of the LM head's logits computed at once (bounds the ``(tokens, vocabulary)``
#: float32 block).
LOGIT_CHUNK = 1024
#: How tokenizers mark a token that begins a word: GPT-2's byte-level BPE, SentencePiece.
WORD_MARKERS = ("Ġ", "▁")


def check_token_columns(token_columns: object) -> tuple[str, ...]:
    """``token_columns`` in ``TOKEN_COLUMNS`` order, once checked.

    Parameters
    ----------
    token_columns : sequence of str, or str
        Names from ``TOKEN_COLUMNS``, or one comma-separated string; empty for none.

    Returns
    -------
    tuple of str
        The columns; anything else is an ``AttnmagError``.

    Examples
    --------
    >>> check_token_columns("punct,surprisal")
    ('surprisal', 'punct')
    """
    if isinstance(token_columns, str):
        token_columns = [c.strip() for c in token_columns.split(",") if c.strip()]
    listed = list(token_columns) if isinstance(token_columns, Iterable) else None
    if listed is None or not all(isinstance(c, str) for c in listed):
        raise AttnmagError(
            f"token_columns must be a list of names from {TOKEN_COLUMNS}, not {token_columns!r}"
        )
    unknown = [c for c in listed if c not in TOKEN_COLUMNS]
    if unknown:
        raise AttnmagError(
            f"unknown token columns {unknown}; the token columns are {', '.join(TOKEN_COLUMNS)}"
        )
    return tuple(c for c in TOKEN_COLUMNS if c in listed)


def token_counts(token_ids: Iterable[Sequence[int]]) -> dict[int, int]:
    """Each token id's count in ``token_ids``.

    Parameters
    ----------
    token_ids : iterable of sequence of int
        The texts as token ids.

    Returns
    -------
    dict of int to int
        ``{token_id: count}``.

    Examples
    --------
    >>> token_counts([[5, 6, 5], [6]])
    {5: 2, 6: 2}
    """
    flat = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in token_ids] or [[]])
    ids, counts = np.unique(flat.astype(np.int64), return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


def _is_punct(text: str) -> bool:
    """Punctuation or symbols only (Unicode categories P* and S*), ignoring whitespace."""
    stripped = "".join(text.split())
    return bool(stripped) and all(unicodedata.category(c)[0] in "PS" for c in stripped)


def _starts_word(piece: str, text: str) -> bool:
    """The tokenizer marks the token as a word's start (Ġ, ▁), or it decodes with a leading
    space."""
    return piece.startswith(WORD_MARKERS) or text[:1].isspace()


def decode_each(tokenizer: object, ids: Sequence[int]) -> list[str]:
    """Each token id's text, as ``tokenizer.batch_decode`` gives it for the id alone.

    Where ``batch_decode`` would return the Rust backend's text as is (a fast tokenizer
    that cleans up no spaces and overrides none of the decoding steps), the backend
    decodes every id in one call, without the per-id Python; otherwise ``batch_decode``
    does.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer.
    ids : sequence of int
        Token ids.

    Returns
    -------
    list of str
        One text per id.

    Examples
    --------
    >>> decode_each(tokenizer, [32, 13])
    ['A', '.']
    """
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

    singles = [[int(i)] for i in ids]
    kind = type(tokenizer)
    as_is = (
        isinstance(tokenizer, PreTrainedTokenizerFast)
        and not tokenizer.clean_up_tokenization_spaces
        and kind._decode is PreTrainedTokenizerFast._decode
        and kind.decode is PreTrainedTokenizerBase.decode
        and kind.batch_decode is PreTrainedTokenizerBase.batch_decode
    )
    if not as_is:
        return tokenizer.batch_decode(singles)
    return tokenizer.backend_tokenizer.decode_batch(singles, skip_special_tokens=False)


def vocabulary_columns(
    tokenizer: object,
    token_ids: np.ndarray,
    position: np.ndarray,
    columns: Sequence[str],
    counts: Mapping[int, int],
) -> dict[str, np.ndarray]:
    """``log_frequency``, ``word_start`` and ``punct`` (those in ``columns``) of tokens.

    Parameters
    ----------
    tokenizer
        The tokenizer the ids come from.
    token_ids : numpy.ndarray
        The tokens' ids.
    position : numpy.ndarray
        Their positions (position 0 counts as a word start).
    columns : sequence of str
        The columns wanted.
    counts : mapping of int to int
        Each token id's count in the corpus measured.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per column, aligned with ``token_ids``.
    """
    vocab, inverse = np.unique(np.asarray(token_ids, dtype=np.int64), return_inverse=True)
    ids = vocab.tolist()
    texts = decode_each(tokenizer, ids)
    per_id: dict[str, np.ndarray] = {}
    if "log_frequency" in columns:
        missing = [i for i in ids if counts.get(i, 0) < 1]
        if missing:
            raise AttnmagError(f"token ids {missing[:5]} have no count in the corpus measured")
        per_id["log_frequency"] = np.log(np.array([counts[i] for i in ids], dtype=np.float64))
    if "word_start" in columns:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        per_id["word_start"] = np.array(
            [_starts_word(str(p), t) for p, t in zip(pieces, texts, strict=True)], dtype=bool
        )
    if "punct" in columns:
        per_id["punct"] = np.array([_is_punct(t) for t in texts], dtype=bool)
    found = {name: values[inverse].astype(TOKEN_DTYPES[name]) for name, values in per_id.items()}
    if "word_start" in found:
        found["word_start"] |= np.asarray(position) == 0
    return found


class Surprisal:
    """Probe measurement on the base model: writes ``(1, batch, tokens)`` surprisals.

    The base model's last hidden state goes through the LM head (with the family's final
    logit soft-capping, as Gemma 2/3 apply it) in chunks of ``LOGIT_CHUNK`` tokens; the
    surprisal of the token at column ``t`` is ``logsumexp(logits) - logit[token]`` of the
    logits at ``t - 1``, in float32. Each text's first real token gets NaN.

    Parameters
    ----------
    model : torch.nn.Module
        The causal LM (its ``get_output_embeddings()`` is the LM head).

    Examples
    --------
    >>> from attnmag.extract.hooks import NormRecorder, Probe
    >>> probe = Probe(model.transformer, row=0, measure=Surprisal(model))
    >>> ids = torch.tensor([[464, 3807, 318]])
    >>> forward = lambda: model.transformer(input_ids=ids)  # noqa: E731
    >>> with torch.inference_mode(), NormRecorder([probe]) as recorder:
    ...     rows = recorder.run(forward, shape=(1, 3), device="cpu")
    >>> rows[0, 0, 0].isnan().item(), bool((rows[0, 0, 1:] > 0).all())
    (True, True)
    """

    def __init__(self, model: nn.Module) -> None:
        head = model.get_output_embeddings()
        if head is None:
            raise AttnmagError(
                f"surprisal needs the model's LM head; {type(model).__name__} has none "
                "(load the model with its head, as load_model does)"
            )
        self.head = head
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def __call__(self, args: tuple, kwargs: dict, output: object, out: torch.Tensor) -> None:
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        batch, width = ids.shape
        flat = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        targets = ids[:, 1:].reshape(-1).to(hidden.device)
        nll = torch.empty(flat.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, flat.shape[0], LOGIT_CHUNK):
            logits = self.head(flat[start : start + LOGIT_CHUNK]).float()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            chosen = logits.gather(1, targets[start : start + LOGIT_CHUNK, None])[:, 0]
            nll[start : start + LOGIT_CHUNK] = torch.logsumexp(logits, dim=-1) - chosen
        row = out[0]
        row[:, 1:].copy_(nll.reshape(batch, width - 1))
        first = torch.zeros(batch, dtype=torch.int64, device=row.device)
        if mask is not None:
            first = mask.to(row.device).int().argmax(-1)
        row[:, 0] = torch.nan
        row[torch.arange(batch, device=row.device), first] = torch.nan
