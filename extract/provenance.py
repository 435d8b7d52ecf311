"""The run's provenance, kept in ``frame.attrs`` and so in the Parquet file.

Holds:
- ``provenance``: model id and revision, family, dtype, device, layers, corpus, counts of
  texts (measured, skipped empty, truncated) and tokens, and package versions;
- ``corpus_provenance``: its corpus part (corpus id, split, how it was sampled);
- ``texts_fingerprint``: the sha256 of the texts as given, in order (frames of one corpus
  share it, so that their ``sequence`` numbers name the same texts).

Every value is JSON-serialisable, as Parquet metadata needs.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from torch import nn

from attnmag.extract.adapters import adapter_for, blocks
from attnmag.extract.batching import Encoded
from attnmag.extract.quantisation import weights_provenance

__all__ = ["corpus_provenance", "provenance", "texts_fingerprint"]

PACKAGES = ("attnmag", "torch", "transformers", "datasets", "pandas", "numpy", "statsmodels")


@functools.cache
def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers, read once per process
    (the modules imported are the ones that ran, whatever is installed later).

    Returns
    -------
    dict of str to str
        Each of ``PACKAGES``'s version (``"absent"`` where not installed), and Python's.
    """
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    found["python"] = platform.python_version()
    return found


def corpus_provenance(corpus: dict) -> dict:
    """The corpus part of the provenance, from the info ``load_corpus`` recorded (or none).

    Parameters
    ----------
    corpus : dict
        The corpus info, as ``as_texts`` returns it.

    Returns
    -------
    dict
        ``corpus`` (``"texts given"`` when not loaded by ``load_corpus``), ``split`` and
        ``corpus_sample`` (how it was sampled).

    Examples
    --------
    >>> corpus_provenance({})
    {'corpus': 'texts given', 'split': None, 'corpus_sample': {}}
    """
    return {
        "corpus": corpus.get("corpus", "texts given"),
        "split": corpus.get("split"),
        "corpus_sample": {k: v for k, v in corpus.items() if k not in ("corpus", "split")},
    }


def texts_fingerprint(texts: Sequence[str]) -> str:
    """The sha256 of ``texts`` in order (each text's UTF-8 bytes after its length).

    Parameters
    ----------
    texts : sequence of str
        The texts, in corpus order.

    Returns
    -------
    str
        The hex digest.

    Examples
    --------
    >>> texts_fingerprint(["a", "b"]) == texts_fingerprint(["a", "b"]) != texts_fingerprint(["ab"])
    True
    """
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def provenance(
    model: nn.Module,
    encoded: Encoded,
    *,
    layers: list[int],
    corpus: dict,
    batch_size: int,
    seconds: float,
    texts: Sequence[str] | None = None,
    sites: list[str] | None = None,
    heads: bool | None = None,
) -> dict:
    """The run's provenance as a flat, JSON-serialisable dict.

    Parameters
    ----------
    model : torch.nn.Module
        The model measured.
    encoded : Encoded
        The texts as encoded (their counts).
    layers : list of int
        The layers measured.
    corpus : dict
        The corpus info (see ``corpus_provenance``).
    batch_size : int
        Texts per batch at most.
    seconds : float
        The extraction's duration.
    texts : sequence of str, optional
        The texts, whose fingerprint is recorded.
    sites : list of str, optional
        The sites measured, recorded.
    heads : bool, optional
        Whether heads were measured, recorded.

    Returns
    -------
    dict
        Model id, revision, family, dtype (and a GGUF's format and quantisation) and
        device, layers, the corpus, counts of texts (measured, skipped empty, truncated) and
        tokens, the maximum length, batch size, seconds and package versions.

    Examples
    --------
    >>> from attnmag.extract.norms import encode
    >>> encoded = encode(tokenizer, ["A fine film."], max_length=None)
    >>> record = provenance(
    ...     model, encoded, layers=[0], corpus={"corpus": "mine"}, batch_size=8, seconds=0.1
    ... )
    >>> record["corpus"], record["layers"]
    ('mine', [0])
    """
    config = model.config
    parameter = next(model.parameters())
    return {
        "model": config.name_or_path or "unnamed",
        "model_revision": getattr(config, "_commit_hash", None),
        "model_type": config.model_type,
        "family": adapter_for(model).family,
        "dtype": str(parameter.dtype).removeprefix("torch."),
        **weights_provenance(model),
        "device": str(parameter.device),
        "n_model_layers": len(blocks(model)),
        "layers": list(layers),
        **corpus_provenance(corpus),
        "n_texts": encoded.n_texts,
        "n_sequences": len(encoded.token_ids),
        "n_skipped_empty": encoded.skipped_empty,
        "n_truncated": encoded.truncated,
        "max_length": encoded.max_length,
        "n_tokens": sum(len(x) for x in encoded.token_ids),
        "batch_size": batch_size,
        "seconds_extract": round(seconds, 3),
        "versions": dict(package_versions()),
        **({} if texts is None else {"texts_sha256": texts_fingerprint(texts)}),
        **({} if sites is None else {"sites": list(sites)}),
        **({} if heads is None else {"heads": heads}),
    }
