"""Benchmark of fits straight from a shard folder: seconds and peak memory as the rows grow.

Run from the repository root::

    .venv/bin/python -m benchmarks.scale                                  # 10M and 100M rows
    .venv/bin/python -m benchmarks.scale --rows 1000000 10000000          # a quicker run
    .venv/bin/python -m benchmarks.scale --texts 4167                     # longer texts
    .venv/bin/python -m benchmarks.scale --results docs/results/scale.md  # for the docs

For each size it writes a synthetic shard folder in the exact format of
``extract.write_shards`` (the frames built by ``extract.frame.tidy_frame``, written by
``extract.shards.write_frames``), then
runs each fit from the folder (``models.position_trend`` and ``models.lag_effects`` on its
path; ``models.fit_all`` on the folder's path,
every method; ``reports.write_report`` on the path, its fits included) in a fresh process
(``--repeats`` times; the medians) and reports its seconds, that process's peak resident set size
(``ru_maxrss``; imports included, and the first row gives a process that only imports
them), and the growth of its resident set during the fit (sampled every 5 ms: the peak
minus the size before the fit), each also as a ratio to the first size's. The folders are
simulated: 12 layers, texts of 50-350 tokens (200 on average; with ``--texts N``, N texts
whose lengths grow with the rows), log norms with a random intercept per text, a trend in
position and AR(1) noise, in shards of about 2.5M rows. They are written under ``--dir``
(a temporary folder by default) and removed afterwards unless ``--keep``. Each folder is
written by a process of its own: a child's ``ru_maxrss`` starts from its parent's peak, so
the process that starts the fits stays small.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from benchmarks.common import PeakRSS, emit, run_worker, table, write_results

LAYERS = 12
#: Texts' lengths are uniform on this range times their mean length (200 tokens by default).
SPREAD = (0.25, 1.75)
MEAN_LENGTH = 200
#: Rows per shard, about (each shard holds whole texts).
SHARD_ROWS = 2_500_000
FITS = {
    "imports only": None,
    "position_trend ols": ("position_trend", {"method": "ols"}),
    "position_trend mixed": ("position_trend", {"method": "mixed"}),
    "lag_effects ols": ("lag_effects", {"method": "ols"}),
    "lag_effects initial_conditions": ("lag_effects", {"method": "initial_conditions"}),
    "lag_effects gmm": ("lag_effects", {"method": "gmm"}),
    "fit_all (every method)": ("fit_all", {}),
    "write_report": ("write_report", {}),
}


def write_folder(folder: Path, rows: int, *, texts: int | None = None, seed: int = 0) -> int:
    """A synthetic shard folder of about ``rows`` rows (``extract.shards.write_frames``, a
    shard at a time): ``texts`` texts (by default as many as give texts of ``MEAN_LENGTH``
    tokens on average); returns its exact row count."""
    from attnmag.extract.frame import tidy_frame
    from attnmag.extract.shards import read_manifest, shard_ranges, write_frames

    n_texts = texts or max(2, round(rows / (LAYERS * MEAN_LENGTH)))
    mean = rows / (LAYERS * n_texts)
    low, high = (round(mean * bound) for bound in SPREAD)
    shard_texts = max(1, round(SHARD_ROWS / (LAYERS * mean)))
    rng = np.random.default_rng(seed)
    vocabulary = {i: f"t{i}" for i in range(100)}

    def shard(start: int, stop: int) -> pd.DataFrame:
        """The tidy frame of texts ``start``..``stop - 1``, simulated."""
        lengths = rng.integers(low, high + 1, size=stop - start)
        norms = []
        for length in lengths:
            position = np.arange(length)
            noise = lfilter([1.0], [1.0, -0.3], rng.normal(0, 0.2, (LAYERS, length)), axis=1)
            level = 1.0 + rng.normal(0, 0.3) - 0.002 * position + noise
            norms.append(np.exp(level).astype(np.float32))
        return tidy_frame(
            sequences=range(start, stop),
            token_ids=[rng.integers(0, 100, size=length) for length in lengths],
            norms=norms,
            layers=range(LAYERS),
            token_text=vocabulary,
        )

    frames = (shard(start, stop) for _, start, stop in shard_ranges(n_texts, shard_texts))
    write_frames(frames, folder, n_texts=n_texts, shard_texts=shard_texts, layers=range(LAYERS))
    return sum(entry["rows"] for entry in read_manifest(folder)["shards"].values())


def worker(name: str, folder: str) -> None:
    """Run fit ``name`` on ``folder``; emit its seconds, this process's peak RSS, and the
    growth of the RSS during the fit (sampled)."""
    from attnmag import models, reports

    fits = {
        "position_trend": models.position_trend,
        "lag_effects": models.lag_effects,
        "fit_all": lambda path: models.fit_all(path, progress=False),
        "write_report": lambda path: _report(reports, path),
    }
    seconds, growth = 0.0, 0
    if FITS[name] is not None:
        model, options = FITS[name]
        with PeakRSS() as sampled:
            start = time.perf_counter()
            fits[model](folder, **options)
            seconds = time.perf_counter() - start
        growth = sampled.growth
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    emit({"seconds": seconds, "peak_rss": peak, "growth": growth})


def _report(reports: object, folder: str) -> None:
    """The report on ``folder`` (its fits included), written to a folder removed after."""
    with tempfile.TemporaryDirectory() as out:
        reports.write_report(folder, Path(out) / "report", progress=False)


def _ratio(result: dict, baseline: dict, key: str) -> str:
    """``result[key] / baseline[key]`` to two decimals ("-" where the baseline is 0)."""
    return f"{result[key] / baseline[key]:.2f}" if baseline[key] else "-"


def main(argv: list[str] | None = None) -> None:
    """Write a folder per size, time every fit on it, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--fits", nargs="+", default=list(FITS), choices=list(FITS))
    parser.add_argument(
        "--texts",
        type=int,
        default=None,
        help="texts in every folder (rows then grow with their length); by default texts of "
        f"{MEAN_LENGTH} tokens on average, their number growing with the rows",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each fit (median)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the folders")
    parser.add_argument("--keep", action="store_true", help="keep the folders")
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker and args.write:
        emit({"rows": write_folder(Path(args.folder), args.write, texts=args.texts)})
        return
    if args.worker:
        worker(args.name, args.folder)
        return
    root = Path(tempfile.mkdtemp(prefix="attnmag-scale-", dir=args.dir))
    results, first = [], {}
    try:
        for rows in args.rows:
            folder = root / f"rows-{rows}"
            began = time.perf_counter()
            # Written by a process of its own: on Linux a child's ru_maxrss starts from its
            # parent's peak (exec keeps the high-water mark), so this process stays small.
            written = ["--write", str(rows), "--folder", str(folder)]
            texts = [] if args.texts is None else ["--texts", str(args.texts)]
            n_rows = run_worker("benchmarks.scale", [*written, *texts])["rows"]
            size = sum(p.stat().st_size for p in folder.glob("shard-*.parquet"))
            print(
                f"wrote {n_rows:,} rows ({size / 2**30:.2f} GiB) in "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
            for name in args.fits:
                runs = [
                    run_worker("benchmarks.scale", ["--name", name, "--folder", str(folder)])
                    for _ in range(args.repeats)
                ]
                result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                baseline = first.setdefault(name, (n_rows, result))
                results.append(
                    {
                        "fit": name,
                        "rows": f"{n_rows:,}",
                        "seconds": f"{result['seconds']:.1f}",
                        "s per 10M rows": f"{result['seconds'] / n_rows * 1e7:.2f}",
                        "peak RSS MiB": f"{result['peak_rss'] / 2**20:.0f}",
                        "RSS / first size": _ratio(result, baseline[1], "peak_rss"),
                        "growth in fit MiB": f"{result['growth'] / 2**20:.0f}",
                        "growth / first size": _ratio(result, baseline[1], "growth"),
                    }
                )
                print(table(results[-1:]), flush=True)
            if not args.keep:
                shutil.rmtree(folder)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    if args.results:
        write_results(args.results, "python -m benchmarks.scale", argv, results)


if __name__ == "__main__":
    main()
