"""Benchmark of the models stage: seconds to fit every layer, by method and corpus size.

Run from the repository root::

    .venv/bin/python -m benchmarks.fit                                  # 1,066, 4,000, 12,808
    .venv/bin/python -m benchmarks.fit --sizes 1066 --repeats 1         # a quick run
    .venv/bin/python -m benchmarks.fit --frame out/norms.parquet        # a saved frame
    .venv/bin/python -m benchmarks.fit --frame out/norms.parquet --against 7815cfa

Frames are simulated (``tests/simulate.py``): 30 layers, 10-40 tokens per sequence
(about 25), a random intercept per sequence and lag effects. Every method of each model
is timed (``position_trend``: aggregate, ols, mixed; ``lag_effects``: ols,
initial_conditions, gmm), or those named by ``--methods``. Each fit runs ``--repeats``
times; the table gives the median wall-clock seconds, the median CPU seconds (this process
and its worker processes together: on a machine that others share, wall-clock time
grows with their load, CPU time much less), the seconds per 1,000 sequences and the
exponent b of time ~ size**b against the previous size. Methods fitted in worker
processes (the mixed models) are timed with ``n_jobs=1`` and with every ``--n-jobs`` value,
and so is ``models.fit_all`` of all the methods timed (one pool for all their groups).
``--frame`` times the fits on a saved frame (``attnmag run``'s ``norms.parquet``) instead
of simulated ones. The 1-minute load average is printed at the start and the end.

``--against REVISION`` times the whole models stage instead (``models.fit_all`` with its
defaults, as ``attnmag run`` calls it) with ``models/mixed.py`` as it was at that git
revision and as it is now, in turn within each repeat, in this one process, and gives the
ratio of the medians: a before-and-after comparison that the machine's load shifts far
less than two separate runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import pandas as pd

from attnmag import extract, models
from attnmag.models import fits
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
    parser.add_argument("--frame", help="a saved frame to fit instead of simulated ones")
    parser.add_argument(
        "--against",
        metavar="REVISION",
        help="time models.fit_all with models/mixed.py of this git revision and of now",
    )
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


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _time(fit: Callable[[], pd.DataFrame], repeats: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        fit()
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _frames(args: argparse.Namespace) -> Iterator[tuple[int, pd.DataFrame]]:
    """(sequences, frame) pairs, one at a time: the saved frame, or a simulated one per size."""
    if args.frame:
        frame = extract.read_frame(args.frame)
        yield int(frame["sequence"].nunique()), frame
        return
    for size in args.sizes:
        options = {"length": (10, 40), "lag1": 0.2, "lag2": 0.1, "sd_sequence": 0.3}
        yield size, simulated_frame(size, args.layers, seed=size, **options)


def _mixed_at(revision: str) -> types.ModuleType:
    """``models/mixed.py`` as it was at git ``revision``, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:models/mixed.py"], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"mixed_at_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{revision}:models/mixed.py", "exec"), module.__dict__)
    return module


def _against(args: argparse.Namespace) -> None:
    """Time ``models.fit_all`` with ``fit_mixed`` of ``args.against`` and of now, in turn."""
    versions = {args.against: _mixed_at(args.against).fit_mixed, "now": fits.fit_mixed}
    for size, frame in _frames(args):
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        for _ in range(args.repeats):
            for name, fit_mixed in versions.items():
                fits.fit_mixed = fit_mixed
                seconds[name].append(_time(partial(models.fit_all, frame, progress=False), 1))
                wall, cpu = seconds[name][-1]
                load = os.getloadavg()[0]
                print(
                    f"{name}: {wall:.2f} s, CPU {cpu:.2f} s (load average {load:.2f})", flush=True
                )
        fits.fit_mixed = versions["now"]
        medians = {
            name: [statistics.median(run[i] for run in runs) for i in (0, 1)]
            for name, runs in seconds.items()
        }
        (wall_then, cpu_then), (wall_now, cpu_now) = medians[args.against], medians["now"]
        print(
            f"{size} sequences, models.fit_all, median of {args.repeats}: {args.against} "
            f"{wall_then:.2f} s (CPU {cpu_then:.2f} s), now {wall_now:.2f} s "
            f"(CPU {cpu_now:.2f} s); now / {args.against}: {wall_now / wall_then:.3f} "
            f"(CPU {cpu_now / cpu_then:.3f})"
        )


def main() -> None:
    """Time every (size, model, method, n_jobs) and print the table."""
    args = _arguments()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.against:
        _against(args)
        return
    rows = []
    for size, frame in _frames(args):
        for model, fit in FITS.items():
            for method in args.methods:
                if method not in models.METHODS[model]:
                    continue
                jobs = [1, *args.n_jobs] if method in models.fits.PARALLEL_METHODS else [1]
                for n_jobs in dict.fromkeys(jobs):
                    call = partial(fit, frame, method=method, n_jobs=n_jobs, progress=False)
                    rows.append((size, model, method, n_jobs, *_time(call, args.repeats)))
        for n_jobs in dict.fromkeys([1, *args.n_jobs]):
            call = partial(
                models.fit_all,
                frame,
                trend_methods=[m for m in args.methods if m in models.METHODS["position_trend"]],
                lag_methods=[m for m in args.methods if m in models.METHODS["lag_effects"]],
                n_jobs=n_jobs,
                progress=False,
            )
            rows.append((size, "fit_all", "the methods above", n_jobs, *_time(call, args.repeats)))
        layers = frame["layer"].nunique()
        print(f"done: {size} sequences x {layers} layers ({len(frame):,} rows)", flush=True)
    columns = ["sequences", "model", "method", "n_jobs", "seconds", "cpu_seconds"]
    table = pd.DataFrame(rows, columns=columns)
    table["s_per_1000_seq"] = table["seconds"] / table["sequences"] * 1000
    keys = ["model", "method", "n_jobs"]
    previous = table.groupby(keys)[["sequences", "seconds"]].shift(1)
    table["growth_exponent"] = np.log(table["seconds"] / previous["seconds"]) / np.log(
        table["sequences"] / previous["sequences"]
    )
    print(f"median seconds over {args.repeats} repeat(s), all layers per fit")
    print(
        table.sort_values(["model", "method", "n_jobs", "sequences"]).to_string(
            index=False, float_format=lambda x: f"{x:.3g}"
        )
    )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
