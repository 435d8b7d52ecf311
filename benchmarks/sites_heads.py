"""Sites and heads of the bundled model: ``attnmag run --heads --sites attn,mlp,resid`` on the
bundled snippets, its stage seconds and, per layer, what the report's heads and sites
sections show.

Runs the command line once (``--limit`` snippets, every layer and method, ``--n-jobs 2``;
more ``attnmag run`` options after ``--``), reads the stage lines it prints (as
``benchmarks.end_to_end`` does), then the output's frame and ``position_trend.csv``. Per
layer: ``attn`` and ``mlp`` relative to ``resid`` at the same token (``exp`` of the mean log
difference, ``reports.summaries.site_ratios``), the smallest and largest of the heads' mean
log norms with their heads, and in how many heads the ``ols`` position slope is
significantly positive or negative (Holm's ``p_adjusted`` across every group of the frame,
below 0.05). ``--results FILE`` writes the table, with the stage seconds, to a Markdown file
(``docs/results/sites_heads.md``, included by the measuring page); ``--figure FILE`` saves
the report's heads figure (``reports.figures.plot_heads`` of the ``ols`` slopes).

Usage::

    python -m benchmarks.sites_heads --limit 64 --results docs/results/sites_heads.md \
        --figure docs/sites-heads.png
    python -m benchmarks.sites_heads --limit 4 -- --layers 0-2 --methods ols --lag-methods ols
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import table, write_results
from benchmarks.end_to_end import STAGE, timed_command

ALPHA = 0.05


def layer_rows(frame: pd.DataFrame, trend: pd.DataFrame) -> list[dict]:
    """Per layer: the sites' ratios to ``resid``, the heads' mean log norms, and the heads
    whose ``ols`` position slope is significant, by sign."""
    from attnmag.reports.summaries import site_ratios

    ratios = site_ratios(frame[frame["head"] == -1])
    heads = frame[(frame["site"] == "attn") & (frame["head"] >= 0) & (frame["position"] >= 1)]
    means = heads.groupby(["layer", "head"], observed=True)["log_norm"].mean()
    slopes = trend[
        (trend["method"] == "ols")
        & (trend["term"] == "position")
        & (trend["site"] == "attn")
        & (trend["head"] >= 0)
    ]
    rows = []
    for layer, cells in means.groupby(level="layer"):
        cells = cells.droplevel("layer")
        ratio = ratios[ratios["layer"] == layer].set_index("site")["mean"]
        slope = slopes[slopes["layer"] == layer]
        significant = slope["p_adjusted"] < ALPHA
        rows.append(
            {
                "layer": int(layer),
                "attn / resid": f"{np.exp(ratio['attn']):.2f}",
                "mlp / resid": f"{np.exp(ratio['mlp']):.2f}",
                "heads' mean log norm: lowest (head)": f"{cells.min():.2f} ({cells.idxmin()})",
                "highest (head)": f"{cells.max():.2f} ({cells.idxmax()})",
                "heads with slope > 0": int((significant & (slope["estimate"] > 0)).sum()),
                "heads with slope < 0": int((significant & (slope["estimate"] < 0)).sum()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=64, help="bundled snippets (default 64)")
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--figure", type=Path, help="save the heads figure to this PNG")
    parser.add_argument("extra", nargs="*", help="after --: more `attnmag run` options")
    args = parser.parse_args(argv)

    from attnmag import extract

    options = ["--heads", "--sites", "attn,mlp,resid", "--limit", str(args.limit)]
    options += ["--n-jobs", "2", *args.extra]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "sites-heads"
        total, stderr = timed_command(["run", *options, "--out", str(out)])
        frame = extract.read_frame(out / "norms.parquet")
        trend = pd.read_csv(out / "position_trend.csv")
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE.finditer(stderr)}
    rows = layer_rows(frame, trend)
    seconds = ", ".join(f"{stage} {value:.1f} s" for stage, value in stages.items())
    groups = trend[(trend["method"] == "ols") & (trend["term"] == "position")]
    notes = [
        f"`attnmag run {' '.join(options)}`: {seconds}; {total:.1f} s in all. "
        f"{frame['sequence'].nunique()} texts; the heads' slopes are significant where Holm's "
        f"p < {ALPHA:g} across all {len(groups)} groups of the frame; "
        f"{sum(r['heads with slope > 0'] for r in rows)} cells positive and "
        f"{sum(r['heads with slope < 0'] for r in rows)} negative in all. "
        "The ratios are the geometric means over tokens at positions 1 and on; their medians "
        f"over layers: attn / resid {np.median([float(r['attn / resid']) for r in rows]):.2f}, "
        f"mlp / resid {np.median([float(r['mlp / resid']) for r in rows]):.2f}.",
    ]
    print(f"{table(rows)}\n\n{notes[0]}")
    if args.results:
        write_results(args.results, "python -m benchmarks.sites_heads", argv, rows, notes)
    if args.figure:
        from attnmag.reports.figures import plot_heads

        figure = plot_heads(frame, trend[trend["method"] == "ols"])
        figure.savefig(args.figure, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
