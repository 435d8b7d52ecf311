"""Benchmark of the models stage: seconds to fit every layer, by method and corpus size.

Run from the repository root::

    .venv/bin/python -m benchmarks.fit                                  # 1,066, 4,000, 12,808
    .venv/bin/python -m benchmarks.fit --sizes 1066 --repeats 1         # a quick run

Frames are simulated (``tests/simulate.py``): 30 layers, 10-40 tokens per sequence
(about 25), a random intercept per sequence and lag effects. Every method of each model
is timed (``position_trend``: aggregate, ols, mixed; ``lag_effects``: ols,
initial_conditions, gmm), or those named by ``--methods``. Each fit runs ``--repeats``
times; the table gives the median seconds, the seconds per 1,000 sequences and the
exponent b of time ~ size**b against the previous size. Methods fitted in worker
processes (the mixed models) are timed with ``n_jobs=1`` and with every ``--n-jobs`` value.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from attnmag import models
from tests.simulate import simulated_frame

FITS: dict[str, Callable[..., pd.DataFrame]] = {
    "position_trend": models.position_trend,
    "lag_effects": models.lag_effects,
}
ALL_METHODS = list(dict.fromkeys(m for methods in models.METHODS.values() for m in methods))


def _arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fit", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1066, 4000, 12808])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=ALL_METHODS,
        choices=ALL_METHODS,
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        nargs="+",
        default=[len(os.sched_getaffinity(0))],
        help="worker counts to time the parallel methods with, besides 1",
    )
    return parser.parse_args()


def _time(fit: Callable[[], pd.DataFrame], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    """Time every (size, model, method, n_jobs) and print the table."""
    args = _arguments()
    rows = []
    for size in args.sizes:
        frame = simulated_frame(
            size, args.layers, length=(10, 40), lag1=0.2, lag2=0.1, sd_sequence=0.3, seed=size
        )
        for model, fit in FITS.items():
            for method in args.methods:
                if method not in models.METHODS[model]:
                    continue
                jobs = [1, *args.n_jobs] if method in models.fits.PARALLEL_METHODS else [1]
                for n_jobs in dict.fromkeys(jobs):
                    seconds = _time(partial(fit, frame, method=method, n_jobs=n_jobs), args.repeats)
                    rows.append((size, model, method, n_jobs, seconds))
        print(f"done: {size} sequences x {args.layers} layers ({len(frame):,} rows)", flush=True)
    table = pd.DataFrame(rows, columns=["sequences", "model", "method", "n_jobs", "seconds"])
    table["s_per_1000_seq"] = table["seconds"] / table["sequences"] * 1000
    keys = ["model", "method", "n_jobs"]
    previous = table.groupby(keys)[["sequences", "seconds"]].shift(1)
    table["growth_exponent"] = np.log(table["seconds"] / previous["seconds"]) / np.log(
        table["sequences"] / previous["sequences"]
    )
    print(f"median seconds over {args.repeats} repeat(s), {args.layers} layers, all layers per fit")
    print(
        table.sort_values(["model", "method", "n_jobs", "sequences"]).to_string(
            index=False, float_format=lambda x: f"{x:.3g}"
        )
    )


if __name__ == "__main__":
    main()
