"""attnmag's model cache: each GGUF file converted once into a safetensors folder.

An entry is named for the GGUF's content (its sha256), so every copy of one file (each
clone's virtual environment, each process) shares one conversion; a lock held while an entry
is checked and built makes a second process wait for the first one's conversion rather than
repeat it. An entry is complete once it holds ``COMPLETE``, the file attnmag writes last,
which also marks the folders ``clear`` may delete: nothing else is ever removed.

Holds:
- ``cache_dir``: attnmag's cache folder (``$XDG_CACHE_HOME/attnmag`` or the platform's);
- ``COMPLETE``: the marker file of a complete entry;
- ``entry``: a GGUF file's entry folder (``models/<stem>-<sha256 prefix>``);
- ``building``: the lock on an entry, held while it is checked and converted;
- ``Entry``, ``entries``: the complete entries, with their source and size;
- ``clear``: deletes the entries (and their locks); returns them.

Usage::

    folder = entry(Path("model.gguf"))
    with building(folder):
        if not (folder / COMPLETE).is_file():
            ...  # convert into folder
    for item in entries():
        print(item.folder, item.size)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from platformdirs import user_cache_dir

__all__ = ["COMPLETE", "Entry", "building", "cache_dir", "clear", "entries", "entry"]

COMPLETE = "attnmag-complete.json"
MODELS = "models"
LOCK_SUFFIX = ".lock"


def cache_dir() -> Path:
    """attnmag's cache folder (``$XDG_CACHE_HOME/attnmag`` or the platform's equivalent).

    Returns
    -------
    Path
        The folder (not created here).

    Examples
    --------
    >>> cache_dir().name
    'attnmag'
    """
    return Path(user_cache_dir("attnmag"))


def entry(gguf: Path, root: Path | None = None) -> Path:
    """The cache folder of ``gguf``'s conversion, named for the file's content.

    Parameters
    ----------
    gguf : Path
        A ``.gguf`` file.
    root : Path, optional
        The cache folder (default: ``cache_dir()``).

    Returns
    -------
    Path
        ``root/models/<stem>-<first 16 hex digits of the sha256>`` (not created here).

    Examples
    --------
    >>> _ = Path("tiny.gguf").write_bytes(b"GGUF")
    >>> entry(Path("tiny.gguf"), root=Path("cache"))
    PosixPath('cache/models/tiny-...')
    """
    with gguf.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return (root or cache_dir()) / MODELS / f"{gguf.stem}-{digest[:16]}"


@contextmanager
def building(folder: Path) -> Iterator[None]:
    """Hold the lock of the entry ``folder`` (a file beside it) for the block, waiting for
    any other process that holds it.

    Parameters
    ----------
    folder : Path
        An entry folder (need not exist).

    Returns
    -------
    context manager
        The lock, held for the block.

    Examples
    --------
    >>> with building(Path("cache/models/tiny-0123")):
    ...     sorted(path.name for path in Path("cache/models").iterdir())
    ['tiny-0123.lock']
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_name(folder.name + LOCK_SUFFIX)):
        yield


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: its folder, the GGUF it was converted from, its size in bytes.

    Examples
    --------
    >>> marker = Path("cache") / MODELS / "0123abcd" / COMPLETE
    >>> marker.parent.mkdir(parents=True)
    >>> _ = marker.write_text('{"gguf": "model.gguf"}')
    >>> [(entry.folder.name, entry.source, entry.size) for entry in entries(Path("cache"))]
    [('0123abcd', 'model.gguf', 22)]
    """

    folder: Path
    source: str
    size: int


def entries(root: Path | None = None) -> list[Entry]:
    """The complete entries attnmag wrote, by name.

    Parameters
    ----------
    root : Path, optional
        The cache folder (default: ``cache_dir()``).

    Returns
    -------
    list of Entry
        One per folder holding ``COMPLETE``.

    Examples
    --------
    >>> entries(Path("an-empty-cache"))
    []
    """
    models = (root or cache_dir()) / MODELS
    found = []
    for marker in sorted(models.glob(f"*/{COMPLETE}")):
        try:
            source = str(json.loads(marker.read_text()).get("gguf", ""))
        except (ValueError, AttributeError):
            source = ""
        size = sum(p.stat().st_size for p in marker.parent.rglob("*") if p.is_file())
        found.append(Entry(marker.parent, source, size))
    return found


def clear(root: Path | None = None) -> list[Entry]:
    """Delete the complete entries attnmag wrote, and their lock files; nothing else.

    Each entry is deleted under its lock, so a process building it finishes first.

    Parameters
    ----------
    root : Path, optional
        The cache folder (default: ``cache_dir()``).

    Returns
    -------
    list of Entry
        The entries deleted.

    Examples
    --------
    >>> clear(Path("an-empty-cache"))
    []
    """
    removed = entries(root)
    for item in removed:
        lock = item.folder.with_name(item.folder.name + LOCK_SUFFIX)
        with building(item.folder):
            shutil.rmtree(item.folder)
        lock.unlink(missing_ok=True)
    return removed
