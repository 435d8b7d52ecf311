"""Resumable, sharded extraction: Parquet shards of the tidy frame, written as the run goes.

Holds:
- ``write_shards``: texts -> a folder of Parquet shards (``shard-00000.parquet``, …), each
  holding whole sequences with their corpus ``sequence`` ids; a rerun with the same
  arguments skips the finished shards, one with other arguments is refused; under
  ``torchrun``/``accelerate launch`` each rank writes its own share of the shards;
- ``read_shards``: such a folder -> one tidy frame, provenance merged (counts summed);
- ``shard_ranges``: which texts each shard holds, and which shards a rank writes.

A shard is complete or absent: it is written under a temporary name and renamed. The
folder's ``run.json`` records what defines the run (model, weights' fingerprint, dtype,
texts' hash, layers, maximum length, shard size); batch size, padding side and device
only change speed, so they may differ between a run and its resumption.

Usage::

    write_shards(model, tokenizer, texts, "norms/", batch_size=64)   # again to resume
    frame = read_shards("norms/")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from attnmag.errors import AttnmagError
from attnmag.extract.adapters import adapter_for, blocks
from attnmag.extract.frame import COLUMNS, _token_categorical
from attnmag.extract.norms import Encoded, as_texts, attention_norms, context_length
from attnmag.extract.provenance import corpus_provenance, provenance

RUN_FILE = "run.json"
SHARD_GLOB = "shard-*.parquet"
FORMAT = 1
# Provenance counts that add up over shards; every other key is kept where the shards agree.
COUNTS = ("n_texts", "n_sequences", "n_skipped_empty", "n_truncated", "n_tokens")
PER_SHARD = ("shard", "shard_start", "shard_stop", "rank", "world_size", "seconds_extract")


def shard_name(index: int) -> str:
    """The file name of shard ``index``."""
    return f"shard-{index:05d}.parquet"


def shard_ranges(
    n_texts: int, shard_texts: int, *, rank: int = 0, world_size: int = 1
) -> list[tuple[int, int, int]]:
    """``(shard, start, stop)`` for the shards rank ``rank`` of ``world_size`` writes: shard
    ``k`` holds texts ``[k * shard_texts, (k + 1) * shard_texts)`` and goes to rank
    ``k % world_size``.

    >>> shard_ranges(5, 2, rank=0, world_size=2)
    [(0, 0, 2), (2, 4, 5)]
    """
    starts = range(0, n_texts, shard_texts)
    return [
        (k, start, min(start + shard_texts, n_texts))
        for k, start in enumerate(starts)
        if k % world_size == rank
    ]


def _rank_and_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank`` and ``world_size``, from ``RANK``/``WORLD_SIZE`` (torchrun, accelerate) when
    not given."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise AttnmagError(f"rank {rank} is not within a world of {world_size} processes")
    return rank, world_size


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of every parameter's name, shape and first values (device-independent)."""
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(f"{name}{tuple(parameter.shape)}".encode())
        if parameter.device.type != "meta":
            head = parameter.detach().reshape(-1)[:16].float().cpu().numpy()
            digest.update(head.tobytes())
    return digest.hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    """A hash of the texts, in order."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:16]


def run_arguments(
    model: nn.Module,
    texts: Sequence[str],
    *,
    layers: list[int],
    max_length: int | None,
    shard_texts: int,
) -> dict:
    """What defines a sharded run: a rerun must give the same to resume."""
    return {
        "format": FORMAT,
        "model": getattr(model, "attnmag_source", None) or model.config.name_or_path or "unnamed",
        "model_type": model.config.model_type,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "weights": weights_fingerprint(model),
        "n_texts": len(texts),
        "texts": texts_fingerprint(texts),
        "layers": layers,
        "max_length": max_length,
        "shard_texts": shard_texts,
    }


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _recorded_arguments(run_file: Path) -> dict:
    """The arguments a ``run.json`` records."""
    try:
        return dict(json.loads(run_file.read_text())["arguments"])
    except (ValueError, KeyError, TypeError):
        raise AttnmagError(f"{run_file} is not a run record of write_shards") from None


def _claim_folder(folder: Path, arguments: dict, corpus: dict) -> None:
    """Record ``arguments`` in ``folder/run.json``, or check they equal those recorded."""
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        if any(folder.glob(SHARD_GLOB)):
            raise AttnmagError(
                f"{folder} holds shards but no {RUN_FILE}: it was not written by write_shards; "
                "use another folder"
            )
        record = json.dumps({"arguments": arguments, "corpus": corpus}, indent=1)
        _write_atomically(run_file, lambda path: path.write_text(record))
        return
    recorded = _recorded_arguments(run_file)
    changed = [k for k in sorted({*recorded, *arguments}) if recorded.get(k) != arguments.get(k)]
    if changed:
        details = "; ".join(
            f"{k}: {recorded.get(k)!r} then, {arguments.get(k)!r} now" for k in changed
        )
        raise AttnmagError(
            f"{folder} holds shards of a run with other arguments ({details}); "
            "resume with the same ones, or write to a new folder"
        )


def _measure_shard(
    model: nn.Module,
    tokenizer: object,
    texts: list[str],
    *,
    start: int,
    layers: list[int],
    options: dict,
) -> pd.DataFrame:
    """The tidy frame of ``texts``, whose first is corpus text ``start``; a chunk of blank
    texts gives a frame with no rows (and its texts counted as skipped)."""
    if any(text.strip() for text in texts):
        frame = attention_norms(model, tokenizer, texts, layers=layers, progress=False, **options)
        frame["sequence"] += start
        return frame
    frame = pd.DataFrame(
        {
            "sequence": np.empty(0, np.int64),
            "layer": np.empty(0, np.int64),
            "position": np.empty(0, np.int64),
            "token_id": np.empty(0, np.int64),
            "token": pd.Categorical([]),
            "norm": np.empty(0, np.float32),
            **{column: np.empty(0, np.float64) for column in ("log_norm", "lag1", "lag2")},
        }
    )
    encoded = Encoded(
        [], [], len(texts), skipped_empty=len(texts), max_length=options["max_length"]
    )
    frame.attrs.update(
        provenance(
            model, encoded, layers=layers, corpus={}, batch_size=options["batch_size"], seconds=0.0
        )
    )
    return frame


def write_shards(
    model: nn.Module,
    tokenizer: object,
    texts: object,
    out_dir: str | Path,
    *,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    shard_texts: int = 1024,
    rank: int | None = None,
    world_size: int | None = None,
    max_tokens: int | None = None,
    max_length: int | None = None,
    progress: bool | None = None,
) -> list[Path]:
    """Measure ``texts`` shard by shard into Parquet files under ``out_dir``; return this
    rank's shard paths (finished earlier or now).

    Shard ``k`` holds texts ``[k * shard_texts, (k + 1) * shard_texts)`` (``sequence`` is the
    corpus index) and is written by rank ``k % world_size``; ``rank`` and ``world_size``
    default to the ``RANK`` and ``WORLD_SIZE`` environment variables (torchrun, accelerate
    launch), else 0 and 1. Finished shards are skipped, so a rerun resumes; a folder written
    with other arguments (see ``run.json``) is refused. Other arguments as for
    ``attention_norms``.

    >>> write_shards(model, tokenizer, texts, "norms/")  # doctest: +SKIP
    """
    rank, world_size = _rank_and_size(rank, world_size)
    if shard_texts < 1:
        raise AttnmagError(f"shard_texts must be at least 1, not {shard_texts}")
    text_list, corpus = as_texts(texts)
    if not any(text.strip() for text in text_list):
        raise AttnmagError("the corpus is empty: there are no texts to measure")
    adapter_for(model)
    layers = sorted(set(range(len(blocks(model))) if layers is None else layers))
    max_length = max_length or context_length(model)
    folder = Path(out_dir)
    arguments = run_arguments(
        model, text_list, layers=layers, max_length=max_length, shard_texts=shard_texts
    )
    _claim_folder(folder, arguments, corpus)
    plan = shard_ranges(len(text_list), shard_texts, rank=rank, world_size=world_size)
    paths = [folder / shard_name(k) for k, _, _ in plan]
    with tqdm(
        total=sum(stop - start for _, start, stop in plan),
        unit="text",
        desc=f"attention norms (rank {rank})" if world_size > 1 else "attention norms",
        disable=None if progress is None else not progress,
    ) as bar:
        for (k, start, stop), path in zip(plan, paths, strict=True):
            if not path.is_file():
                began = time.perf_counter()
                frame = _measure_shard(
                    model,
                    tokenizer,
                    text_list[start:stop],
                    start=start,
                    layers=layers,
                    options={
                        "batch_size": batch_size,
                        "max_tokens": max_tokens,
                        "max_length": max_length,
                    },
                )
                frame.attrs.update(
                    **corpus_provenance(corpus),
                    shard=k,
                    shard_start=start,
                    shard_stop=stop,
                    rank=rank,
                    world_size=world_size,
                    seconds_extract=round(time.perf_counter() - began, 3),
                )
                _write_atomically(path, lambda partial, frame=frame: frame.to_parquet(partial))
            bar.update(stop - start)
    return paths


def _merged_provenance(attrs: list[dict]) -> dict:
    """One provenance from the shards': counts and seconds summed; other values kept where
    all shards agree, else listed (e.g. the devices of several ranks)."""
    merged = {key: sum(a.get(key, 0) for a in attrs) for key in COUNTS}
    merged["seconds_extract"] = round(sum(a.get("seconds_extract", 0.0) for a in attrs), 3)
    merged["n_shards"] = len(attrs)
    for key in attrs[0]:
        if key in merged or key in PER_SHARD:
            continue
        values = {json.dumps(a.get(key), sort_keys=True): a.get(key) for a in attrs}
        merged[key] = next(iter(values.values())) if len(values) == 1 else list(values.values())
    return merged


def read_shards(folder: str | Path, *, partial: bool = False) -> pd.DataFrame:
    """Read a folder written by ``write_shards`` as one tidy frame, in (sequence, layer,
    position) order, with ``tidy_frame``'s dtypes and the shards' provenance merged.

    A folder whose run is unfinished is refused unless ``partial`` is true.

    >>> frame = read_shards("norms/")  # doctest: +SKIP
    """
    folder = Path(folder)
    paths = sorted(folder.glob(SHARD_GLOB))
    run_file = folder / RUN_FILE
    if run_file.is_file() and not partial:
        arguments = _recorded_arguments(run_file)
        n_shards = -(-arguments["n_texts"] // arguments["shard_texts"])
        missing = sorted({shard_name(k) for k in range(n_shards)} - {p.name for p in paths})
        if missing:
            raise AttnmagError(
                f"{folder} is unfinished: {len(missing)} of {n_shards} shards are missing "
                f"(first {missing[0]}); rerun the same extraction to finish it"
            )
    if not paths:
        raise AttnmagError(f"{folder} holds no Parquet shards ({SHARD_GLOB})")
    shards = [pd.read_parquet(path) for path in paths]
    token_text: dict[int, str] = {}
    for path, shard in zip(paths, shards, strict=True):
        if list(shard.columns) != COLUMNS:
            raise AttnmagError(
                f"{path} is not an attnmag shard: its columns are {list(shard.columns)}"
            )
        ids, first = np.unique(shard["token_id"].to_numpy(), return_index=True)
        token_text.update(zip(ids.tolist(), shard["token"].iloc[first].astype(str), strict=True))
    # Shard k holds texts before shard k + 1's, each in (sequence, layer, position) order.
    frame = pd.concat([shard.drop(columns="token") for shard in shards], ignore_index=True)
    frame.insert(
        COLUMNS.index("token"),
        "token",
        _token_categorical(frame["token_id"].to_numpy(), token_text),
    )
    frame.attrs = _merged_provenance([shard.attrs for shard in shards])
    return frame
