"""Output folders that never lose or mix data: markers, locks, refusals and atomic replacement.

Holds:
- ``MARKER`` and ``mark``/``is_output``: the small file that says attnmag wrote a folder;
- ``check_target``: the refusals, before any work, of an ``--out`` that is a file, is not
  writable, is the current folder or one of its ancestors, or is or contains an input;
- ``check_output``: those, and an ``--out`` that exists without ``force`` or (even with
  ``force``) is not an attnmag output;
- ``folder_lock``: an ``fcntl`` lock on a folder's name, held for a whole run (shared by
  cooperating writers of one shard folder, exclusive otherwise);
- ``replacing``: a context manager that builds an output in a ``.NAME.partial-*`` folder
  beside it and, once the block succeeds, swaps it in by two renames (old -> a trash name,
  new -> final) before deleting the trash (renamed once more, to a deleting name, first);
- ``clean_leftovers``: restores an old output a crash left under its trash name, and removes
  the trash, deleting and partial folders of earlier runs.

At every instant the final name holds the old output or the new one complete, or (for the
microseconds between the two renames, where SIGINT is held back) nothing, with the old one
whole under its trash name; the next run on that name moves it back.

Usage::

    check_output(Path("out"), force=True, inputs=[Path("reviews.csv")])
    with replacing(Path("out"), force=True, kind="run") as folder:
        (folder / "table.csv").write_text("...")
"""

from __future__ import annotations

import fcntl
import json
import os
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
    "folder_lock",
    "is_output",
    "mark",
    "replacing",
]

MARKER = ".attnmag-output.json"
PARTIAL = "partial"
TRASH = "trash"
DELETING = "deleting"


def mark(folder: Path, kind: str) -> None:
    """Write the marker that says attnmag wrote ``folder``.

    Parameters
    ----------
    folder : Path
        An existing folder attnmag wrote.
    kind : str
        What it holds: ``run``, ``tables``, ``report`` or ``shards``.
    """
    (folder / MARKER).write_text(json.dumps({"attnmag": kind}) + "\n")


def is_output(folder: Path) -> bool:
    """Whether ``folder`` carries attnmag's output marker.

    Parameters
    ----------
    folder : Path
        Any path.

    Returns
    -------
    bool
        True where ``mark`` wrote its marker there.
    """
    return (folder / MARKER).is_file()


def _sibling(out: Path, role: str) -> str:
    """The prefix of the hidden folders beside ``out`` for ``role`` (partial or trash)."""
    return f".{out.name}.{role}-"


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
        if not is_output(out) and any(out.iterdir()):
            raise AttnmagError(
                f"{option} {out} is not an attnmag output (it has no {MARKER}); --force "
                "replaces only what attnmag wrote: choose another folder"
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
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        handle = open(path, "a+")  # noqa: SIM115 — held open for the block
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


def clean_leftovers(out: Path) -> None:
    """Tidy what an interrupted run on ``out`` left (call with ``out``'s lock held).

    An old output left under its trash name while ``out`` is missing is moved back; trash
    and partial folders beside ``out`` that carry attnmag's marker are removed.

    Parameters
    ----------
    out : Path
        An output folder (present or not).
    """
    parent = out.parent
    if not parent.is_dir():
        return
    trash = sorted(p for p in parent.glob(_sibling(out, TRASH) + "*") if is_output(p))
    if trash and not out.exists():
        trash.pop().rename(out)
    for leftover in [*trash, *parent.glob(_sibling(out, PARTIAL) + "*")]:
        if leftover.is_dir() and (is_output(leftover) or not any(leftover.iterdir())):
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in parent.glob(_sibling(out, DELETING) + "*"):
        shutil.rmtree(leftover, ignore_errors=True)  # an old output half deleted: ours


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) during the block; it arrives when the block ends."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _swap(partial: Path, out: Path, *, force: bool) -> None:
    """Move ``partial`` to ``out``; an existing ``out`` goes to a trash name first, then is
    deleted."""
    trash = None
    if out.exists():
        if not force or not (is_output(out) or not any(out.iterdir())):
            raise AttnmagError(
                f"{out} appeared while this run was working; the new output is kept in {partial}"
            )
        trash = out.with_name(f"{_sibling(out, TRASH)}{uuid.uuid4().hex[:8]}")
        if not is_output(out):
            mark(out, "empty")  # an empty folder: marked so that a crash's leftover is ours
    with _sigint_held():
        if trash is not None:
            out.rename(trash)
        partial.rename(out)
    if trash is not None:
        deleting = trash.with_name(
            trash.name.replace(_sibling(out, TRASH), _sibling(out, DELETING))
        )
        trash.rename(deleting)  # from here on it is not whole, so never moved back
        shutil.rmtree(deleting)


@contextmanager
def replacing(out: Path, *, force: bool, kind: str) -> Iterator[Path]:
    """Build an output in a folder beside ``out``; swap it in when the block succeeds.

    Parameters
    ----------
    out : Path
        The final output folder.
    force : bool
        Whether an existing attnmag output may be replaced.
    kind : str
        What the output holds (run, tables, report), recorded in its marker.

    Returns
    -------
    context manager
        Yields the folder to write. ``out``'s name is locked for the whole block, so a
        second process is refused at once. If the block fails, ``out`` is untouched; what
        was written so far stays in the partial folder, which the next run removes.

    Examples
    --------
    >>> with replacing(Path("/tmp/an-output"), force=True, kind="tables") as folder:
    ...     _ = (folder / "t.csv").write_text("a,b")
    """
    check_output(out, force=force)
    with folder_lock(out):
        clean_leftovers(out)
        check_output(out, force=force)
        partial = out.with_name(f"{_sibling(out, PARTIAL)}{uuid.uuid4().hex[:8]}")
        partial.mkdir()
        mark(partial, kind)
        try:
            yield partial
        except BaseException:
            if [p.name for p in partial.iterdir()] == [MARKER]:
                shutil.rmtree(partial)
            else:
                print(
                    f"attnmag: what was computed so far is kept in {partial} until the next "
                    f"run on {out}",
                    file=sys.stderr,
                )
            raise
        _swap(partial, out, force=force)
