"""Output folders that never lose or mix data: markers, locks, refusals and atomic replacement.

Holds:
- ``MARKER``, ``mark``, ``read_marker`` and ``unknown_files``: the file that lists, under a
  random run id, every file attnmag wrote into a folder with its size and sha256, and the
  check of a folder against it;
- ``check_target``: the refusals, before any work, of an ``--out`` that is a file, is not
  writable, is the current folder or one of its ancestors, or is or contains an input;
- ``check_output``: those, and an ``--out`` that exists without ``force`` or (even with
  ``force``) holds anything its marker does not vouch for (all of it, without a marker);
- ``folder_lock``: an ``fcntl`` lock on a folder's name, held for a whole run (shared by
  cooperating writers of one shard folder, exclusive otherwise);
- ``replacing``: a context manager that builds an output in a ``.NAME.partial-RUN`` folder
  beside it and, once the block succeeds, swaps it in by two renames (old ->
  ``.NAME.trash-OLDRUN``, new -> final) before deleting the old one's listed files (renamed
  once more, to ``.NAME.deleting-OLDRUN``, first);
- ``clean_leftovers``: restores an old output a crash left under its trash name, and removes
  the trash, deleting and partial folders of earlier runs: only those whose marker holds the
  run id their name carries, and of trash and deleting folders only the listed files.

At every instant the final name holds the old output or the new one complete, or (for the
microseconds between the two renames, where SIGINT is held back) nothing, with the old one
whole under its trash name; the next run on that name moves it back.

Usage::

    check_output(Path("out"), force=True, inputs=[Path("reviews.csv")])
    with replacing(Path("out"), force=True, kind="run") as folder:
        (folder / "table.csv").write_text("...")
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from attnmag.errors import AttnmagError

__all__ = [
    "MARKER",
    "check_output",
    "check_target",
    "clean_leftovers",
    "file_record",
    "folder_lock",
    "mark",
    "read_marker",
    "replacing",
    "unknown_files",
]

MARKER = ".attnmag-output.json"
PARTIAL = "partial"
TRASH = "trash"
DELETING = "deleting"
RUN_ID = re.compile(r"[0-9a-f]{32}")
SHOWN = 5  # unknown files named in a refusal


def file_record(path: Path) -> dict:
    """A file's size and sha256 (read in blocks), as a marker lists them.

    Parameters
    ----------
    path : Path
        A file.

    Returns
    -------
    dict
        ``size`` (bytes) and ``sha256`` (hex digest).

    Examples
    --------
    >>> _ = Path("t.csv").write_text("a,b")
    >>> file_record(Path("t.csv"))
    {'size': 3, 'sha256': '...'}
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _entries(folder: Path) -> Iterator[tuple[str, Path, bool]]:
    """Every entry under ``folder`` but the marker, as (relative path, path, is a plain
    file); symbolic links are entries, never followed."""
    for root, folders, files in os.walk(folder):
        for name in sorted(folders + files):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if relative != MARKER:
                plain = name in files and path.is_file() and not path.is_symlink()
                yield relative, path, plain


def mark(folder: Path, kind: str, *, run: str | None = None) -> str:
    """Write the marker that says attnmag wrote ``folder``, listing every file in it now.

    Parameters
    ----------
    folder : Path
        An existing folder attnmag wrote.
    kind : str
        What it holds: ``run``, ``tables``, ``report``, ``shards`` or ``empty``.
    run : str, optional
        The run id (32 hex digits) the marker records; a new random one by default.

    Returns
    -------
    str
        The run id.

    Examples
    --------
    >>> Path("tables").mkdir()
    >>> _ = Path("tables/t.csv").write_text("a,b")
    >>> len(mark(Path("tables"), "tables"))
    32
    >>> sorted(read_marker(Path("tables"))["files"])
    ['t.csv']
    """
    run = run or uuid.uuid4().hex
    files = {rel: file_record(path) for rel, path, plain in _entries(folder) if plain}
    record = {"attnmag": kind, "run": run, "files": files}
    (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return run


def read_marker(folder: Path) -> dict | None:
    """``folder``'s marker where it is one attnmag writes (a run id, a file list), else None.

    Parameters
    ----------
    folder : Path
        Any path.

    Returns
    -------
    dict or None
        ``attnmag`` (the kind), ``run`` (the run id) and ``files`` (relative path -> size and
        sha256).

    Examples
    --------
    >>> Path("tables").mkdir()
    >>> read_marker(Path("tables")) is None
    True
    >>> run = mark(Path("tables"), "tables")
    >>> read_marker(Path("tables"))["attnmag"]
    'tables'
    """
    try:
        record = json.loads((folder / MARKER).read_text())
        files = record["files"]
        valid = (
            isinstance(record["attnmag"], str)
            and RUN_ID.fullmatch(record["run"]) is not None
            and all(set(entry) == {"size", "sha256"} for entry in files.values())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record if valid else None


def unknown_files(folder: Path) -> list[str]:
    """What under ``folder`` its marker does not vouch for.

    A file is vouched for when the marker lists it with its size and sha256; a folder when it
    holds such a file. Anything else (a file added or changed since, an empty folder, a
    link) is unknown. A missing marker, or one without a run id and a file list, vouches for
    nothing.

    Parameters
    ----------
    folder : Path
        An existing folder.

    Returns
    -------
    list of str
        The unknown entries' relative paths (folders end with ``/``); the marker's own name
        first where it vouches for nothing.

    Examples
    --------
    >>> with replacing(Path("out"), force=False, kind="tables") as folder:
    ...     _ = (folder / "t.csv").write_text("a,b")
    >>> _ = Path("out/notes.txt").write_text("mine")
    >>> Path("out/sub").mkdir()
    >>> unknown_files(Path("out"))
    ['notes.txt', 'sub/']
    """
    record = read_marker(folder)
    if record is None:
        return [MARKER, *(rel for rel, _, _ in _entries(folder))]
    listed = record["files"]
    vouched = {parent.as_posix() for rel in listed for parent in Path(rel).parents}
    unknown = []
    for rel, path, plain in _entries(folder):
        if plain:
            entry = listed.get(rel)
            if entry is None or entry["size"] != path.stat().st_size or entry != file_record(path):
                unknown.append(rel)
        elif path.is_symlink() or not path.is_dir() or rel not in vouched:
            unknown.append(rel + ("/" if path.is_dir() and not path.is_symlink() else ""))
    return unknown


def _sibling(out: Path, role: str) -> str:
    """The prefix of the hidden folders beside ``out`` for ``role`` (partial or trash)."""
    return f".{out.name}.{role}-"


def _name_limit(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _existing_ancestor(path: Path) -> Path:
    """The nearest existing folder at or above ``path``."""
    for folder in (path, *path.parents):
        if folder.exists():
            return folder
    return Path(path.anchor)


def check_target(out: Path, *, inputs: Iterable[Path] = (), option: str = "--out") -> None:
    """Refuse an output folder that is a file, cannot be written, is the current folder or
    one of its ancestors, or is or contains one of ``inputs``.

    Parameters
    ----------
    out : Path
        The output folder asked for.
    inputs : iterable of Path
        The run's input files and folders (a frame, shard folder, corpus file, model
        folder).
    option : str
        The option's name, for the messages.

    Returns
    -------
    None
        Raises ``AttnmagError``, one line naming ``out`` and what is allowed.

    Examples
    --------
    >>> check_target(Path("/tmp/fresh-output"), inputs=[Path("/tmp/reviews.csv")])
    """
    longest = len(f"{_sibling(out, DELETING)}{'0' * 32}".encode())
    limit = _name_limit(_existing_ancestor(out.absolute().parent))
    if longest > limit:
        raise AttnmagError(
            f"{option} {str(out)[:60]}…: its name is too long (attnmag writes "
            f".NAME.deleting-<32 hex digits> beside it, so NAME may have at most "
            f"{limit - longest + len(out.name.encode())} bytes); choose a shorter name"
        )
    target = out.resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        where = "the current folder" if target == here else "an ancestor of the current folder"
        raise AttnmagError(f"{option} {out} is {where}; choose a new folder for the output")
    for given in inputs:
        source = given.resolve()
        if source == target or target in source.parents:
            raise AttnmagError(
                f"{option} {out} {'is' if source == target else 'contains'} the input {given}; "
                "choose another folder for the output"
            )
    if out.exists() and not out.is_dir():
        raise AttnmagError(f"{option} {out} is a file; it must be a folder")
    for folder in (_existing_ancestor(target.parent), *([target] if out.is_dir() else [])):
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise AttnmagError(f"{option} {out}: cannot write in {folder} (permission denied)")


def check_output(
    out: Path, *, force: bool, inputs: Iterable[Path] = (), option: str = "--out"
) -> None:
    """Refuse, before any work, an output folder attnmag must not write or replace.

    Parameters
    ----------
    out : Path
        The output folder asked for.
    force : bool
        Whether an existing attnmag output may be replaced.
    inputs : iterable of Path
        The run's input files and folders; see ``check_target``.
    option : str
        The option's name, for the messages.

    Returns
    -------
    None
        Raises ``AttnmagError`` for anything ``check_target`` refuses, a symbolic link (it
        would be replaced, not what it points to), an existing ``out`` without ``force``, and
        (even with ``force``) an ``out`` that holds files but no attnmag marker.

    Examples
    --------
    >>> check_output(Path("/tmp/fresh-output"), force=False)
    """
    check_target(out, inputs=inputs, option=option)
    if out.is_symlink():
        raise AttnmagError(f"{option} {out} is a symbolic link; give the folder it points to")
    if out.exists():
        if not force:
            raise AttnmagError(f"{option} {out} exists; pass --force to replace it")
        _check_replaceable(out, option=option)


def _check_replaceable(out: Path, *, option: str) -> None:
    """Refuse to replace ``out`` unless it is empty or its marker vouches for every file."""
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise AttnmagError(
            f"{option} {out} is not an attnmag output (it has no {MARKER}); --force "
            "replaces only what attnmag wrote: choose another folder"
        )
    unknown = unknown_files(out)
    if unknown[:1] == [MARKER]:
        raise AttnmagError(
            f"{option} {out} has a {MARKER} that lists no files attnmag wrote (copied, or "
            "from an older attnmag), so it proves nothing; --force replaces only what attnmag "
            "wrote: move the folder away or choose another"
        )
    if unknown:
        shown = ", ".join(unknown[:SHOWN]) + (
            f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        )
        raise AttnmagError(
            f"{option} {out} holds files attnmag did not write or that changed since ({shown}); "
            "--force replaces only what attnmag wrote: move them out or choose another folder"
        )


def _lock_file(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def folder_lock(folder: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an ``fcntl`` lock on ``folder``'s name (a hidden file beside it) for the block.

    Parameters
    ----------
    folder : Path
        The folder whose name is locked; it need not exist.
    shared : bool
        Writers that cooperate (ranks of one sharded extraction) share the lock; anything
        else holds it alone.

    Returns
    -------
    context manager
        Raises ``AttnmagError`` at once if another process holds a conflicting lock.

    Examples
    --------
    >>> with folder_lock(Path("/tmp/some-output")):
    ...     pass
    """
    path = _lock_file(folder)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 — held open for the block
        except OSError as error:
            raise AttnmagError(
                f"{folder}: cannot write in {path.parent} ({error.strerror}); choose a folder "
                "where you may write"
            ) from None
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AttnmagError(
                f"{folder} is being written by another attnmag process; wait for it to finish "
                "or choose another folder"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the file was removed by its last holder: lock the new one
    try:
        yield
    finally:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)  # the last holder removes the lock file
        except BlockingIOError:
            pass
        handle.close()


def _run_of(folder: Path, role: str, out: Path) -> str | None:
    """The run id in the name of a ``role`` folder beside ``out`` where the folder's marker
    holds that same id, else None (a folder attnmag cannot prove it made)."""
    run = folder.name.removeprefix(_sibling(out, role))
    record = read_marker(folder) if folder.is_dir() and not folder.is_symlink() else None
    return run if record is not None and record["run"] == run else None


def _remove_output(folder: Path) -> bool:
    """Delete the files ``folder``'s marker lists (where size and sha256 still match), the
    folders they leave empty, then the marker and ``folder`` itself; anything else
    stays. Return whether ``folder`` is gone.

    The marker goes last, so a deletion cut short leaves a folder still proven attnmag's
    (or an empty one)."""
    record = read_marker(folder)
    for rel, entry in record["files"].items() if record else ():
        path = folder / rel
        if path.is_file() and not path.is_symlink() and file_record(path) == entry:
            path.unlink()
    for root, _, _ in sorted(os.walk(folder), key=lambda item: -len(Path(item[0]).parts)):
        if Path(root) != folder and not any(Path(root).iterdir()):
            Path(root).rmdir()
    if [p.name for p in folder.iterdir()] in ([MARKER], []):
        (folder / MARKER).unlink(missing_ok=True)
        folder.rmdir()
        return True
    return False


def clean_leftovers(out: Path) -> None:
    """Tidy what an interrupted run on ``out`` left (call with ``out``'s lock held).

    Only folders beside ``out`` whose name carries the run id their marker holds are
    touched: an old output left under its trash name while ``out`` is missing is moved back;
    the other trash and deleting folders lose the files their marker lists; partial folders
    are removed. An empty deleting folder (its marker already gone) is removed too.

    Parameters
    ----------
    out : Path
        An output folder (present or not).

    Examples
    --------
    >>> clean_leftovers(Path("out"))  # nothing was interrupted: nothing to tidy
    >>> sorted(Path(".").iterdir())
    []
    """
    parent = out.parent
    if not parent.is_dir():
        return
    trash = sorted(
        (p for p in parent.glob(_sibling(out, TRASH) + "*") if _run_of(p, TRASH, out)),
        key=lambda p: p.stat().st_mtime,
    )
    if trash and not out.exists():
        trash.pop().rename(out)
    deleting = [p for p in parent.glob(_sibling(out, DELETING) + "*") if p.is_dir()]
    for leftover in [*trash, *deleting]:
        if _run_of(leftover, DELETING if leftover in deleting else TRASH, out):
            _remove_output(leftover)
        elif leftover in deleting and not leftover.is_symlink() and not any(leftover.iterdir()):
            leftover.rmdir()
    for leftover in parent.glob(_sibling(out, PARTIAL) + "*"):
        if _run_of(leftover, PARTIAL, out):
            shutil.rmtree(leftover, ignore_errors=True)  # made under a fresh name by that run


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) during the block; it arrives when the block ends."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _swap(partial: Path, out: Path, *, force: bool) -> None:
    """Move ``partial`` to ``out``; an existing ``out`` (checked again: its marker must still
    vouch for every file) goes to a trash name first, then its files are deleted."""
    trash = None
    if out.exists():
        try:
            if not force:
                raise AttnmagError(f"{out} exists")
            _check_replaceable(out, option="--out")
        except AttnmagError as error:
            raise AttnmagError(
                f"{out} changed while this run was working ({error}); the new output is kept "
                f"in {partial}"
            ) from None
        record = read_marker(out)
        run = record["run"] if record else mark(out, "empty")  # empty: marked as ours
        trash = out.with_name(f"{_sibling(out, TRASH)}{run}")
    with _sigint_held():
        if trash is not None:
            out.rename(trash)
        partial.rename(out)
    if trash is not None:
        deleting = trash.with_name(
            trash.name.replace(_sibling(out, TRASH), _sibling(out, DELETING))
        )
        trash.rename(deleting)  # from here on it is not whole, so never moved back
        if not _remove_output(deleting):
            print(
                f"attnmag: {deleting} kept: it holds files added while this run worked",
                file=sys.stderr,
            )


@contextmanager
def replacing(out: Path, *, force: bool, kind: str) -> Iterator[Path]:
    """Build an output in a folder beside ``out``; swap it in when the block succeeds.

    Parameters
    ----------
    out : Path
        The final output folder.
    force : bool
        Whether an existing attnmag output may be replaced (only when its marker vouches
        for every file in it; see ``unknown_files``).
    kind : str
        What the output holds (run, tables, report), recorded in its marker.

    Returns
    -------
    context manager
        Yields the folder to write, named for a new random run id. When the block
        succeeds the marker lists every file written, with its size and sha256. ``out``'s
        name is locked for the whole block, so a second process is refused at once. If the
        block fails, ``out`` is untouched; what was written so far stays in the partial
        folder, which the next run removes.

    Examples
    --------
    >>> with replacing(Path("/tmp/an-output"), force=True, kind="tables") as folder:
    ...     _ = (folder / "t.csv").write_text("a,b")
    """
    check_output(out, force=force)
    with folder_lock(out):
        clean_leftovers(out)
        check_output(out, force=force)
        run = uuid.uuid4().hex
        partial = out.with_name(f"{_sibling(out, PARTIAL)}{run}")
        partial.mkdir()
        mark(partial, kind, run=run)
        try:
            yield partial
        except BaseException as error:
            empty = [p.name for p in partial.iterdir()] == [MARKER]
            if empty:
                shutil.rmtree(partial)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                kept = (
                    ""
                    if empty
                    else f" (what was written so far is in {partial} until the next run)"
                )
                raise AttnmagError(
                    f"no space left on the device while writing {out}: {out} is untouched"
                    f"{kept}; free some space and rerun"
                ) from None
            if not empty:
                print(
                    f"attnmag: what was computed so far is kept in {partial} until the next "
                    f"run on {out}",
                    file=sys.stderr,
                )
            raise
        mark(partial, kind, run=run)
        _swap(partial, out, force=force)
