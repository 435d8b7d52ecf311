"""Benchmark: ``attnmag run`` on the bundled defaults, seconds per stage.

Runs the command line (``attnmag run --out <tmp> --force``) in a fresh process per repeat,
reads the stage lines it prints (``extract: 12.3 s, …``), and prints the median seconds of
each stage, its share of the whole run, and the whole run's wall-clock time (the baseline of
the shares; what no stage line covers is shown as ``other``: start-up, loading, writing).

Usage::

    python -m benchmarks.end_to_end                    # bundled defaults, 3 repeats
    python -m benchmarks.end_to_end --repeats 1 -- --limit 256 --format html
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import table

STAGE = re.compile(r"^(?P<stage>[a-z][\w ]*?): (?P<seconds>\d+(?:\.\d+)?) s\b", re.MULTILINE)


def attnmag_command() -> list[str]:
    """The ``attnmag`` console script beside this Python."""
    script = Path(sys.executable).with_name("attnmag")
    if not script.is_file():
        raise SystemExit(f"no attnmag command at {script}: install the package (pip install -e .)")
    return [str(script)]


def run_once(extra: list[str]) -> dict[str, float]:
    """Seconds of each stage the command reports, and ``total`` (wall clock) of one run."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        start = time.perf_counter()
        done = subprocess.run(
            [*attnmag_command(), "run", "--out", str(out), "--force", *extra],
            capture_output=True,
            text=True,
        )
        total = time.perf_counter() - start
        shutil.rmtree(out, ignore_errors=True)
    if done.returncode:
        raise RuntimeError(f"attnmag run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE.finditer(done.stderr)}
    return {**stages, "total": total}


def summarise(runs: list[dict[str, float]]) -> str:
    """Median seconds per stage (in the order first reported) and their share of the total."""
    total = statistics.median(r["total"] for r in runs)
    stages = [s for s in runs[0] if s != "total"]
    medians = {s: statistics.median(r.get(s, 0.0) for r in runs) for s in stages}
    medians["other"] = max(total - sum(medians.values()), 0.0) if stages else total
    rows = [
        {
            "stage": stage,
            "median s": f"{seconds:.1f}",
            "share of total": f"{seconds / total:.3f}",
            "runs s": " ".join(f"{r.get(stage, float('nan')):.1f}" for r in runs)
            if stage != "other"
            else "-",
        }
        for stage, seconds in medians.items()
    ]
    rows.append(
        {
            "stage": "total",
            "median s": f"{total:.1f}",
            "share of total": "1.000",
            "runs s": " ".join(f"{r['total']:.1f}" for r in runs),
        }
    )
    return table(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs (default 3)")
    parser.add_argument("extra", nargs="*", help="after --: more `attnmag run` options")
    args = parser.parse_args(argv)
    command = " ".join([*attnmag_command(), "run", "--out", "<tmp>", "--force", *args.extra])
    runs = []
    for repeat in range(args.repeats):
        runs.append(run_once(args.extra))
        print(f"  run {repeat + 1}: {runs[-1]}", flush=True)
    print(f"\n{command}: {args.repeats} repeats\n{summarise(runs)}")


if __name__ == "__main__":
    main()
