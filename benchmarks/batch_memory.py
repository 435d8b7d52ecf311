"""Peak resident memory of extracting long texts under a token budget.

Measures how much the resident set grows while ``extract.attention_norms`` runs over
bundled long texts (``bundled-long:LENGTH``) cut to ``LENGTH`` tokens with batches of at most
``BUDGET`` padded tokens: memory per batch should follow the budget, not the texts' length.
Each cell ``BUDGET:TEXTS:LENGTH`` runs in a fresh process (the peak never falls), which loads
the bundled model, then measures; the rise is its peak over its size after the load.

Usage::

    python -m benchmarks.batch_memory                                # the five default cells
    python -m benchmarks.batch_memory --cells 1024:4:1024 1024:16:256
    python -m benchmarks.batch_memory --results docs/results/batch_memory.md   # for the docs
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from benchmarks.common import emit, run_worker, table, write_results

MIB = 1024  # ru_maxrss is in KiB on Linux
#: Budgets of 1,024 to 4,096 tokens, over 4 texts of 1,024 tokens and 16 of 256.
CELLS = ["1024:4:1024", "2048:4:1024", "4096:4:1024", "1024:16:256", "4096:16:256"]


def worker(budget: int, texts: int, length: int) -> None:
    """Load the bundled model, measure one cell, emit its memory, seconds and rows."""
    from attnmag import extract

    model, tokenizer = extract.load_model()
    corpus = extract.load_corpus(f"bundled-long:{length}", limit=texts)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB
    start = time.perf_counter()
    frame = extract.attention_norms(
        model, tokenizer, corpus, max_length=length, max_tokens=budget, progress=False
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB
    emit({"before": before, "peak": peak, "seconds": seconds, "rows": len(frame)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=CELLS, help="BUDGET:TEXTS:LENGTH each")
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return
    rows = []
    for cell in args.cells:
        budget, texts, length = cell.split(":")
        got = run_worker("benchmarks.batch_memory", [budget, texts, length])
        rows.append(
            {
                "budget (padded tokens per batch)": f"{int(budget):,}",
                "texts x tokens": f"{texts} x {int(length):,}",
                "rows": f"{got['rows']:,}",
                "RSS after loading MiB": f"{got['before']:.0f}",
                "peak MiB": f"{got['peak']:.0f}",
                "rise MiB": f"{got['peak'] - got['before']:.0f}",
                "seconds": f"{got['seconds']:.1f}",
            }
        )
        print(table(rows[-1:]), flush=True)
    print(table(rows))
    if args.results:
        write_results(args.results, "python -m benchmarks.batch_memory", argv, rows)


if __name__ == "__main__":
    main()
