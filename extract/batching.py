"""A corpus as token ids, its length-sorted batches under a token budget, and their tensors.

Holds:
- ``Encoded``: a corpus as token id lists, with its counts of skipped and truncated texts;
- ``length_batches``: text indices, longest first, grouped under a count and a token budget;
- ``pad_batch``: token id lists -> ``input_ids``, ``attention_mask``, ``position_ids`` on
  either padding side, with positions counted over real tokens only.

Usage::

    for batch in length_batches([len(ids) for ids in encoded], batch_size=64, max_tokens=8192):
        inputs = pad_batch([encoded[i] for i in batch], pad_id=0, side="left")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Encoded", "length_batches", "pad_batch"]


@dataclass
class Encoded:
    """A corpus as token ids: ``sequences[i]`` is the corpus index of ``token_ids[i]``.

    Attributes
    ----------
    sequences : list of int
        The corpus index of each encoded text (blank texts have none).
    token_ids : list of list of int
        Each encoded text's token ids.
    n_texts : int
        The texts given, blank ones included.
    skipped_empty : int
        Blank texts, skipped.
    truncated : int
        Texts cut to ``max_length`` tokens.
    max_length : int or None
        The token limit the texts were encoded under.

    Examples
    --------
    >>> encoded = Encoded([0, 2], token_ids=[[464, 318], [13]], n_texts=3, skipped_empty=1)
    >>> dict(zip(encoded.sequences, encoded.token_ids))
    {0: [464, 318], 2: [13]}
    """

    sequences: list[int]
    token_ids: list[list[int]]
    n_texts: int
    skipped_empty: int = 0
    truncated: int = 0
    max_length: int | None = None


def length_batches(lengths: Sequence[int], *, batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted longest first, cut so a batch has at most ``batch_size`` texts and at most
    ``max_tokens`` tokens once padded to its longest text (a text longer than that is alone).

    Parameters
    ----------
    lengths : sequence of int
        Each text's token count.
    batch_size : int
        Texts per batch at most.
    max_tokens : int
        Padded tokens per batch at most.

    Returns
    -------
    list of list of int
        The batches of text indices.

    Examples
    --------
    >>> length_batches([3, 9, 5, 4], batch_size=2, max_tokens=100)
    [[1, 2], [3, 0]]
    """
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        # Longest first: the batch's first text sets its padded length.
        if (
            current
            and len(current) < batch_size
            and (len(current) + 1) * lengths[current[0]] <= max_tokens
        ):
            current.append(index)
        else:
            batches.append([index])
    return batches


def pad_batch(
    token_ids: Sequence[Sequence[int]], *, pad_id: int, side: str
) -> dict[str, torch.Tensor]:
    """Pad token id lists to one length on ``side`` ("left" or "right").

    ``position_ids`` count real tokens from 0 whatever the side, so a left-padded text
    sees the same positions as when run alone.

    Parameters
    ----------
    token_ids : sequence of sequence of int
        The batch's texts as token ids.
    pad_id : int
        The padding token's id.
    side : str
        ``"left"`` or ``"right"``.

    Returns
    -------
    dict of str to torch.Tensor
        ``input_ids``, ``attention_mask`` and ``position_ids``, each ``(texts, longest)``.

    Examples
    --------
    >>> pad_batch([[5, 6], [7]], pad_id=0, side="left")["position_ids"].tolist()
    [[0, 1], [0, 0]]
    """
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        cols = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        input_ids[row, cols] = torch.as_tensor(ids, dtype=torch.long)
        mask[row, cols] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids}
