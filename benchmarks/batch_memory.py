"""Peak resident memory of extracting long texts under a token budget.

Measures, in this process, how much the resident set grows while ``extract.attention_norms``
runs over bundled long texts (``bundled-long:LENGTH``) cut to ``LENGTH`` tokens with batches of
at most ``BUDGET`` padded tokens: memory per batch should follow the budget, not the texts'
length. Run one budget per fresh process, since the peak never falls.

Usage::

    python -m benchmarks.batch_memory --budget 1024 --texts 4 --length 1024
    python -m benchmarks.batch_memory --budget 1024 --texts 16 --length 256
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

MIB = 1024  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, required=True, help="padded tokens per batch")
    parser.add_argument("--texts", type=int, required=True, help="bundled long texts")
    parser.add_argument("--length", type=int, required=True, help="tokens kept per text")
    args = parser.parse_args(argv)
    from attnmag import extract

    model, tokenizer = extract.load_model()
    texts = extract.load_corpus(f"bundled-long:{args.length}", limit=args.texts)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB
    start = time.perf_counter()
    frame = extract.attention_norms(
        model,
        tokenizer,
        texts,
        max_length=args.length,
        max_tokens=args.budget,
        progress=False,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB
    print(
        f"budget {args.budget} texts {args.texts} length {args.length}: resident set before "
        f"{before:.0f} MiB, peak {peak:.0f} MiB, rise {peak - before:.0f} MiB; {seconds:.1f} s, "
        f"{len(frame):,} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
