"""Resumable, sharded extraction: Parquet shards of the tidy frame, written as the run goes.

Holds:
- ``write_shards``: texts -> a folder of Parquet shards (``shard-00000.parquet``, …), each
  holding whole sequences with their corpus ``sequence`` ids; a rerun with the same
  arguments skips the finished shards, one with other arguments is refused; under
  ``torchrun``/``accelerate launch`` each rank writes its own share of the shards; with
  ``sites=`` and ``heads=`` the shards hold ``update_norms``' frames (``site``/``head``);
- ``read_shards``: such a folder -> one tidy frame, provenance merged (counts summed);
- ``read_frame``: a saved frame (a Parquet file, or such a folder) -> the tidy frame;
- ``scan``, ``shard_rows``, ``frame_rows``: a folder's rows as a lazy DuckDB relation (its
  SQL) with the frame's columns;
- ``load_shards``: a folder's shards verified and copied into a DuckDB table, each shard's
  bytes read once;
- ``verified_shards``: the folder's shard files, checked against its manifest;
- ``shard_ranges``: which texts each shard holds, and which shards a rank writes;
- ``weights_fingerprint``: a streaming hash of every weight's bytes;
- ``write_frames``: tidy frames -> a finished shard folder in ``write_shards``' format (for
  simulated folders), its optional columns declared in the manifest (``declared_columns``);
- ``run_columns``: the frame's columns of a run, from its manifest's arguments.

A shard stores the frame's columns but those computed from ``norm`` and ``position``
(``log_norm``, ``lag1``, ``lag2``: ``frame.DERIVED``); every reader recomputes them
(``read_shards`` in numpy as ``tidy_frame`` does, ``shard_rows`` in SQL), to the same values.

The folder's ``run.json`` is a manifest. It records the shard format (``format``: a folder
of another format is refused with one line) and what defines the run (model, weights'
fingerprint, dtype, texts' hash, layers, maximum length, shard size, and the sites and
heads where they are measured; batch size, padding side and device only change speed, so
they may differ between a run and its resumption) and, per completed shard, its file name,
rows, sequence range and sha256. The folder is claimed by creating ``run.json``
exclusively; each shard is claimed (an ``fcntl`` lock) before it is measured, so identical
concurrent runs never measure one shard twice; a shard is recorded in the manifest, then
renamed into place, so it is complete or absent. Resuming verifies each existing shard's
checksum before skipping it, and reading verifies that the shards are exactly the
manifest's, each with its checksum; anything else is a one-line error naming the shard.

Usage::

    write_shards(model, tokenizer, texts, "norms/", batch_size=64)   # again to resume
    frame = read_shards("norms/")
    same = read_frame("norms/")
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow
import pyarrow.dataset
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from attnmag.errors import AttnmagError
from attnmag.extract.frame import (
    COLUMNS,
    DERIVED,
    GROUP_COLUMNS,
    SINK_COLUMNS,
    TOKEN_COLUMNS,
    TOKEN_DTYPES,
    derived_columns,
    frame_columns,
    tidy_frame,
    token_categorical,
)
from attnmag.extract.frame_file import read_frame_file
from attnmag.extract.keep import check_keep, kept_columns
from attnmag.extract.manifest import check_record, check_shard_metadata
from attnmag.outputs import folder_lock, mark
from attnmag.progress import progress_bar

# The measuring modules (``norms``, ``provenance``, ``sites``, ``tokens``...) import torch and
# transformers: the functions that measure import them, so that reading a folder needs neither.
if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "RUN_FILE",
    "declared_columns",
    "frame_rows",
    "load_shards",
    "read_columns",
    "read_frame",
    "read_shards",
    "run_columns",
    "scan",
    "shard_ranges",
    "shard_rows",
    "verified_shards",
    "weights_fingerprint",
    "write_frames",
    "write_shards",
]

RUN_FILE = "run.json"
SHARD_GLOB = "shard-*.parquet"
#: Rows ``load_shards`` appends before it compresses them (``CHECKPOINT``).
LOAD_ROWS = 2**19
#: The shard format ``run.json`` records: 3, shards store every frame column but
#: ``frame.DERIVED`` (``log_norm``, ``lag1``, ``lag2``), which readers recompute.
FORMAT = 3
# Provenance counts that add up over shards; every other key is kept where the shards agree.
COUNTS = ("n_texts", "n_sequences", "n_skipped_empty", "n_truncated", "n_tokens")
PER_SHARD = ("shard", "shard_start", "shard_stop", "rank", "world_size", "seconds_extract")


def shard_name(index: int) -> str:
    """The file name of shard ``index``.

    Parameters
    ----------
    index : int
        The shard's number.

    Returns
    -------
    str
        Its file name.

    Examples
    --------
    >>> shard_name(3)
    'shard-00003.parquet'
    """
    return f"shard-{index:05d}.parquet"


def shard_ranges(
    n_texts: int, shard_texts: int, *, rank: int = 0, world_size: int = 1
) -> list[tuple[int, int, int]]:
    """The shards rank ``rank`` of ``world_size`` writes, and the texts each holds.

    Shard ``k`` holds texts ``[k * shard_texts, (k + 1) * shard_texts)`` and goes to rank
    ``k % world_size``.

    Parameters
    ----------
    n_texts : int
        The texts in the corpus.
    shard_texts : int
        Texts per shard.
    rank, world_size : int
        This process's rank, and the number of processes.

    Returns
    -------
    list of tuple of int
        ``(shard, start, stop)`` per shard.

    Examples
    --------
    >>> shard_ranges(5, 2, rank=0, world_size=2)
    [(0, 0, 2), (2, 4, 5)]
    """
    starts = range(0, n_texts, shard_texts)
    return [
        (k, start, min(start + shard_texts, n_texts))
        for k, start in enumerate(starts)
        if k % world_size == rank
    ]


def _environment_int(name: str, default: int) -> int:
    """The integer in environment variable ``name`` (``default`` where it is unset)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise AttnmagError(
            f"the environment variable {name}={text!r} must be a whole number "
            "(as torchrun and accelerate launch set it)"
        ) from None


def rank_and_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank`` and ``world_size``, from ``RANK``/``WORLD_SIZE`` (torchrun, accelerate) when
    not given."""
    rank = _environment_int("RANK", 0) if rank is None else rank
    world_size = _environment_int("WORLD_SIZE", 1) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise AttnmagError(f"rank {rank} is not within a world of {world_size} processes")
    return rank, world_size


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter's name, shape, dtype and bytes, one tensor at a time.

    Each tensor is copied to the CPU alone, so memory stays at one tensor's size; the bytes
    are the same on every device, so the fingerprint is device-independent. Weights on the
    ``meta`` device (offloaded by ``device_map``) contribute their name and shape only.

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    str
        The first 16 hex digits of the sha256.

    Examples
    --------
    >>> fingerprint = weights_fingerprint(model)
    >>> len(fingerprint), fingerprint == weights_fingerprint(model)
    (16, True)
    """
    import torch

    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(f"{name}{tuple(parameter.shape)}{parameter.dtype}".encode())
        if parameter.device.type != "meta":
            flat = parameter.detach().reshape(-1).contiguous().cpu()
            digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()[:16]


def run_arguments(
    model: nn.Module,
    texts: Sequence[str],
    *,
    layers: list[int],
    max_length: int | None,
    shard_texts: int,
    sites: Sequence[str] | None = None,
    heads: bool = False,
    keep: Sequence[str] = (),
    token_columns: Sequence[str] = (),
    sink: bool = False,
) -> dict:
    """What defines a sharded run: a rerun must give the same to resume.

    Parameters
    ----------
    model : torch.nn.Module
        The model measured.
    texts : sequence of str
        The run's texts.
    layers : list of int
        The layers measured.
    max_length : int or None
        Tokens kept per text.
    shard_texts : int
        Texts per shard.
    sites : sequence of str, optional
        The sites measured (``update_norms``); None for the attention update alone.
    heads : bool
        Whether each head is measured too.
    keep, token_columns : sequence of str
        The corpus columns carried, and the token columns added.
    sink : bool
        Whether the sink columns are added.

    Returns
    -------
    dict
        The values of ``manifest.ARGUMENT_KEYS``, as ``run.json`` records them, and
        ``sites``, ``heads``, ``keep``, ``token_columns`` and ``sink`` where the run has them
        (so that a folder of a plain run stays resumable by a plain run).
    """
    from attnmag.extract.provenance import texts_fingerprint
    from attnmag.extract.quantisation import weights_provenance

    measured = {
        **({"sites": list(sites)} if sites is not None else {}),
        **({"heads": True} if heads else {}),
        **({"keep": list(keep)} if keep else {}),
        **({"token_columns": list(token_columns)} if token_columns else {}),
        **({"sink": True} if sink else {}),
    }
    return {
        "format": FORMAT,
        "model": model.config.name_or_path or "unnamed",
        "model_type": model.config.model_type,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "weights": weights_fingerprint(model),
        **weights_provenance(model),
        "n_texts": len(texts),
        "texts": texts_fingerprint(texts),
        "layers": layers,
        "max_length": max_length,
        "shard_texts": shard_texts,
        **measured,
    }


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _create_exclusively(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists (atomically: a complete file or
    none); return whether this call created it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text)
        os.link(partial, path)
    except FileExistsError:
        return False
    finally:
        partial.unlink(missing_ok=True)
    return True


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    str
        The hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    """``folder/run.json``, checked: the run's arguments (all of them) and its shards.

    Parameters
    ----------
    folder : Path
        A folder written by ``write_shards``.

    Returns
    -------
    dict
        ``arguments``, ``corpus``, ``run`` (the run id its shards carry) and ``shards`` (per
        finished shard: rows, sequence range, sha256). A missing or foreign manifest, or
        one that breaks ``manifest.SCHEMA``, is an ``AttnmagError``.

    Examples
    --------
    >>> entries = read_manifest(shards)["shards"]
    >>> sorted(entries)
    ['shard-00000.parquet', 'shard-00001.parquet']
    >>> sorted(entries["shard-00000.parquet"])
    [...'rows', 'sha256', 'start', 'stop'...]
    """
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise AttnmagError(
            f"{folder} has no {RUN_FILE}: it is not a shard folder written by attnmag "
            "(or its manifest was removed)"
        )
    try:
        record = json.loads(run_file.read_text())
    except (ValueError, OSError):
        raise AttnmagError(f"{run_file} is not a run record of write_shards") from None
    found = record.get("arguments", {}).get("format") if isinstance(record, dict) else None
    if isinstance(found, int) and found != FORMAT:
        raise AttnmagError(
            f"{run_file} was written by another attnmag version (format "
            f"{found}, this one reads {FORMAT}); extract again into a new folder"
        )
    return check_record(record, run_file)


@contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s own ``fcntl`` lock (waiting for it) while the manifest changes."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _record_shard(folder: Path, name: str, entry: dict, run: str) -> None:
    """Add shard ``name``'s entry to the manifest (atomically, one writer at a time), unless
    the folder's claim is no longer run ``run``'s."""
    with _manifest_lock(folder):
        record = read_manifest(folder)
        if record["run"] != run:
            raise AttnmagError(
                f"{folder} was claimed anew by a run with other arguments while this one "
                f"measured {name}; rerun to resume that run, or write to a new folder"
            )
        record["shards"] = {**record["shards"], name: entry}
        text = json.dumps(record, indent=1)
        _write_atomically(folder / RUN_FILE, lambda path: path.write_text(text))


def check_claimable(folder: Path, label: str | None = None) -> None:
    """Refuse a shard folder that holds files but no ``run.json`` (a claim cut short, which
    leaves only its ``.run.json.*.tmp``, is not refused).

    Parameters
    ----------
    folder : Path
        The shard folder asked for (present or not).
    label : str, optional
        How the messages name it (``--out norms``); the path by default.
    """
    label = label or str(folder)
    if not folder.is_dir() or (folder / RUN_FILE).exists():
        return
    foreign = any(not p.name.startswith(f".{RUN_FILE}.") for p in folder.iterdir())
    # Asked again after the listing: a run that claimed the folder meanwhile wrote its
    # run.json before any other file.
    if foreign and not (folder / RUN_FILE).exists():
        raise AttnmagError(
            f"{label} holds files but no {RUN_FILE}: it is not a shard folder of "
            "`attnmag extract`; choose a new folder"
        )


def _measuring(folder: Path) -> bool:
    """Whether another process holds a shard's claim in ``folder`` (is measuring it)."""
    for lock in folder.glob(".shard-*.parquet.lock"):
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
    return False


def _claim_folder(folder: Path, arguments: dict, corpus: dict) -> str:
    """Create ``folder/run.json`` recording ``arguments`` (exclusively), or check that the one
    there records the same; return the claim's run id.

    A claim with other arguments that finished no shard (a start that failed, or was killed)
    is taken over while nobody measures in the folder, so it never blocks its correction."""
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_FILE
    check_claimable(folder)
    record = {"arguments": arguments, "corpus": corpus, "run": uuid.uuid4().hex, "shards": {}}
    text = json.dumps(record, indent=1)
    if _create_exclusively(run_file, text):
        mark(folder, "shards")
        return record["run"]
    with _manifest_lock(folder):
        recorded = read_manifest(folder)
        old = recorded["arguments"]
        changed = [k for k in sorted({*old, *arguments}) if old.get(k) != arguments.get(k)]
        if not changed:
            return recorded["run"]
        unfinished = not recorded["shards"] and not list(folder.glob(SHARD_GLOB))
        if unfinished and not _measuring(folder):
            _write_atomically(run_file, lambda path: path.write_text(text))
            return record["run"]
    details = "; ".join(f"{k}: {old.get(k)!r} then, {arguments.get(k)!r} now" for k in changed)
    raise AttnmagError(
        f"{folder} holds shards of a run with other arguments ({details}); "
        "resume with the same ones, or write to a new folder"
    )


def _measure_shard(
    model: nn.Module,
    tokenizer: object,
    texts: object,
    *,
    start: int,
    layers: list[int],
    options: dict,
) -> pd.DataFrame:
    """The tidy frame of ``texts`` (a list of str, or a Dataset where columns are kept),
    whose first is corpus text ``start``; a chunk of blank texts gives a frame with no rows
    but every column (and its texts counted as skipped).

    ``options``: ``batch_size``, ``max_tokens``, ``max_length``, ``sites`` (None: the
    attention update alone, as ``attention_norms``), ``heads``, ``keep``, ``token_columns``,
    ``sink`` and ``counts`` (the corpus's token counts, for ``log_frequency``).
    """
    from attnmag.extract.batching import Encoded
    from attnmag.extract.norms import norms_frame
    from attnmag.extract.provenance import provenance
    from attnmag.extract.sites import n_heads, plan_rows

    sites, heads = options["sites"], options["heads"]
    keep, token_columns = options["keep"], options["token_columns"]
    text_list = texts["text"] if keep else texts
    if any(text.strip() for text in text_list):
        frame = norms_frame(
            model,
            tokenizer,
            texts,
            sites=sites or ("attn",),
            heads=heads,
            keep=keep,
            token_columns=token_columns,
            sink=options["sink"],
            site_column=sites is not None,
            batch_size=options["batch_size"],
            layers=layers,
            max_tokens=options["max_tokens"],
            max_length=options["max_length"],
            progress=False,
            counts=options["counts"],
        )
        frame["sequence"] += start
        return frame
    rows = plan_rows(layers, sites or ("attn",), heads, n_heads(model))
    groups: dict[str, object] = {}
    if sites is not None:
        groups["site"] = pd.Categorical([row[0] for row in rows], categories=list(sites))
    if heads:
        groups["head"] = [row[2] for row in rows]
    frame = tidy_frame(
        sequences=[],
        token_ids=[],
        norms=[],
        layers=[row[1] for row in rows],
        token_text={},
        groups=groups,
    )
    for name, values in kept_columns(texts, keep, frame["sequence"].to_numpy()).items():
        frame[name] = values
    for name in token_columns:
        frame[name] = np.empty(0, dtype=TOKEN_DTYPES[name])
    for name in SINK_COLUMNS if options["sink"] else ():
        frame[name] = np.empty(0, dtype=np.float32)
    encoded = Encoded(
        [], [], len(texts), skipped_empty=len(texts), max_length=options["max_length"]
    )
    frame.attrs.update(
        provenance(
            model,
            encoded,
            layers=layers,
            corpus={},
            batch_size=options["batch_size"],
            seconds=0.0,
            sites=list(sites or ("attn",)),
            heads=heads,
        )
    )
    return frame


@contextmanager
def _shard_claim(path: Path, *, wait: bool) -> Iterator[bool]:
    """Lock shard ``path`` against other writers for the block; yield whether it is held
    (with ``wait`` false, False at once when another process holds it)."""
    lock = path.with_name(f".{path.name}.lock")
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink()  # a killed writer's; nobody else writes this shard now
        yield True
        lock.unlink(missing_ok=True)  # who holds it next checks the manifest first


def _verify_shard(path: Path, entry: dict | None, record: dict) -> bool:
    """Whether shard ``path`` is complete: its file's sha256 is the manifest's and its own
    metadata matches its entry (``check_shard_metadata``). A file the manifest does not list,
    or one that differs, is an error naming it."""
    if entry is None:
        if path.exists() or path.is_symlink():
            raise AttnmagError(
                f"{path} is not in {RUN_FILE}: it was not written by this run; remove it"
            )
        return False
    if not path.exists():
        return False
    _check_plain_file(path)
    _check_shard(path, file_sha256(path), path, entry, record)
    return True


def _check_shard(path: Path, sha256: str, footer: object, entry: dict, record: dict) -> None:
    """Refuse shard ``path`` unless its ``sha256`` is its manifest entry's and its own
    metadata (the Parquet footer read from ``footer``, a path or a buffer) matches the entry
    (``check_shard_metadata``)."""
    if sha256 != entry["sha256"]:
        raise AttnmagError(_damaged(path))
    check_shard_metadata(path, _footer(footer, path), entry, record)


def _check_plain_file(path: Path) -> None:
    """Refuse a shard name that is not a plain file (a folder, a link)."""
    if path.is_symlink() or not path.is_file():
        raise AttnmagError(f"{path} is not a file: a shard is a Parquet file; remove it")


def _footer(source: object, path: Path) -> pq.FileMetaData:
    """The Parquet footer of ``source`` (a path or a buffer), or an error naming ``path``."""
    try:
        return pq.read_metadata(source)
    except (OSError, ValueError):
        raise AttnmagError(
            f"{path} is not a readable Parquet shard; remove it and rerun the extraction to "
            "measure it again"
        ) from None


def _damaged(path: Path) -> str:
    """The message for a shard whose checksum is not the manifest's."""
    return (
        f"{path} is damaged: its sha256 differs from the one {RUN_FILE} recorded; "
        "remove it and rerun the extraction to measure it again"
    )


def _store_shard(
    folder: Path,
    k: int,
    frame: pd.DataFrame,
    start: int,
    stop: int,
    run_id: str,
    row_group_size: int | None = None,
) -> Path:
    """Store ``frame`` as shard ``k`` (texts ``start``..``stop - 1``) of claim ``run_id``:
    without ``frame.DERIVED``, its run and range in its metadata, recorded in the manifest
    with its checksum, then renamed into place (so a shard is complete or absent)."""
    path = folder / shard_name(k)
    frame.attrs.update(run_id=run_id, shard=k, shard_start=start, shard_stop=stop)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    stored = frame.drop(columns=[c for c in DERIVED if c in frame.columns])
    stored.to_parquet(partial, row_group_size=row_group_size)
    entry = {"rows": len(frame), "start": start, "stop": stop, "sha256": file_sha256(partial)}
    _record_shard(folder, path.name, entry, run_id)
    os.replace(partial, path)
    return path


def run_columns(arguments: dict) -> list[str]:
    """The frame's columns, in order, of a run whose manifest records ``arguments``: the
    grouping columns of its ``sites`` and ``heads``, then its ``keep``, ``token_columns``
    and ``sink`` columns.

    Parameters
    ----------
    arguments : dict
        A manifest's ``arguments``.

    Returns
    -------
    list of str
        The columns, ``sequence`` first.

    Examples
    --------
    >>> run_columns({"heads": True, "keep": ["label"]})[-3:]
    ['lag1', 'lag2', 'label']
    """
    return [
        *frame_columns([g for g in ("site", "head") if f"{g}s" in arguments]),
        *arguments.get("keep", []),
        *arguments.get("token_columns", []),
        *(SINK_COLUMNS if arguments.get("sink") else ()),
    ]


def declared_columns(frame: pd.DataFrame) -> dict:
    """What a manifest records of ``frame``'s optional columns, as ``run_arguments`` does:
    ``sites`` and ``heads`` for its grouping columns, ``token_columns`` and ``sink`` for
    those of ``TOKEN_COLUMNS`` and ``SINK_COLUMNS``, and ``keep`` for any other column
    (corpus columns, in the frame's order).

    Parameters
    ----------
    frame : DataFrame
        A tidy frame.

    Returns
    -------
    dict
        The keys of ``run_arguments``' optional part that ``frame`` has.

    Raises
    ------
    AttnmagError
        Where ``frame`` has a ``model`` column (a folder holds one model's rows) or one
        sink column without the other.

    Examples
    --------
    >>> declared_columns(frame)
    {'keep': ['label']}
    """
    columns = list(frame.columns)
    if "model" in columns:
        raise AttnmagError("a shard folder holds one model's rows: write each model's apart")
    sink = [column for column in SINK_COLUMNS if column in columns]
    if sink and len(sink) < len(SINK_COLUMNS):
        raise AttnmagError(f"the sink columns come together: {', '.join(SINK_COLUMNS)}")
    sites = frame["site"].astype("category").cat.categories if "site" in columns else None
    known = {*COLUMNS, *GROUP_COLUMNS, *TOKEN_COLUMNS, *SINK_COLUMNS}
    keep = [column for column in columns if column not in known]
    token_columns = [column for column in TOKEN_COLUMNS if column in columns]
    return {
        **({"sites": [str(site) for site in sites]} if sites is not None else {}),
        **({"heads": True} if "head" in columns else {}),
        **({"keep": keep} if keep else {}),
        **({"token_columns": token_columns} if token_columns else {}),
        **({"sink": True} if sink else {}),
    }


def write_frames(
    frames: Iterable[pd.DataFrame],
    out_dir: str | Path,
    *,
    n_texts: int,
    shard_texts: int,
    layers: Sequence[int],
    row_group_size: int | None = None,
) -> list[Path]:
    """Write tidy frames as a finished shard folder, as ``write_shards`` stores its own:
    folders of simulated rows for the tests and benchmarks of the readers and fits.

    Parameters
    ----------
    frames : iterable of DataFrame
        The tidy frame of each shard in turn (``log_norm`` and the lags, where present, are
        not stored: readers compute them); frame ``k`` holds the texts of shard ``k`` in
        ``shard_ranges(n_texts, shard_texts)``. An iterator is written a frame at a time.
        The manifest declares the first frame's optional columns (``declared_columns``:
        ``site``, ``head``, token, sink and corpus columns), so that the readers give them
        back; every frame must have the same columns.
    out_dir : str or Path
        The folder (created; refused where it holds another run's shards).
    n_texts, shard_texts : int
        The texts in all, and per shard.
    layers : sequence of int
        The layers the manifest records.
    row_group_size : int, optional
        Rows per Parquet row group (pyarrow's default where None).

    Returns
    -------
    list of Path
        The shards, in order.

    Raises
    ------
    AttnmagError
        Where a frame's columns differ from the first frame's, ``declared_columns``
        refuses them, or the frames are not one per shard.

    Examples
    --------
    >>> layers = sorted(frame["layer"].unique())
    >>> paths = write_frames([frame], "norms/", n_texts=16, shard_texts=16, layers=layers)
    >>> stored = read_frame("norms/")
    >>> len(paths), stored.columns.equals(frame.columns), stored["label"].equals(frame["label"])
    (1, True, True)
    """
    folder = Path(out_dir)
    frames = iter(frames)
    first = next(frames, None)
    declared = declared_columns(first) if first is not None else {}
    columns = [column for column in run_columns(declared) if column not in DERIVED]
    arguments = {
        "format": FORMAT,
        "model": "simulated",
        "model_type": "simulated",
        "dtype": "float32",
        "weights": "0" * 16,  # a fingerprint's and a hash's form, as the schema asks
        "n_texts": n_texts,
        "texts": "0" * 64,
        "layers": [int(layer) for layer in layers],
        "max_length": None,
        "shard_texts": shard_texts,
        **declared,
    }
    plan = shard_ranges(n_texts, shard_texts)
    chained = [] if first is None else itertools.chain([first], frames)
    with folder_lock(folder, shared=True):
        run_id = _claim_folder(folder, arguments, {})
        paths = []
        for frame in chained:
            if len(paths) == len(plan):
                raise AttnmagError(f"more frames than the {len(plan)} shards of {n_texts} texts")
            k, start, stop = plan[len(paths)]
            if {*frame.columns} - {*DERIVED} != {*columns}:
                raise AttnmagError(
                    f"frame {k} has the columns {list(frame.columns)}, not the folder's {columns}"
                    " (log_norm and the lags aside)"
                )
            frame = frame[columns]
            frame.attrs.update(texts_sha256=arguments["texts"], weights=arguments["weights"])
            paths.append(_store_shard(folder, k, frame, start, stop, run_id, row_group_size))
    if len(paths) < len(plan):
        raise AttnmagError(f"{len(paths)} frames for the {len(plan)} shards of {n_texts} texts")
    return paths


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
    sites: Sequence[str] | str | None = None,
    heads: bool = False,
    keep: Sequence[str] = (),
    token_columns: Sequence[str] | str = (),
    sink: bool = False,
) -> list[Path]:
    """Measure ``texts`` shard by shard into Parquet files under ``out_dir``.

    Shard ``k`` holds texts ``[k * shard_texts, (k + 1) * shard_texts)`` (``sequence`` is the
    corpus index) and is written by rank ``k % world_size``. Finished shards are verified and
    skipped, so a rerun resumes; a folder written with other arguments (see ``run.json``) is
    refused. Every argument is checked before the folder is touched.

    Parameters
    ----------
    model, tokenizer, texts
        As for ``attention_norms``.
    out_dir : str or Path
        The shard folder (created if absent).
    batch_size, layers, max_tokens, max_length, progress
        As for ``attention_norms``.
    sites : sequence of str or str, optional
        Measure these sites, as ``update_norms`` does (a ``site`` column); None measures
        the attention update alone, as ``attention_norms`` does.
    heads : bool
        Each head's contribution as well (a ``head`` column).
    keep, token_columns, sink
        As for ``attention_norms``; ``log_frequency`` counts each token in all of
        ``texts``, not in one shard.
    shard_texts : int
        Texts per shard.
    rank, world_size : int, optional
        This process's rank and the number of processes; by default the ``RANK`` and
        ``WORLD_SIZE`` environment variables (torchrun, accelerate launch), else 0 and 1.

    Returns
    -------
    list of Path
        This rank's shard paths (finished earlier or now).

    Examples
    --------
    >>> paths = write_shards(model, tokenizer, texts, "norms/", shard_texts=8, progress=False)
    >>> [path.name for path in paths]
    ['shard-00000.parquet', 'shard-00001.parquet']
    >>> read_shards("norms/").shape == frame.drop(columns="label").shape
    True
    """
    from attnmag.extract.norms import check_count, check_tokenizer, encode, prepare_run
    from attnmag.extract.provenance import corpus_provenance
    from attnmag.extract.sites import check_sites
    from attnmag.extract.tokens import check_token_columns, token_counts

    rank, world_size = rank_and_size(rank, world_size)
    check_count("shard_texts", shard_texts)
    measured = check_sites("attn" if sites is None else sites, heads)
    sites = None if sites is None else measured
    run = prepare_run(
        model,
        texts,
        batch_size=batch_size,
        layers=layers,
        max_tokens=max_tokens,
        max_length=max_length,
    )
    check_tokenizer(tokenizer)
    text_list, corpus, layers = run.texts, run.corpus, run.layers
    keep = check_keep(texts, keep, [*COLUMNS, *GROUP_COLUMNS, *TOKEN_COLUMNS, *SINK_COLUMNS])
    token_columns = check_token_columns(token_columns)
    if not isinstance(sink, bool):
        raise AttnmagError(f"sink must be True or False, not {sink!r}")
    counts = None
    if "log_frequency" in token_columns:
        counts = token_counts(encode(tokenizer, text_list, max_length=run.max_length).token_ids)
    folder = Path(out_dir)
    arguments = run_arguments(
        model,
        text_list,
        layers=layers,
        max_length=run.max_length,
        shard_texts=shard_texts,
        sites=sites,
        heads=heads,
        keep=keep,
        token_columns=token_columns,
        sink=sink,
    )
    plan = shard_ranges(len(text_list), shard_texts, rank=rank, world_size=world_size)
    options = {
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "max_length": run.max_length,
        "sites": sites,
        "heads": heads,
        "keep": keep,
        "token_columns": token_columns,
        "sink": sink,
        "counts": counts,
    }

    def complete(k: int, start: int, stop: int, *, wait: bool) -> bool:
        """Shard ``k`` verified or measured now; False where another process holds it."""
        path = folder / shard_name(k)
        with _shard_claim(path, wait=wait) as held:
            if not held:
                return False
            record = read_manifest(folder)
            if _verify_shard(path, record["shards"].get(path.name), record):
                return True
            began = time.perf_counter()
            chunk = texts.select(range(start, stop)) if keep else text_list[start:stop]
            frame = _measure_shard(
                model, tokenizer, chunk, start=start, layers=layers, options=options
            )
            frame.attrs.update(
                **corpus_provenance(corpus),
                texts_sha256=arguments["texts"],  # the run's texts, which the folder holds
                weights=arguments["weights"],
                rank=rank,
                world_size=world_size,
                seconds_extract=round(time.perf_counter() - began, 3),
            )
            _store_shard(folder, k, frame, start, stop, run_id)
            return True

    with (
        folder_lock(folder, shared=True),
        progress_bar(
            progress,
            total=sum(stop - start for _, start, stop in plan),
            unit="text",
            desc=f"attention norms (rank {rank})" if world_size > 1 else "attention norms",
        ) as bar,
    ):
        run_id = _claim_folder(folder, arguments, corpus)
        _check_listing(folder, read_manifest(folder))
        waiting = []
        for k, start, stop in plan:
            if complete(k, start, stop, wait=False):
                bar.update(stop - start)
            else:
                waiting.append((k, start, stop))
        for k, start, stop in waiting:  # shards another process was measuring
            complete(k, start, stop, wait=True)
            bar.update(stop - start)
    return [folder / shard_name(k) for k, _, _ in plan]


def merged_provenance(attrs: list[dict]) -> dict:
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


def _check_listing(folder: Path, record: dict) -> list[str]:
    """The run's shard names; a shard file the manifest does not list (a shard of another
    run, an extra or renamed file) is an error naming it."""
    arguments, shards = record["arguments"], record["shards"]
    n_shards = -(-arguments["n_texts"] // arguments["shard_texts"])
    on_disk = {p.name for p in folder.glob(SHARD_GLOB)}
    for name in sorted(on_disk - set(shards)):
        raise AttnmagError(
            f"{folder / name} is not in this run's {RUN_FILE} (a shard of another run, or "
            "an extra file); remove it"
        )
    return [shard_name(k) for k in range(n_shards)]


def _listed_shards(folder: Path, *, partial: bool) -> tuple[list[Path], dict]:
    """The shard files of ``folder`` in order, and the checked manifest, once the set of
    files is checked against the manifest (not yet their checksums)."""
    if not folder.is_dir():
        raise AttnmagError(f"no shard folder at {folder}")
    record = read_manifest(folder)
    expected = _check_listing(folder, record)
    on_disk = {p.name for p in folder.glob(SHARD_GLOB)}
    missing = [name for name in expected if name not in on_disk]
    if missing and not partial:
        raise AttnmagError(
            f"{folder} is unfinished: {len(missing)} of {len(expected)} shards are missing "
            f"(first {missing[0]}); rerun the same extraction to finish it"
        )
    paths = [folder / name for name in expected if name in on_disk]
    if not paths:
        raise AttnmagError(f"{folder} holds no Parquet shards ({SHARD_GLOB})")
    for path in paths:
        _check_plain_file(path)
    return paths, record


def verified_shards(folder: str | Path, *, partial: bool = False) -> list[Path]:
    """The shard files of ``folder``, checked against its manifest (``run.json``).

    Parameters
    ----------
    folder : str or Path
        A folder written by ``write_shards``.
    partial : bool
        Accept an unfinished run (the shards written so far).

    Returns
    -------
    list of Path
        The shards, in order. Raises ``AttnmagError`` naming the shard when a file is not in
        the manifest, a recorded shard is missing (unless ``partial``) or a checksum differs.

    Examples
    --------
    >>> [path.name for path in verified_shards(shards)]
    ['shard-00000.parquet', 'shard-00001.parquet']
    """
    paths, record = _listed_shards(Path(folder), partial=partial)
    for path in paths:
        _verify_shard(path, record["shards"][path.name], record)
    return paths


def scan(folder: str | Path) -> duckdb.DuckDBPyRelation:
    """A finished shard folder as one lazy DuckDB relation, for queries that need not load it.

    The shards are checked against the manifest first (as ``read_shards`` does); the
    relation has the frame's columns (``shard_rows``: ``log_norm`` and the lags computed as
    they are read) and runs filters, column selections and aggregations in bounded memory
    (``.filter(...)``, ``.select(...)``, ``.arrow()``, ``.df()``, or SQL on it with
    ``duckdb.sql("... FROM relation")``).

    Parameters
    ----------
    folder : str or Path
        A folder written by ``write_shards``, complete.

    Returns
    -------
    duckdb.DuckDBPyRelation
        The folder's rows (on a connection of its own).

    Examples
    --------
    >>> rows = scan(shards)
    >>> layer2 = rows.filter("layer = 2").select("sequence, log_norm").df()
    >>> layer2.columns.tolist(), layer2["sequence"].nunique()
    (['sequence', 'log_norm'], 8)
    """
    paths = verified_shards(folder)
    return shard_rows(duckdb.connect(), paths)


def shard_rows(
    connection: duckdb.DuckDBPyConnection, paths: Sequence[str | Path]
) -> duckdb.DuckDBPyRelation:
    """The rows of verified shard files as one DuckDB relation with the frame's columns
    (``frame_rows`` of the files' rows).

    Parameters
    ----------
    connection : duckdb.DuckDBPyConnection
        The connection the relation runs on.
    paths : sequence of str or Path
        Shard files (``verified_shards``).

    Returns
    -------
    duckdb.DuckDBPyRelation
        The rows, with the frame's columns in its order.

    Examples
    --------
    >>> import duckdb
    >>> rows = shard_rows(duckdb.connect(), verified_shards(shards))
    >>> rows.columns == read_shards(shards).columns.tolist()
    True
    """
    files = ", ".join("'" + str(path).replace("'", "''") + "'" for path in paths)
    stored = f"read_parquet([{files}])"
    return connection.sql(frame_rows(connection.sql(f"FROM {stored}").columns, stored))


def frame_rows(stored: Sequence[str], rows: str) -> str:
    """The SQL of a shard's rows with the frame's columns, from the SQL relation ``rows``
    whose columns are ``stored`` and whose rows are in the shards' order.

    Every reader of a folder's rows in SQL (the folder fits, the folder report, ``scan``)
    takes them from here, so the shards' stored columns and the frame's columns are mapped
    in one place: ``log_norm`` is ``ln(norm)`` in DOUBLE rounded to FLOAT, and ``lag1`` and
    ``lag2`` are it one and two rows earlier, NULL at positions before 1 and 2 (a NaN in the
    frame), as ``frame.derived_columns`` computes them. A shard holds each series' rows by
    position, one series after another, so the lags are taken over the rows in that order
    (``OVER ()``, which DuckDB streams in its input's order) rather than over partitions,
    which DuckDB would hold in memory, every row at once.

    Examples
    --------
    >>> sql = frame_rows(["sequence", "position", "norm"], "t")
    >>> sql.split(" FROM ")[-1], sql.count(" OVER ()")
    ('t', 2)
    """
    log_norm = "CAST(ln(CAST(norm AS DOUBLE)) AS FLOAT)"
    derived = {
        "log_norm": f"{log_norm} AS log_norm",
        **{
            f"lag{k}": f'CASE WHEN "position" >= {k} THEN lag({log_norm}, {k}) OVER () END'
            f" AS lag{k}"
            for k in (1, 2)
        },
    }
    select = [derived.get(c, _quoted([c])) for c in read_columns(stored)]
    return f"SELECT {', '.join(select)} FROM {rows}"


def load_shards(
    connection: duckdb.DuckDBPyConnection, folder: str | Path, table: str
) -> list[Path]:
    """Verify a finished folder's shards and copy their stored columns into the new DuckDB
    table ``table``, reading each shard's bytes once.

    Each shard's bytes are checked as ``verified_shards`` checks them, then decoded from
    memory ``LOAD_ROWS`` rows at a time (categoricals as their values, as DuckDB's Parquet
    reader gives them) and appended after the shard's number (``shard``, from 0), in order;
    ``CHECKPOINT`` follows each append, so that a compressed database
    (``attnmag.database.STORE``) holds ``LOAD_ROWS`` rows uncompressed at most, whatever
    the shards' size.

    Parameters
    ----------
    connection : duckdb.DuckDBPyConnection
        Where the table is created.
    folder : str or Path
        A folder written by ``write_shards``, complete.
    table : str
        The new table's name (``database.name``).

    Returns
    -------
    list of Path
        The shards, in order (the ``shard`` numbers).

    Examples
    --------
    >>> import duckdb
    >>> connection = duckdb.connect()
    >>> len(load_shards(connection, shards, "rows"))
    2
    >>> connection.sql("SELECT count(*) FROM rows").fetchall() == [(len(read_shards(shards)),)]
    True
    """
    paths, record = _listed_shards(Path(folder), partial=False)
    checkpoint = f"CHECKPOINT {table.split('.')[0]}" if "." in table else "CHECKPOINT"
    for k, path in enumerate(paths):
        parquet = pq.ParquetFile(pyarrow.BufferReader(_verified_bytes(path, record)))
        plain = pyarrow.schema(
            [f.with_type(getattr(f.type, "value_type", f.type)) for f in parquet.schema_arrow]
        )
        rows = f"SELECT {k}::INTEGER AS shard, * FROM shard_batch"
        connection.register("shard_batch", plain.empty_table())
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {rows}")
        for batch in parquet.iter_batches(batch_size=LOAD_ROWS):
            connection.register("shard_batch", batch.cast(plain))
            connection.execute(f"INSERT INTO {table} BY NAME {rows}")
            connection.execute(checkpoint)
        connection.unregister("shard_batch")
    return paths


def read_columns(stored: Sequence[str]) -> list[str]:
    """The columns a reader gives for shards that store ``stored``: those, with the
    ``frame.DERIVED`` columns computed from ``norm`` placed after it.

    Parameters
    ----------
    stored : sequence of str
        A shard's columns.

    Returns
    -------
    list of str
        The columns, in the frame's order.

    Examples
    --------
    >>> read_columns(["sequence", "layer", "position", "norm", "label"])[3:]
    ['norm', 'log_norm', 'lag1', 'lag2', 'label']
    """
    stored = list(stored)
    if "norm" not in stored:
        return stored
    after = stored.index("norm") + 1
    added = [column for column in DERIVED if column not in stored]
    return [*stored[:after], *added, *stored[after:]]


def _quoted(columns: Sequence[str]) -> str:
    """Column names as a SQL list."""
    return ", ".join(f'"{column}"' for column in columns)


def _verified_bytes(path: Path, record: dict) -> bytes:
    """Shard ``path``'s bytes, read once, their sha256 and the shard's own metadata checked
    against its manifest entry (``check_shard_metadata``)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _check_shard(path, digest, pyarrow.BufferReader(data), record["shards"][path.name], record)
    return data


def _read_shard(path: Path, record: dict, columns: list[str]) -> pd.DataFrame:
    """One shard, read from the bytes its checksum was verified on, and checked against
    the manifest's entry (``check_shard_metadata``; sequence range) and the run's
    ``columns``."""
    entry = record["shards"][path.name]
    shard = pd.read_parquet(io.BytesIO(_verified_bytes(path, record)))
    if list(shard.columns) != columns:
        raise AttnmagError(f"{path} is not an attnmag shard: its columns are {list(shard.columns)}")
    sequences = shard["sequence"].to_numpy()
    outside = len(sequences) and (
        sequences.min() < entry["start"] or sequences.max() >= entry["stop"]
    )
    if len(shard) != entry["rows"] or outside:
        raise AttnmagError(f"{path} does not hold the rows {RUN_FILE} recorded for it")
    return shard


def read_shards(folder: str | Path, *, partial: bool = False) -> pd.DataFrame:
    """Read a folder written by ``write_shards`` as one tidy frame.

    The shards must be exactly those of the manifest, each with its recorded checksum (see
    ``verified_shards``).

    Parameters
    ----------
    folder : str or Path
        A folder written by ``write_shards``.
    partial : bool
        Accept an unfinished run (the shards written so far); otherwise it is refused.

    Returns
    -------
    pandas.DataFrame
        The frame in (sequence, layer, position) order, with ``tidy_frame``'s dtypes and the
        shards' provenance merged (counts and seconds summed).

    Examples
    --------
    >>> stored = read_shards(shards)
    >>> sorted(stored["layer"].unique().tolist()), stored["sequence"].nunique()
    ([0, 1, 2], 8)
    """
    paths, record = _listed_shards(Path(folder), partial=partial)
    arguments = record["arguments"]
    columns = run_columns(arguments)
    stored = [column for column in columns if column not in DERIVED]
    shards = [_read_shard(path, record, stored) for path in paths]
    for name in arguments.get("keep", []):  # a kept category: the categories of all shards
        if all(isinstance(shard[name].dtype, pd.CategoricalDtype) for shard in shards):
            categories = union_categoricals([shard[name] for shard in shards]).categories
            for shard in shards:
                shard[name] = shard[name].cat.set_categories(categories)
    token_text: dict[int, str] = {}
    for shard in shards:
        ids, first = np.unique(shard["token_id"].to_numpy(), return_index=True)
        token_text.update(zip(ids.tolist(), shard["token"].iloc[first].astype(str), strict=True))
    # Shard k holds texts before shard k + 1's, each in (sequence, layer, position) order.
    frame = pd.concat([shard.drop(columns="token") for shard in shards], ignore_index=True)
    frame.insert(
        columns.index("token"),
        "token",
        token_categorical(frame["token_id"].to_numpy(), token_text),
    )
    if "sites" in arguments:  # an empty shard's Parquet keeps no categories
        frame["site"] = pd.Categorical(frame["site"].astype(str), categories=arguments["sites"])
    derived = derived_columns(frame["norm"].to_numpy(), frame["position"].to_numpy())
    frame = pd.DataFrame({c: derived[c] if c in derived else frame[c] for c in columns}, copy=False)
    frame.attrs = merged_provenance([shard.attrs for shard in shards])
    return frame


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a saved frame back, with its provenance in ``attrs``.

    Parameters
    ----------
    path : str or Path
        A Parquet file written with ``frame.to_parquet(path)``, or a folder of shards
        written by ``write_shards`` (``attnmag extract --out DIR``), read as ``read_shards``
        reads it.

    Returns
    -------
    pandas.DataFrame
        The tidy frame. A missing path, or a file that ``read_frame_file`` refuses (not
        Parquet, damaged, lacking the frame's columns or their types), is an
        ``AttnmagError``.

    Examples
    --------
    >>> frame.to_parquet("norms.parquet")
    >>> read_frame("norms.parquet").equals(frame)
    True
    >>> read_frame(shards).shape == read_shards(shards).shape
    True
    """
    path = Path(path)
    if not path.exists():
        raise AttnmagError(f"no frame at {path}: expected a Parquet file or a folder of shards")
    if path.is_dir():
        return read_shards(path)
    return read_frame_file(path)
