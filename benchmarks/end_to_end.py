"""Benchmark: ``attnmag run`` on the bundled defaults (or on long texts), seconds per stage.

Runs the command line (``attnmag run --out <tmp> --force``) in a fresh process per repeat,
reads the stage lines it prints (``extract: 12.3 s, …``; with the model's name where the
command gives one, ``extract SmolLM2-135M-Instruct: 12.3 s, …``), and prints the median
seconds of each stage, its share of the whole run, and the whole run's wall-clock time (the
baseline of the shares; what no stage line covers is shown as ``other``: start-up, imports,
writing). Each run's own ratios, the whole run and the fit stage over its extraction
(``extract`` stages summed), are given with their medians: taken within one run, they hold
up better than seconds on a machine that others share. The 1-minute load average before
and after each run is printed beside it.

``--long`` runs the long-context case instead: ``--dataset bundled-long:1024`` (bundled
snippets concatenated into texts of at most 1,024 words, about 1,300 tokens of SmolLM2's
tokenizer), ``--limit 8`` texts and ``--max-position 1024``, plus ``--max-length 1024``
where the command offers that option.

Usage::

    python -m benchmarks.end_to_end                    # bundled defaults, 3 repeats
    python -m benchmarks.end_to_end --long --repeats 1 # 8 long texts, positions to 1,024
    python -m benchmarks.end_to_end --repeats 1 -- --limit 256 --format html
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import table

STAGE = re.compile(r"^(?P<stage>[a-z][^:\n]*?): (?P<seconds>\d+(?:\.\d+)?) s\b", re.MULTILINE)
#: The long-context case: texts of at most this many words, this many of them.
LONG_WORDS = 1024
LONG_TEXTS = 8
#: The ratios each run reports: (name, numerator stage) over its extraction.
RATIOS = (("run / extract", "total"), ("fit / extract", "fit"))


def attnmag_command() -> list[str]:
    """The ``attnmag`` console script beside this Python."""
    script = Path(sys.executable).with_name("attnmag")
    if not script.is_file():
        raise SystemExit(f"no attnmag command at {script}: install the package (pip install -e .)")
    return [str(script)]


def long_options() -> list[str]:
    """``attnmag run``'s options of the long-context case (``--max-length`` where offered)."""
    options = [
        "--dataset",
        f"bundled-long:{LONG_WORDS}",
        "--limit",
        str(LONG_TEXTS),
        "--max-position",
        str(LONG_WORDS),
    ]
    usage = subprocess.run(
        [*attnmag_command(), "run", "--help"], capture_output=True, text=True
    ).stdout
    return options + (["--max-length", str(LONG_WORDS)] if "--max-length" in usage else [])


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


def ratios(run: dict[str, float]) -> dict[str, float]:
    """The run's whole time and fit stage over its extraction (its ``extract`` stages)."""
    extract = sum(s for stage, s in run.items() if stage.split()[0] == "extract")
    if not extract:
        return {}
    return {name: run[stage] / extract for name, stage in RATIOS if stage in run}


def summarise(runs: list[dict[str, float]]) -> str:
    """Median seconds per stage (in the order first reported) and their share of the total,
    then the median of each run's ratios."""
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
    each = [ratios(r) for r in runs]
    lines = [
        f"{name}: median {statistics.median(e[name] for e in each):.3f} "
        f"(runs {' '.join(f'{e[name]:.3f}' for e in each)})"
        for name, _ in RATIOS
        if all(name in e for e in each)
    ]
    return "\n".join([table(rows), *lines])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs (default 3)")
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"the long-context case: {LONG_TEXTS} bundled long texts, positions to {LONG_WORDS}",
    )
    parser.add_argument("extra", nargs="*", help="after --: more `attnmag run` options")
    args = parser.parse_args(argv)
    extra = (long_options() if args.long else []) + args.extra
    command = " ".join([*attnmag_command(), "run", "--out", "<tmp>", "--force", *extra])
    runs = []
    for repeat in range(args.repeats):
        before = os.getloadavg()[0]
        runs.append(run_once(extra))
        after = os.getloadavg()[0]
        seconds = ", ".join(f"{stage} {s:.1f} s" for stage, s in runs[-1].items())
        shares = ", ".join(f"{name} {value:.3f}" for name, value in ratios(runs[-1]).items())
        print(
            f"  run {repeat + 1}: {seconds}; {shares} (load average {before:.2f} -> {after:.2f})",
            flush=True,
        )
    print(f"\n{command}: {args.repeats} repeats\n{summarise(runs)}")


if __name__ == "__main__":
    main()
