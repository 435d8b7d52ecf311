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

Each repeat also runs ``attnmag extract --out <tmp>`` (the extraction alone, into a shard
folder, with those of the options that ``attnmag extract`` takes), right after the run, in a
fresh process: ``run / extract command`` is the run's wall-clock time over that command's.
It pays what any extraction from the command line pays (start-up, importing torch and
transformers, loading the model, writing the rows) and nothing of the fits and the report,
so it says what the fits, the report and their imports add to an extraction.

Each command's CPU seconds (user and system, of the process and its threads) are taken too,
and ``run / extract command, CPU`` is their ratio: on a machine that others share, a
process's CPU seconds vary less than its wall-clock time (the imports that ``run`` does in a
thread while the model measures count in full there, as they do when the cores are busy).
``--results FILE`` also writes the table to a Markdown file (``docs/results/``, included
by the documentation's benchmark pages).

``--long`` runs the long-context case instead: ``--dataset bundled-long:1024`` (bundled
snippets concatenated into texts of at most 1,024 words, about 1,300 tokens of SmolLM2's
tokenizer), ``--limit 8`` texts and ``--max-position 1024``, plus ``--max-length 1024``
where the command offers that option.

Usage::

    python -m benchmarks.end_to_end                    # bundled defaults, 3 repeats
    python -m benchmarks.end_to_end --long --repeats 1 # 8 long texts, positions to 1,024
    python -m benchmarks.end_to_end --repeats 1 -- --limit 256 --format html
    python -m benchmarks.end_to_end --results docs/results/end_to_end.md
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

from benchmarks.common import table, write_results

STAGE = re.compile(r"^(?P<stage>[a-z][^:\n]*?): (?P<seconds>\d+(?:\.\d+)?) s\b", re.MULTILINE)
#: The long-context case: texts of at most this many words, this many of them.
LONG_WORDS = 1024
LONG_TEXTS = 8
#: The ratios each run reports: (name, numerator stage) over its extraction.
RATIOS = (("run / extract", "total"), ("fit / extract", "fit"))
#: The ratio of the whole run to the extraction command's, and that command's stage name.
COMMAND_RATIO = "run / extract command"
COMMAND = "extract command"
#: The CPU seconds of the run and of the extraction command, and their ratio.
CPU_TOTAL = "total CPU"
CPU_COMMAND = "extract command CPU"
CPU_RATIO = "run / extract command, CPU"
#: What ``run_once`` returns besides the stages.
NOT_STAGES = ("total", COMMAND, CPU_TOTAL, CPU_COMMAND)


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


def children_cpu() -> float:
    """CPU seconds (user and system) of this process's finished children so far."""
    times = os.times()
    return times.children_user + times.children_system


def timed_command(words: list[str]) -> tuple[float, float, str]:
    """Wall-clock seconds, CPU seconds and stderr of ``attnmag *words`` (a failure raises)."""
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run([*attnmag_command(), *words], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    cpu = children_cpu() - cpu
    if done.returncode:
        raise RuntimeError(
            f"attnmag {words[0]} failed (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    return seconds, cpu, done.stderr


def extract_options(extra: list[str]) -> list[str]:
    """The options of ``extra`` that ``attnmag extract`` takes, each with its value."""
    usage = subprocess.run(
        [*attnmag_command(), "extract", "--help"], capture_output=True, text=True
    ).stdout
    known = set(re.findall(r"--[a-z][a-z-]*", usage))
    kept, keep = [], False
    for word in extra:
        if word.startswith("--"):
            keep = word.split("=")[0] in known
        if keep:
            kept.append(word)
    return kept


def run_once(extra: list[str]) -> dict[str, float]:
    """Seconds of each stage ``attnmag run`` reports, its ``total`` (wall clock), the wall
    clock of ``attnmag extract`` with the same (extraction) options, and both commands' CPU
    seconds."""
    with tempfile.TemporaryDirectory() as folder:
        total, cpu, stderr = timed_command(["run", "--out", f"{folder}/out", "--force", *extra])
        shutil.rmtree(f"{folder}/out", ignore_errors=True)
        alone, alone_cpu, _ = timed_command(
            ["extract", "--out", f"{folder}/shards", *extract_options(extra)]
        )
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE.finditer(stderr)}
    return {**stages, "total": total, COMMAND: alone, CPU_TOTAL: cpu, CPU_COMMAND: alone_cpu}


def ratios(run: dict[str, float]) -> dict[str, float]:
    """The run's whole time and fit stage over its extraction (its ``extract`` stages), and
    the run over the extraction command, in wall-clock and in CPU seconds."""
    extract = sum(
        s for stage, s in run.items() if stage.split()[0] == "extract" and stage not in NOT_STAGES
    )
    if not extract:
        return {}
    shares = {name: run[stage] / extract for name, stage in RATIOS if stage in run}
    return {
        **shares,
        COMMAND_RATIO: run["total"] / run[COMMAND],
        CPU_RATIO: run[CPU_TOTAL] / run[CPU_COMMAND],
    }


def summarise(runs: list[dict[str, float]]) -> tuple[list[dict], list[str]]:
    """Median seconds per stage (in the order first reported) and their share of the total,
    and the lines of the medians of each run's ratios."""
    total = statistics.median(r["total"] for r in runs)
    stages = [s for s in runs[0] if s not in NOT_STAGES]
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
    alone = f"`attnmag {COMMAND.split()[0]}` alone"
    for stage, key, share in (
        (alone, COMMAND, True),
        ("CPU of the run", CPU_TOTAL, False),
        (f"CPU of {alone}", CPU_COMMAND, False),
    ):
        seconds = statistics.median(r[key] for r in runs)
        rows.append(
            {
                "stage": stage,
                "median s": f"{seconds:.1f}",
                "share of total": f"{seconds / total:.3f}" if share else "-",
                "runs s": " ".join(f"{r[key]:.1f}" for r in runs),
            }
        )
    each = [ratios(r) for r in runs]
    lines = [
        f"{name}: median {statistics.median(e[name] for e in each):.3f} "
        f"(runs {' '.join(f'{e[name]:.3f}' for e in each)})"
        for name in [*(name for name, _ in RATIOS), COMMAND_RATIO, CPU_RATIO]
        if all(name in e for e in each)
    ]
    return rows, lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs (default 3)")
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"the long-context case: {LONG_TEXTS} bundled long texts, positions to {LONG_WORDS}",
    )
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("extra", nargs="*", help="after --: more `attnmag run` options")
    args = parser.parse_args(argv)
    extra = (long_options() if args.long else []) + args.extra
    command = " ".join([*attnmag_command(), "run", "--out", "<tmp>", "--force", *extra])
    runs, loads_seen = [], []
    for repeat in range(args.repeats):
        before = os.getloadavg()[0]
        runs.append(run_once(extra))
        after = os.getloadavg()[0]
        loads_seen += [before, after]
        seconds = ", ".join(f"{stage} {s:.1f} s" for stage, s in runs[-1].items())
        shares = ", ".join(f"{name} {value:.3f}" for name, value in ratios(runs[-1]).items())
        print(
            f"  run {repeat + 1}: {seconds}; {shares} (load average {before:.2f} -> {after:.2f})",
            flush=True,
        )
    rows, lines = summarise(runs)
    print(f"\n{command}: {args.repeats} repeats\n{table(rows)}\n" + "\n".join(lines))
    if args.results:
        loads = ", ".join(f"{load:.1f}" for load in loads_seen)
        write_results(
            args.results,
            "python -m benchmarks.end_to_end",
            argv,
            rows,
            [
                *(f"- {line}" for line in lines),
                f"- load average before and after each run: {loads}",
            ],
        )


if __name__ == "__main__":
    main()
