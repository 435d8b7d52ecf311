"""Benchmark: kill ``attnmag run --force`` at random points; the output must stay whole.

Builds a tiny random GPT-2 (the real GPT-2 tokenizer) and a csv corpus, writes a first
output (with a ballast folder of many small files, listed in its marker, so that deleting
the old output takes a while), then runs ``attnmag run --force`` on it again and again, each
time killed with SIGKILL or SIGINT at a random instant of one phase: loading, extraction,
fitting, the report, or the swap (from the report's stage line to the exit: two renames and
the old output's deletion). The phases take turns; the instant is uniform over that phase's length
in an uninterrupted run (the table also says where the signal landed, since runs vary in
speed). After each kill the output folder must be the old output, byte for
byte, or a complete new one. A last uninterrupted run must remove every leftover.

It then times ``weights_fingerprint``, which a shard folder's ``run.json`` records, against
``hashlib.sha256`` over the same weights' bytes alone, on a model of ``--fingerprint-shape``
(``large``: gpt2-large's, 774M parameters, 3.1 GB in float32; ``small``: a tiny one), with
random weights; ``--fingerprint-repeats 0`` skips it. ``--results FILE`` also writes both
tables to a Markdown file (``docs/results/kills.md``, included by the safety page).

Usage::

    python -m benchmarks.kills                      # 24 kills
    python -m benchmarks.kills --kills 40 --seed 1 --ballast 10000
    python -m benchmarks.kills --results docs/results/kills.md
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from attnmag.outputs import mark
from benchmarks.common import gpt2_tokenizer, markdown_table, table, write_results
from benchmarks.end_to_end import attnmag_command

PHASES = ("load", "extract", "fit", "report", "swap")
# The start of the stage line that ends each phase (the swap ends with the process); load and
# extract lines name the model ("load gpt2: 1.2 s, 64 texts").
ENDS = {"load": "load ", "extract": "extract ", "fit": "fit:", "report": "report:"}
NEW_FILES = ("index.html", "report.md", "norms.parquet", "position_trend.csv", "lag_effects.csv")
#: The fingerprinted models' GPT2Config options: gpt2-large's shape, and a tiny one.
FINGERPRINT_SHAPES = {
    "large": {"n_embd": 1280, "n_layer": 36, "n_head": 20},
    "small": {"n_embd": 64, "n_layer": 2, "n_head": 2},
}


def setup(folder: Path, *, texts: int) -> list[str]:
    """A tiny model folder and a csv corpus under ``folder``; the ``run`` options using them."""
    import pandas as pd
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=3, n_head=4)
    )
    model.save_pretrained(folder / "model")
    gpt2_tokenizer().save_pretrained(folder / "model")
    rows = [f"Review {i}: " + "rather good, " * (i % 9) + "the end." for i in range(texts)]
    pd.DataFrame({"text": rows}).to_csv(folder / "corpus.csv", index=False)
    return [
        "run",
        "--model",
        str(folder / "model"),
        "--dataset",
        str(folder / "corpus.csv"),
        "--methods",
        "aggregate,ols,mixed",
        "--lag-methods",
        "ols",
        "--n-jobs",
        "1",
        "--force",
    ]


def tree_digest(folder: Path) -> str:
    """A hash of every file's relative path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def is_complete_new(out: Path) -> bool:
    """Whether ``out`` is a whole output of the interrupted run (marker, report, frame,
    tables; no ballast of the old one)."""
    from attnmag import extract
    from attnmag.outputs import MARKER

    if not all((out / name).is_file() for name in (MARKER, *NEW_FILES)):
        return False
    if (out / "ballast").exists():
        return False
    return len(extract.read_frame(out / "norms.parquet")) > 0


def start(command: list[str]) -> tuple[subprocess.Popen, float]:
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    return process, time.monotonic()


def phase_times(command: list[str]) -> dict[str, tuple[float, float]]:
    """Each phase's (start, end) in seconds from the launch, in one uninterrupted run."""
    process, began = start(command)
    seen: dict[str, float] = {}
    for line in process.stderr:
        for phase, prefix in ENDS.items():
            if line.startswith(prefix):
                seen[phase] = time.monotonic() - began
    if process.wait():
        raise SystemExit("the uninterrupted run failed")
    seen["swap"] = time.monotonic() - began
    bounds, previous = {}, 0.0
    for phase in PHASES:
        bounds[phase] = (previous, seen[phase])
        previous = seen[phase]
    return bounds


def kill_once(
    command: list[str], out: Path, phase: str, delay: float, signum: int
) -> tuple[int, str]:
    """Run ``command``; ``delay`` seconds after ``phase`` begins (its previous stage line),
    send ``signum``. Return the exit status and where the run was when the signal came
    (from its stage lines and, after the report, the folders beside ``out``)."""
    process, _ = start(command)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    previous = PHASES[PHASES.index(phase) - 1] if phase != "load" else None
    while previous is not None and process.poll() is None:
        if any(line.startswith(ENDS[previous]) for line in lines):
            break
        time.sleep(0.005)
    time.sleep(delay)
    seen = [p for p in ENDS if any(line.startswith(ENDS[p]) for line in list(lines))]
    where = PHASES[len(seen)] if process.poll() is None else "finished first"
    if where == "swap":
        deleting = list(out.parent.glob(f".{out.name}.deleting-*"))
        where = "swap: deleting the old" if deleting else "swap"
    if process.poll() is None:
        process.send_signal(signum)
    process.wait()
    reader.join()
    return process.returncode, where


def leftovers(out: Path) -> list[str]:
    """Hidden siblings of ``out`` that a run left (partial, trash, deleting folders, locks)."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def fingerprint_times(shape: str, repeats: int) -> list[dict]:
    """Seconds of ``weights_fingerprint`` and of ``hashlib.sha256`` over the same bytes alone,
    interleaved, ``repeats`` times each, on a random ``GPT2Model`` of ``shape``."""
    import torch
    from transformers import GPT2Config, GPT2Model

    from attnmag.extract.shards import weights_fingerprint

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(**FINGERPRINT_SHAPES[shape]))
    tensors = [p.detach().reshape(-1).contiguous().view(torch.uint8) for p in model.parameters()]
    size = sum(t.numel() for t in tensors)

    def sha256_alone() -> None:
        digest = hashlib.sha256()
        for tensor in tensors:
            digest.update(tensor.numpy().data)

    seconds: dict[str, list[float]] = {"weights_fingerprint": [], "hashlib.sha256 alone": []}
    for _ in range(repeats):
        for name, call in (
            ("weights_fingerprint", lambda: weights_fingerprint(model)),
            ("hashlib.sha256 alone", sha256_alone),
        ):
            began = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - began)
    options = ", ".join(f"{key}={value}" for key, value in FINGERPRINT_SHAPES[shape].items())
    parameters = sum(p.numel() for p in model.parameters())
    rows = []
    for name, runs in seconds.items():
        median = sorted(runs)[len(runs) // 2]
        rows.append(
            {
                "model": f"GPT2Model({options})",
                "parameters": f"{parameters:,}",
                "GB": f"{size / 1e9:.2f}",
                "hash": name,
                "median s": f"{median:.2f}",
                "GB/s": f"{size / 1e9 / median:.2f}",
                "runs s": " ".join(f"{r:.2f}" for r in runs),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=24, help="number of kills (default: 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--ballast", type=int, default=5000, help="small files in the old output (default: 5000)"
    )
    parser.add_argument("--texts", type=int, default=64, help="corpus size (default: 64)")
    parser.add_argument("--fingerprint-shape", choices=FINGERPRINT_SHAPES, default="large")
    parser.add_argument("--fingerprint-repeats", type=int, default=3, help="0 skips it")
    parser.add_argument("--results", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    # A command started in the background by a shell ignores SIGINT, and its children inherit
    # that; with a handler here, each run starts with SIGINT's default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    chooser = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        out, pristine = folder / "out", folder / "pristine"
        command = [*attnmag_command(), *setup(folder, texts=args.texts), "--out", str(out)]
        subprocess.run(command, check=True, capture_output=True)
        (out / "ballast").mkdir()
        for i in range(args.ballast):
            (out / "ballast" / f"{i:06d}.txt").write_text(f"old file {i}\n")
        mark(out, "run")  # --force replaces only what the marker lists: the ballast too
        shutil.copytree(out, pristine, symlinks=True)
        old = tree_digest(pristine)
        bounds = phase_times(command)
        shutil.rmtree(out)
        shutil.copytree(pristine, out, symlinks=True)
        rows = []
        for i in range(args.kills):
            phase = PHASES[i % len(PHASES)]
            low, high = bounds[phase]
            delay = chooser.uniform(0, high - low)
            signum = (signal.SIGKILL, signal.SIGINT)[chooser.randrange(2)]
            status, where = kill_once(command, out, phase, delay, signum)
            if not out.exists():
                state = "MISSING"
            elif tree_digest(out) == old:
                state = "old, byte-identical"
            elif is_complete_new(out):
                state = "new, complete"
            else:
                state = "BROKEN"
            rows.append(
                {
                    "kill": i + 1,
                    "signal": signal.Signals(signum).name,
                    "aimed at": phase,
                    "after s": f"{delay:.2f}",
                    "landed in": where,
                    "exit": status,
                    "output": state,
                    "leftovers": len(leftovers(out)),
                }
            )
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            if state != "old, byte-identical":
                if out.exists():
                    shutil.rmtree(out)
                shutil.copytree(pristine, out, symlinks=True)
        subprocess.run(command, check=True, capture_output=True)
        left = leftovers(out)
        print()
        print(table(rows))
        whole = sum(r["output"] in ("old, byte-identical", "new, complete") for r in rows)
        summary = (
            f"{len(rows)} kills ({sum(r['landed in'] != 'finished first' for r in rows)} "
            "while running): "
            f"{whole} left the old output byte-identical or the new one complete; "
            f"{len(left)} leftovers after the next run{': ' + ', '.join(left) if left else ''}"
        )
        print(f"\n{summary}")
    notes = [summary]
    if args.fingerprint_repeats:
        fingerprints = fingerprint_times(args.fingerprint_shape, args.fingerprint_repeats)
        print(f"\n{table(fingerprints)}")
        notes += [
            "",
            "The weights' fingerprint against sha256 alone:",
            "",
            markdown_table(fingerprints),
        ]
    if args.results:
        write_results(args.results, "python -m benchmarks.kills", argv, rows, notes)
    if whole < len(rows) or left:
        sys.exit(1)


if __name__ == "__main__":
    main()
