"""What tracks the magnitude on the bundled model: the token columns' coefficients per layer
and the first token's weight against its share of the update, as the report computes them.

Measures ``--limit`` bundled snippets with the bundled SmolLM2-135M (every layer, the token
columns ``surprisal``, ``log_frequency``, ``word_start`` and ``punct``, and ``sink=True``),
fits the report's formula per layer (``reports.tracks.tracks_table``: OLS, CR1 by text, Holm
across layers, positions 1-30) and takes the sink's means per layer
(``reports.tracks.sink_means``). It prints, per covariate, in how many layers its coefficient
is significantly positive or negative, its median, smallest and largest coefficient over
layers; and, per layer, the first token's mean weight and mean share of the update, with
their correlation across layers. ``--results FILE`` writes both tables to a Markdown file
(``docs/results/tracks.md``, included by the tracks page); ``--figure FILE`` saves the
report's figure of the section (``reports.tracks.plot_tracks``).

Usage::

    python -m benchmarks.tracks --limit 8                      # a quick look
    python -m benchmarks.tracks --limit 300 --results docs/results/tracks.md \\
        --figure docs/tracks-smollm2.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.common import markdown_table, table, write_results

COLUMNS = ("surprisal", "log_frequency", "word_start", "punct")
FIRST_POSITION, MAX_POSITION = 1, 30


def measure(limit: int) -> pd.DataFrame:
    """The frame of ``limit`` bundled snippets on the bundled model, with the token and sink
    columns."""
    from attnmag import extract

    model, tokenizer = extract.load_model()
    texts = extract.load_corpus(limit=limit)
    return extract.attention_norms(
        model, tokenizer, texts, token_columns=COLUMNS, sink=True, progress=False
    )


def covariate_rows(tidy: pd.DataFrame, alpha: float) -> list[dict]:
    """Per covariate of ``tracks_table``'s ``tidy``: layers significantly up and down (Holm
    at ``alpha``), and the median, smallest and largest coefficient with their layers."""
    from attnmag.reports.tracks import WORDS

    rows = []
    for term, _ in WORDS.values():
        part = tidy[tidy["term"] == term]
        if part.empty:
            continue
        significant = part["p_adjusted"] < alpha
        low, high = part.loc[part["estimate"].idxmin()], part.loc[part["estimate"].idxmax()]
        rows.append(
            {
                "term": term,
                "layers": len(part),
                "significantly up": int((significant & (part["estimate"] > 0)).sum()),
                "significantly down": int((significant & (part["estimate"] < 0)).sum()),
                "median": f"{part['estimate'].median():.3f}",
                "smallest (layer)": f"{low['estimate']:.3f} ({int(low['layer'])})",
                "largest (layer)": f"{high['estimate']:.3f} ({int(high['layer'])})",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=300, help="bundled snippets (default 300)")
    parser.add_argument("--results", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--figure", type=Path, help="save the section's figure to this PNG")
    args = parser.parse_args(argv)

    from attnmag.reports.summaries import ALPHA
    from attnmag.reports.tracks import plot_tracks, sink_means, tracks_table

    frame = measure(args.limit)
    positions = {"first_position": FIRST_POSITION, "max_position": MAX_POSITION}
    tidy = tracks_table(frame, {}, **positions)
    sink = sink_means(frame, {}, **positions)
    rows = covariate_rows(tidy, ALPHA)
    layers = [
        {
            "layer": int(row.layer),
            "sink weight": f"{row.sink_weight:.2f}",
            "sink share": f"{row.sink_share:.2f}",
            "share - weight": f"{row.sink_share - row.sink_weight:+.2f}",
        }
        for row in sink.itertuples()
    ]
    at_least = ", ".join(str(layer) for layer in sink.layer[sink.sink_share >= sink.sink_weight])
    surprisal = frame.loc[frame["layer"] == frame["layer"].min(), "surprisal"].median()
    notes = [
        f"{args.limit} bundled snippets, {frame['sequence'].nunique()} texts, "
        f"{len(frame) // frame['layer'].nunique():,} tokens, {frame['layer'].nunique()} layers "
        f"({len(frame):,} rows); positions {FIRST_POSITION} to {MAX_POSITION}; "
        f"Holm's correction across layers at {ALPHA:g}; median surprisal {surprisal:.2f} nats.",
        "",
        "The first token's mean attention weight and mean share of the update "
        f"(`sink_norm / norm`) per layer; correlation across layers "
        f"{sink['sink_weight'].corr(sink['sink_share']):.2f}; the share is at least the "
        f"weight in layers {at_least or 'none'}:",
        "",
        markdown_table(layers),
    ]
    print(f"{table(rows)}\n\n{table(layers)}\n\n{notes[0]}\n{notes[2]}")
    if args.results:
        write_results(args.results, "python -m benchmarks.tracks", argv, rows, notes)
    if args.figure:
        plot_tracks(tidy, sink).savefig(args.figure, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
