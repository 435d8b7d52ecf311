"""The checks of a shard folder's manifest (``run.json``) and of each shard against it.

Holds:
- ``SCHEMA``: the JSON Schema of ``run.json``;
- ``check_record``: a parsed ``run.json`` checked against ``SCHEMA`` and against itself
  (each shard's name and sequence range follow from the run's size and shard size), every
  violation one line of one ``AttnmagError``;
- ``check_shard_metadata``: a shard's own Parquet metadata (rows; run id, weights'
  fingerprint, texts' hash and sequence range in its provenance) against its entry.

Every reader of a folder (``fit``, ``report``, a resumed ``extract``, ``read_frame``) goes
through both, so a folder one of them accepts, the others accept too.

Usage::

    record = check_record(json.loads(run_file.read_text()), run_file)
    check_shard_metadata(path, pyarrow.parquet.read_metadata(path), entry, record)
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq

from attnmag.errors import AttnmagError

__all__ = ["ARGUMENT_KEYS", "SCHEMA", "check_record", "check_shard_metadata"]

#: What defines a sharded run: a rerun must give the same to resume.
ARGUMENT_KEYS = (
    "format",
    "model",
    "model_type",
    "dtype",
    "weights",
    "n_texts",
    "texts",
    "layers",
    "max_length",
    "shard_texts",
)
HEX16, HEX32, HEX64 = (f"^[0-9a-f]{{{n}}}$" for n in (16, 32, 64))
COUNT = {"type": "integer", "minimum": 1}
INDEX = {"type": "integer", "minimum": 0}
SCHEMA = {
    "type": "object",
    "required": ["arguments", "corpus", "run", "shards"],
    "properties": {
        "format": {"type": "integer"},
        "run": {"type": "string", "pattern": HEX32},
        "corpus": {"type": "object"},
        "arguments": {
            "type": "object",
            "required": list(ARGUMENT_KEYS),
            "properties": {
                "format": {"type": "integer"},
                "model": {"type": "string"},
                "model_type": {"type": "string"},
                "dtype": {"type": "string"},
                "weights": {"type": "string", "pattern": HEX16},
                "n_texts": COUNT,
                "texts": {"type": "string", "pattern": HEX64},
                "layers": {"type": "array", "items": INDEX, "minItems": 1, "uniqueItems": True},
                "max_length": {"oneOf": [COUNT, {"type": "null"}]},
                "shard_texts": COUNT,
                "sites": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "heads": {"const": True},
                "keep": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "token_columns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "sink": {"const": True},
            },
        },
        "shards": {
            "type": "object",
            "propertyNames": {"pattern": r"^shard-[0-9]{5}\.parquet$"},
            "additionalProperties": {
                "type": "object",
                "required": ["rows", "start", "stop", "sha256"],
                "properties": {
                    "rows": INDEX,
                    "start": INDEX,
                    "stop": COUNT,
                    "sha256": {"type": "string", "pattern": HEX64},
                },
            },
        },
    },
}
FIX = "restore the run.json write_shards wrote, or extract again into a new folder"


def _where(path: object) -> str:
    """A JSON path (``shards/shard-00000.parquet/rows``) as the messages name it."""
    parts = list(path)
    return ".".join(str(part) for part in parts) if parts else "the record"


def check_record(record: object, run_file: Path) -> dict:
    """Check a parsed ``run.json`` against ``SCHEMA`` and its own arithmetic.

    Parameters
    ----------
    record : object
        The parsed JSON.
    run_file : Path
        Its path, for the messages.

    Returns
    -------
    dict
        ``record``, unchanged. Anything wrong is one ``AttnmagError`` with one line per
        violation, each naming the file, the key and what is allowed.

    Examples
    --------
    >>> check_record({"arguments": {}}, Path("run.json"))  # doctest: +SKIP
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: run.json: the record: 'corpus' is a required property; …
    """
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(record), key=lambda e: [str(p) for p in e.path])
    lines = [f"{_where(error.path)}: {error.message}" for error in errors]
    if not lines:
        lines = _range_violations(record["arguments"], record["shards"])
    if lines:
        raise AttnmagError("\n".join(f"{run_file}: {line} ({FIX})" for line in lines))
    return record


def _range_violations(arguments: dict, shards: dict) -> list[str]:
    """Each shard's name and sequence range, as the run's size and shard size set them."""
    n_texts, size = arguments["n_texts"], arguments["shard_texts"]
    lines = []
    for name, entry in sorted(shards.items()):
        k = int(name.removeprefix("shard-").removesuffix(".parquet"))
        start, stop = k * size, min((k + 1) * size, n_texts)
        if start >= n_texts:
            lines.append(f"shards.{name}: the run's {n_texts} texts make no such shard")
        elif (entry["start"], entry["stop"]) != (start, stop):
            lines.append(
                f"shards.{name}: start {entry['start']} and stop {entry['stop']} are not "
                f"the shard's {start} and {stop}"
            )
    return lines


def check_shard_metadata(path: Path, metadata: pq.FileMetaData, entry: dict, record: dict) -> None:
    """Check shard ``path``'s own Parquet metadata against its ``run.json`` entry.

    Parameters
    ----------
    path : Path
        The shard, for the messages.
    metadata : pyarrow.parquet.FileMetaData
        Its footer (read from the bytes whose checksum was verified).
    entry : dict
        Its entry in the manifest (rows, start, stop).
    record : dict
        The whole checked manifest (its run id and arguments).

    Returns
    -------
    None
        Raises ``AttnmagError``, one line naming every value that differs.
    """
    try:
        attrs = json.loads((metadata.metadata or {}).get(b"PANDAS_ATTRS", b"{}"))
    except ValueError:
        attrs = {}
    expected = {
        "rows": (metadata.num_rows, entry["rows"]),
        "run id": (attrs.get("run_id"), record["run"]),
        "weights": (attrs.get("weights"), record["arguments"]["weights"]),
        "texts": (attrs.get("texts_sha256"), record["arguments"]["texts"]),
        "start": (attrs.get("shard_start"), entry["start"]),
        "stop": (attrs.get("shard_stop"), entry["stop"]),
    }
    differing = [
        f"its {key} {mine!r}, not {recorded!r}"
        for key, (mine, recorded) in expected.items()
        if mine != recorded
    ]
    if differing:
        raise AttnmagError(
            f"{path} is not the shard run.json records for it ({'; '.join(differing)}): a "
            "shard of another run, or an edited run.json; remove it and rerun the extraction"
        )
