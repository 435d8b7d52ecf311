"""Benchmark of a shard folder against its frame: the same fits and report, streamed from the
folder or run on ``extract.read_frame`` of it, with their seconds and peak memory.

Run from the repository root::

    .venv/bin/python -m benchmarks.folder                                # 1M and 10M rows
    .venv/bin/python -m benchmarks.folder --rows 1000000 --cases 'fit_all (every method)'
    .venv/bin/python -m benchmarks.folder --results docs/results/folder.md  # for the docs

For each size it writes a synthetic folder (``benchmarks.scale.write_folder``: 12 layers,
texts of 50-350 tokens, shards of about 2.5M rows) in a process of its own, then runs each
case in a fresh process, once on the folder's path and once on the frame read from it. The
seconds run from the start of reading (``read_frame`` included for the frame) to the end of
the case; the peak resident set size is that process's ``ru_maxrss`` (imports included: the
first row gives a process that only imports attnmag). A child's ``ru_maxrss`` starts from
its parent's peak, so this process only starts the others.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import emit, run_worker, table, write_results

#: Each case: a function of the stages, ``data`` (the folder's path or its frame) and ``out``
#: (a folder to write into).
CASES = {
    "imports only": lambda models, reports, data, out: None,
    "fit_all (every method)": lambda models, reports, data, out: models.fit_all(
        data, n_jobs=1, progress=False
    ),
    "fit ols, log_norm ~ position + lag1, every position": (
        lambda models, reports, data, out: models.fit(
            data, "log_norm ~ position + lag1", positions=(1, 10**6), n_jobs=1, progress=False
        )
    ),
    "fit mixed, log_norm ~ position + lag1, every position": (
        lambda models, reports, data, out: models.fit(
            data,
            "log_norm ~ position + lag1",
            method="mixed",
            positions=(1, 10**6),
            n_jobs=1,
            progress=False,
        )
    ),
    "write_report (its fits included)": lambda models, reports, data, out: reports.write_report(
        data, out, progress=False
    ),
}


def worker(case: str, folder: str, source: str) -> None:
    """Run ``case`` on ``folder`` or on its frame; emit the seconds and this process's peak."""
    from attnmag import extract, models, reports

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        data = folder if source == "folder" else extract.read_frame(folder)
        CASES[case](models, reports, data, Path(scratch) / "report")
        seconds = time.perf_counter() - start
    emit({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


def main() -> None:
    """Write a folder per size, run every case on the folder and on its frame, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--sources", nargs="+", default=["folder", "frame"])
    parser.add_argument("--dir", type=Path, default=None, help="where to write the folders")
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker and args.write:
        from benchmarks.scale import write_folder

        emit({"rows": write_folder(Path(args.folder), args.write)})
        return
    if args.worker:
        worker(args.case, args.folder, args.source)
        return
    root = Path(tempfile.mkdtemp(prefix="attnmag-folder-", dir=args.dir))
    results = []
    try:
        for rows in args.rows:
            folder = root / f"rows-{rows}"
            written = ["--write", str(rows), "--folder", str(folder)]
            n_rows = run_worker("benchmarks.folder", written)["rows"]
            for case in args.cases:
                for source in args.sources if case != "imports only" else ["folder"]:
                    worker_args = ["--case", case, "--folder", str(folder), "--source", source]
                    result = run_worker("benchmarks.folder", worker_args)
                    results.append(
                        {
                            "rows": f"{n_rows:,}",
                            "case": case,
                            "input": source if case != "imports only" else "-",
                            "seconds": f"{result['seconds']:.1f}",
                            "peak RSS MiB": f"{result['peak_rss'] / 1024:.0f}",
                        }
                    )
                    print(table(results[-1:]), flush=True)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    if args.results:
        write_results(args.results, "python -m benchmarks.folder", None, results)


if __name__ == "__main__":
    main()
