"""Benchmark: how many times a shard folder's bytes are read by its fits and its report.

Run from the repository root::

    .venv/bin/python -m benchmarks.reads                       # 1M, 4M and 10M rows
    .venv/bin/python -m benchmarks.reads --rows 2000000 --results docs/results/reads.md

For each size it writes a synthetic folder (``benchmarks.scale.write_folder``: 12 layers,
texts of 50-350 tokens, shards of about 2.5M rows), then runs each case in a fresh process:
``models.fit_all`` on the folder's path; ``reports.write_report`` on it (its fits
included); and the two in turn, ``fit_all``'s tables given to the report, as ``attnmag fit``
and ``attnmag report`` would do in one process. Bytes read are counted by the kernel:
``rchar`` of ``/proc/self/io``, every byte this process's ``read`` and ``pread`` calls
returned (DuckDB's and pyarrow's reads included, DuckDB's reads of what it spilled to its
temporary folder too; memory-mapped files would escape it, and neither maps the shards),
from after the imports (a first call on a tiny folder of its own
warms every lazy import, font cache and DuckDB extension) to the end of the case. Those
bytes over the shards' bytes, ``reads``, bound how many times the shards were read from
above (the report's reads of its templates and fonts count too); the difference of the two
sizes' bytes over the difference of their shard bytes, ``reads per added byte``, is the
same count with the fixed reads taken out.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import emit, run_worker, table, write_results
from benchmarks.scale import write_folder

#: Each case: a function of the stages, the folder and an output folder.
CASES = {
    "fit_all": lambda models, reports, folder, out: models.fit_all(folder, progress=False),
    "write_report (its fits included)": lambda models, reports, folder, out: reports.write_report(
        folder, out, progress=False
    ),
    "fit_all, then write_report with its tables": lambda models, reports, folder, out: (
        reports.write_report(
            folder, out, tables=models.fit_all(folder, progress=False), progress=False
        )
    ),
}


def bytes_read() -> int:
    """Bytes this process has read so far (``rchar`` of ``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io holds no rchar line")


def worker(case: str, folder: str, warm: str) -> None:
    """Run ``case`` on ``warm`` (untimed), then on ``folder``; emit the bytes read by the
    second."""
    from attnmag import models, reports

    with tempfile.TemporaryDirectory() as out:
        CASES[case](models, reports, warm, Path(out) / "warm")
        before = bytes_read()
        CASES[case](models, reports, folder, Path(out) / "report")
        emit({"bytes": bytes_read() - before})


def main(argv: list[str] | None = None) -> None:
    """Write a folder per size, count each case's reads on it, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 10_000_000])
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--warm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.case, args.folder, args.warm)
        return
    root = Path(tempfile.mkdtemp(prefix="attnmag-reads-"))
    rows, previous = [], {}
    try:
        warm = root / "warm"
        write_folder(warm, 20_000)
        for size in args.rows:
            folder = root / f"rows-{size}"
            n_rows = write_folder(folder, size)
            shard_bytes = sum(p.stat().st_size for p in folder.glob("shard-*.parquet"))
            for case in CASES:
                options = ["--case", case, "--folder", str(folder), "--warm", str(warm)]
                read = run_worker("benchmarks.reads", options)["bytes"]
                before = previous.get(case)
                added = f"{(read - before[0]) / (shard_bytes - before[1]):.2f}" if before else "-"
                previous[case] = (read, shard_bytes)
                rows.append(
                    {
                        "case": case,
                        "rows": f"{n_rows:,}",
                        "shard MiB": f"{shard_bytes / 2**20:.1f}",
                        "read MiB": f"{read / 2**20:.1f}",
                        "reads": f"{read / shard_bytes:.2f}",
                        "reads per added byte": added,
                    }
                )
                print(table(rows[-1:]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(rows))
    if args.results:
        write_results(args.results, "python -m benchmarks.reads", argv, rows)


if __name__ == "__main__":
    main()
