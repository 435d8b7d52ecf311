"""Frames of several models, measured on one corpus, as one frame with a ``model`` column.

Holds:
- ``CORPUS_KEYS``: the provenance keys that say which corpus a frame measured;
- ``combine``: ``{name: frame}`` -> one frame, ``model`` a category, each model's provenance
  kept in ``attrs["models"][name]``.

Usage::

    both = combine({"SmolLM2-135M": frame_a, "gpt2-tiny": frame_b})
    both.attrs["models"]["gpt2-tiny"]["model_type"]     # 'gpt2'
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from attnmag.errors import AttnmagError
from attnmag.extract.frame import COLUMNS, SITES, frame_columns, group_columns

__all__ = ["CORPUS_KEYS", "combine"]

CORPUS_KEYS = ("corpus", "split", "corpus_sample", "n_texts", "texts_sha256")


def combine(
    frames: Mapping[str, pd.DataFrame], *, allow_different_corpora: bool = False
) -> pd.DataFrame:
    """Concatenate frames of several models into one, with a category ``model`` column.

    ``sequence`` keeps its meaning, the index of the text in the corpus, so the frames
    must come from one corpus: the same corpus id, split, sample and count of texts, and
    the same fingerprint of the texts (``texts_sha256``, recorded by the extraction). Lags
    stay as each frame computed them, within its model.

    Parameters
    ----------
    frames
        Model name -> frame (``attention_norms`` or ``update_norms``), at least one; all
        with the same optional grouping columns (``site``, ``head``), none with ``model``.
    allow_different_corpora
        Combine frames measured on different corpora all the same (``sequence`` then
        names different texts in different models).

    Returns
    -------
    pandas.DataFrame
        The rows of each frame in turn, ``model`` after ``sequence``; ``token`` (and
        ``site``) categories are the union of the frames'. ``attrs["models"]`` maps each
        name to its frame's provenance; the corpus keys the frames share sit at the top.

    Examples
    --------
    >>> llama = extract.attention_norms(other_model, other_tokenizer, texts, progress=False)
    >>> both = combine({"gpt2-tiny": frame.drop(columns="label"), "llama-tiny": llama})
    >>> list(both["model"].cat.categories)
    ['gpt2-tiny', 'llama-tiny']
    >>> both.groupby("model", observed=True)["layer"].nunique().tolist()
    [12, 3]
    """
    names = _checked(frames)
    groups = group_columns(frames[names[0]])
    if not allow_different_corpora:
        _same_corpus(frames, names)
    parts = [frames[name] for name in names]
    categorical = ["token", *(["site"] if "site" in groups else [])]
    combined = pd.concat([part.drop(columns=categorical) for part in parts], ignore_index=True)
    combined["token"] = union_categoricals([part["token"] for part in parts], ignore_order=True)
    if "site" in groups:
        sites = union_categoricals([part["site"] for part in parts], ignore_order=True)
        combined["site"] = sites.set_categories([s for s in SITES if s in sites.categories])
    combined["model"] = pd.Categorical.from_codes(
        np.repeat(np.arange(len(names), dtype=np.int16), [len(part) for part in parts]),
        categories=names,
    )
    extra = [c for c in combined.columns if c not in frame_columns([*groups, "model"])]
    combined = combined[frame_columns([*groups, "model"]) + extra]
    combined.attrs = {
        **_shared_corpus(frames, names),
        "models": {name: dict(frames[name].attrs) for name in names},
    }
    return combined


def _checked(frames: object) -> list[str]:
    """The model names of ``frames``, once every frame is checked to be combinable."""
    if not isinstance(frames, Mapping) or not frames:
        raise AttnmagError("combine takes a dict of at least one model name -> frame")
    names = list(frames)
    for name in names:
        frame = frames[name]
        if not isinstance(name, str) or not name:
            raise AttnmagError(f"model names must be non-empty strings, not {name!r}")
        if not isinstance(frame, pd.DataFrame) or any(c not in frame.columns for c in COLUMNS):
            raise AttnmagError(f"{name!r} is not an attnmag frame (it lacks the frame's columns)")
        if "model" in frame.columns:
            raise AttnmagError(f"{name!r} already has a model column: combine single-model frames")
    first = group_columns(frames[names[0]])
    for name in names[1:]:
        if group_columns(frames[name]) != first:
            raise AttnmagError(
                f"{names[0]!r} and {name!r} have different grouping columns "
                f"({first} and {group_columns(frames[name])}): measure them alike"
            )
    return names


def _corpus_of(frame: pd.DataFrame) -> dict:
    return {key: frame.attrs[key] for key in CORPUS_KEYS if key in frame.attrs}


def _same_corpus(frames: Mapping[str, pd.DataFrame], names: list[str]) -> None:
    """Refuse frames whose recorded corpus differs in any key both record."""
    reference = _corpus_of(frames[names[0]])
    for name in names[1:]:
        other = _corpus_of(frames[name])
        for key in CORPUS_KEYS:
            if key in reference and key in other and _json(reference[key]) != _json(other[key]):
                raise AttnmagError(
                    f"{names[0]!r} and {name!r} were measured on different corpora ({key} "
                    f"{_short(reference[key])} vs {_short(other[key])}), so their sequence "
                    "numbers name different texts; pass allow_different_corpora=True to "
                    "combine them anyway"
                )


def _shared_corpus(frames: Mapping[str, pd.DataFrame], names: list[str]) -> dict:
    """The corpus keys every frame records with one value."""
    corpora = [_corpus_of(frames[name]) for name in names]
    return {
        key: corpora[0][key]
        for key in CORPUS_KEYS
        if all(key in c for c in corpora) and len({_json(c[key]) for c in corpora}) == 1
    }


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: object) -> str:
    text = _json(value)
    return text if len(text) <= 40 else text[:37] + "..."
