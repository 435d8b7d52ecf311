"""Benchmark of the models stage: seconds to fit every layer, by method and corpus size.

Run from the repository root::

    .venv/bin/python -m benchmarks.fit                                  # 1,066, 4,000, 12,808
    .venv/bin/python -m benchmarks.fit --sizes 1066 --repeats 1         # a quick run
    .venv/bin/python -m benchmarks.fit --frame out/norms.parquet        # a saved frame
    .venv/bin/python -m benchmarks.fit --against d5902b1                # now against a commit
    .venv/bin/python -m benchmarks.fit --against d5902b1 --results docs/results/fit_against.md
    .venv/bin/python -m benchmarks.fit --results docs/results/fit.md    # for the docs

Frames are simulated (``tests/simulate.py``): 30 layers, 10-40 tokens per sequence
(about 25), a random intercept per sequence and lag effects. Every method of each model
is timed (``position_trend``: aggregate, ols, mixed; ``lag_effects``: ols,
initial_conditions, gmm), or those named by ``--methods``. Each fit runs ``--repeats``
times; the table gives the median wall-clock seconds, the median CPU seconds (on a machine
that others share, wall-clock time grows with their load, CPU time much less), the seconds
per 1,000 sequences and the exponent b of time ~ size**b against the previous size. Each
fit, and ``models.fit_all`` of all the methods timed, runs with ``n_jobs=1`` and with every
``--n-jobs`` value (DuckDB's threads). ``--frame`` times the fits on a saved frame
(``attnmag run``'s ``norms.parquet``) instead of simulated ones. The 1-minute load average
is printed at the start and the end. ``--results FILE`` also writes the table to a Markdown
file, which the documentation's benchmark page includes.

``--against REVISION`` times ``models.fit_all`` with its defaults, as ``attnmag run`` calls
it, on one in-memory frame (``--against-texts`` texts of 10-56 tokens, ``--against-layers``
layers: about 800,000 rows by default), with the package as it was at that git revision
(its files exported to a temporary folder) and as it is now, each in a fresh process, in
turn within each repeat; it gives the ratio of the medians (a before-and-after comparison
that the machine's load shifts far less than two separate runs) and compares the tables:
the largest relative difference of the estimates and of the standard errors, and the
largest amount by which a mixed fit's REML is lower now; ``--results FILE`` writes the
repeats' table and those figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from attnmag import extract, models
from benchmarks.common import write_results
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
        help="time models.fit_all of the package at this git revision and of now",
    )
    parser.add_argument("--against-texts", type=int, default=3000)
    parser.add_argument("--against-layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
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
        help="DuckDB thread counts to time the fits with, besides 1",
    )
    return parser.parse_args()


def _cpu_seconds() -> float:
    """CPU seconds of this process so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


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


#: What a process of ``_against`` runs: ``models.fit_all`` of the frame at argv[1], timed
#: (CPU seconds include forked workers'), its tables written to argv[2].
FIT_ALL = """
import json, resource, sys, time
import pandas as pd
from attnmag import models

def cpu():
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    own, forked = (resource.getrusage(w) for w in who)
    return own.ru_utime + own.ru_stime + forked.ru_utime + forked.ru_stime

frame = pd.read_parquet(sys.argv[1])
start, start_cpu = time.perf_counter(), cpu()
tables = models.fit_all(frame, progress=False)
wall, used = time.perf_counter() - start, cpu() - start_cpu
if "glance" not in tables:  # a Fits per named fit
    fits = tables
    tables = {name: fits[name].tidy for name in fits}
    tables["glance"] = pd.concat([fits[name].glance for name in fits], ignore_index=True)
for name in ("position_trend", "lag_effects", "glance"):
    tables[name].to_pickle(f"{sys.argv[2]}/{name}.pkl")
print(json.dumps({"wall": wall, "cpu": used, "models": models.__file__}))
"""


def _package_at(revision: str, folder: Path) -> Path:
    """The package as it was at git ``revision``, exported under ``folder``: the path to put
    first on ``PYTHONPATH`` so that ``import attnmag`` imports it."""
    tree = folder / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    root = folder / "path"
    package = root / "attnmag"
    package.mkdir(parents=True)
    for item in (tree / "attnmag").iterdir():
        (package / item.name).symlink_to(item)
    for stage in ("extract", "models", "reports"):
        (package / stage).symlink_to(tree / stage)
    return root


def _run_fit_all(path: Path | None, frame: Path, out: Path) -> tuple[float, float]:
    """``FIT_ALL`` in a fresh process, of the package at ``path`` (``None``: now)."""
    out.mkdir(exist_ok=True)
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", FIT_ALL, str(frame), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,  # not this repository, which ``python -c`` would put first on sys.path
        check=True,
    )
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"models from {seconds['models']}", flush=True)
    return seconds["wall"], seconds["cpu"]


def _differences(then: Path, now: Path) -> dict[str, float]:
    """The largest relative differences of the tables' estimates and standard errors, and
    the largest amount by which a mixed fit's REML is lower now than then."""
    out = {"estimate": 0.0, "std_error": 0.0}
    for name in ("position_trend", "lag_effects"):
        a, b = (pd.read_pickle(path / f"{name}.pkl") for path in (then, now))
        a, b = (t.assign(term=t["term"].replace({"intercept": "Intercept"})) for t in (a, b))
        keys = [column for column in a.columns if column in ("method", "layer", "term")]
        a, b = a.set_index(keys), b.set_index(keys).loc[a.set_index(keys).index]
        for column in out:
            scale = np.maximum(np.abs(a[column]), 1e-300)
            out[column] = max(out[column], float(np.nanmax(np.abs(b[column] - a[column]) / scale)))
    a, b = pd.read_pickle(then / "glance.pkl"), pd.read_pickle(now / "glance.pkl")
    keys = ["fit", "method", "layer"]
    a, b = a.set_index(keys), b.set_index(keys).loc[a.set_index(keys).index]
    mixed = a["boundary"].notna()
    out["reml_lower_now"] = float(np.nanmax((a["loglik"] - b["loglik"])[mixed]))
    return out


def _against(args: argparse.Namespace) -> None:
    """Time ``models.fit_all`` of the package at ``args.against`` and of now, in turn, and
    compare their tables."""
    options = {"length": (10, 56), "lag1": 0.2, "lag2": 0.1, "sd_sequence": 0.3}
    frame = simulated_frame(args.against_texts, args.against_layers, seed=1, **options)
    print(f"{len(frame):,} rows, {args.against_texts} texts, {args.against_layers} layers")
    with tempfile.TemporaryDirectory(prefix="attnmag-bench-") as folder:
        folder = Path(folder)
        frame.to_parquet(folder / "frame.parquet")
        versions = {args.against: _package_at(args.against, folder), "now": None}
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        loads = []
        for _ in range(args.repeats):
            for name, path in versions.items():
                out = folder / name
                seconds[name].append(_run_fit_all(path, folder / "frame.parquet", out))
                wall, cpu = seconds[name][-1]
                loads.append(os.getloadavg()[0])
                print(f"{name}: {wall:.2f} s, CPU {cpu:.2f} s (load {loads[-1]:.2f})", flush=True)
        differences = _differences(folder / args.against, folder / "now")
    medians = {
        name: [statistics.median(run[i] for run in runs) for i in (0, 1)]
        for name, runs in seconds.items()
    }
    (wall_then, cpu_then), (wall_now, cpu_now) = medians[args.against], medians["now"]
    ratio = (
        f"models.fit_all, median of {args.repeats}: {args.against} {wall_then:.2f} s "
        f"(CPU {cpu_then:.2f} s), now {wall_now:.2f} s (CPU {cpu_now:.2f} s); "
        f"{args.against} / now: {wall_then / wall_now:.2f} x (CPU {cpu_then / cpu_now:.2f} x)"
    )
    agreement = (
        "largest relative difference of the estimates {estimate:.2e}, of the standard errors "
        "{std_error:.2e}; largest REML lower now than then {reml_lower_now:.2e}".format(
            **differences
        )
    )
    print(f"{ratio}\n{agreement}")
    if args.results:
        runs = [
            {
                "repeat": str(k + 1),
                f"{args.against} wall (CPU) s": "{:.2f} ({:.2f})".format(*seconds[args.against][k]),
                "now wall (CPU) s": "{:.2f} ({:.2f})".format(*seconds["now"][k]),
                "load average after": f"{loads[2 * k]:.1f}, {loads[2 * k + 1]:.1f}",
            }
            for k in range(args.repeats)
        ]
        notes = [
            f"The frame: {len(frame):,} rows, {args.against_texts} simulated texts of 10-56 "
            f"tokens, {args.against_layers} layers; each version in a fresh process, in turn.",
            "",
            f"{ratio[0].upper()}{ratio[1:]}; {agreement}.",
        ]
        write_results(args.results, "python -m benchmarks.fit", None, runs, notes)


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
                for n_jobs in dict.fromkeys([1, *args.n_jobs]):
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
    table = table.sort_values(["model", "method", "n_jobs", "sequences"])
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.results:
        shown = table.map(lambda x: "–" if x != x else f"{x:.3g}" if isinstance(x, float) else x)
        notes = [f"Median of {args.repeats} repeat(s); every fit runs all {args.layers} layers."]
        write_results(
            args.results, "python -m benchmarks.fit", None, shown.to_dict("records"), notes
        )


if __name__ == "__main__":
    main()
