"""attnmag.workers: forked workers see the caller's closures, results come back in order."""

from __future__ import annotations

import os

import pytest
from threadpoolctl import threadpool_info

from attnmag.errors import AttnmagError
from attnmag.workers import fork_map, n_workers


def test_forked_workers_run_a_closure_and_yield_in_order():
    unpicklable = {"offset": 10, "function": lambda value: value * value}
    results = list(
        fork_map(
            lambda i: (unpicklable["function"](i) + unpicklable["offset"], os.getpid()),
            12,
            workers=2,
        )
    )
    assert [value for value, _ in results] == [i * i + 10 for i in range(12)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_one_worker_runs_here():
    assert list(fork_map(lambda i: os.getpid(), 3, workers=1)) == [os.getpid()] * 3
    assert list(fork_map(lambda i: i, 0, workers=4)) == []


def test_a_workers_blas_runs_one_thread():
    threads = list(
        fork_map(lambda i: {pool["num_threads"] for pool in threadpool_info()}, 2, workers=2)
    )
    assert all(found <= {1} for found in threads)


def test_an_error_in_a_task_is_raised_and_the_next_map_works():
    def task(i: int) -> int:
        if i == 3:
            raise ValueError("task 3 failed")
        return i

    with pytest.raises(ValueError, match="task 3 failed"):
        list(fork_map(task, 6, workers=2))
    assert list(fork_map(lambda i: -i, 3, workers=2)) == [0, -1, -2]


def test_a_task_cannot_fork_its_own_workers():
    nested = fork_map(lambda i: list(fork_map(lambda j: j, 2, workers=2)), 2, workers=2)
    with pytest.raises(RuntimeError, match="does not nest"):
        list(nested)


@pytest.mark.parametrize("n_jobs", [0, -2])
def test_n_jobs_must_be_positive_none_or_minus_one(n_jobs):
    assert n_workers(None) == n_workers(-1) >= 1
    with pytest.raises(AttnmagError, match="n_jobs must be a positive number"):
        n_workers(n_jobs)
