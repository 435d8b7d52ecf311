"""Worker processes forked from this one, for the fits and the report's figures.

Holds:
- ``n_workers``: ``n_jobs`` as the fits and reports take it -> a number of processes;
- ``fork_map``: ``function(0), function(1), ...`` computed in forked worker processes,
  yielded in order.

A forked worker starts as a copy of this process: the function (a closure is fine) and
the data it reads are already there, and only each result is pickled back. Each worker's
BLAS runs one thread (``threadpoolctl``), so that the workers share the cores rather than
each starting a thread per core. Where the
platform cannot fork (``fork`` is not among multiprocessing's start methods), or one worker
is asked for, everything runs here, in order. ``forkserver`` and ``spawn`` are never used:
they re-run the caller's ``__main__`` imports in every worker (torch, after the extract
stage) and fail in a script without an ``if __name__ == "__main__"`` guard.

>>> list(fork_map(lambda i: i * i, 4, workers=2))
[0, 1, 4, 9]
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from threadpoolctl import threadpool_limits

from attnmag.errors import AttnmagError

__all__ = ["fork_map", "n_workers"]

T = TypeVar("T")

#: The function of the ``fork_map`` running now: what its forked workers call.
_TASK: Callable[[int], object] | None = None


def n_workers(n_jobs: int | None) -> int:
    """``n_jobs`` -> a number of processes (``None`` or -1: one per usable core).

    >>> n_workers(3)
    3
    """
    if n_jobs is None or n_jobs == -1:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_jobs < 1:
        raise AttnmagError(
            f"n_jobs must be a positive number of processes, None or -1, not {n_jobs}"
        )
    return n_jobs


def fork_map(function: Callable[[int], T], count: int, *, workers: int) -> Iterator[T]:
    """``function(i)`` for ``i`` in ``range(count)``, in up to ``workers`` forked processes.

    Parameters
    ----------
    function : callable
        Takes the task's index; its result must pickle.
    count : int
        The number of tasks.
    workers : int
        The most processes to fork; 1 (or a platform without ``fork``) runs the tasks here.

    Yields
    ------
    object
        Each task's result, in the order of the indices, as soon as it and those before it
        are done. An exception in a task is raised here.

    Examples
    --------
    >>> shapes = list(fork_map(lambda i: parts[i].shape, len(parts), workers=2))  # doctest: +SKIP
    """
    global _TASK
    workers = min(workers, count)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from (function(index) for index in range(count))
        return
    if _TASK is not None:
        raise RuntimeError("fork_map does not nest: its workers run their tasks in turn")
    _TASK = function
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            yield from pool.map(_call, range(count))
    finally:
        _TASK = None


def _call(index: int) -> object:
    """In a worker: the task of the ``fork_map`` that forked it."""
    return _TASK(index)


def _one_thread() -> None:
    """In a new worker: BLAS and OpenMP libraries run one thread each from now on."""
    threadpool_limits(1)
