"""Benchmark: reduced-precision weights (bfloat16, float16) against float32, on the CPU or GPU.

For each dtype, on the same texts and in one process (runs interleaved, order rotated per
repeat): the extraction's median seconds and ratio to float32; the norms' relative error
against float32 (median, 99th percentile, maximum over tokens and layers); and what that
error does to the statistics the report draws: the ``position_trend`` and ``lag_effects``
estimates per layer (cluster-robust OLS), their shift from float32's in units of float32's
standard error (the largest over layers for each term, and the median).

A dtype is fit to stand in for float32 where every shift is a small fraction of a standard
error (say below 0.1: intervals would move by less than a twentieth of their width).

Usage::

    python -m benchmarks.precision                          # bundled SmolLM2, 1,066 texts
    python -m benchmarks.precision --texts 256 --repeats 1 --dtypes float32,bfloat16
    python -m benchmarks.precision --results docs/results/precision.md   # for the docs

``--results FILE`` also writes the three tables to a Markdown file, which the documentation's
benchmark page includes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import MODELS, bundled_or_gpt2, markdown_table, table, warm_up, write_results


def measure(models: dict[str, tuple], texts: list[str], repeats: int) -> tuple[dict, dict]:
    """``({dtype: [seconds, ...]}, {dtype: frame})``, runs interleaved and rotated."""
    from attnmag import extract

    seconds: dict[str, list[float]] = {dtype: [] for dtype in models}
    frames: dict[str, pd.DataFrame] = {}
    order = list(models)
    for repeat in range(repeats):
        shift = repeat % len(order)
        for dtype in order[shift:] + order[:shift]:
            model, tokenizer = models[dtype]
            start = time.perf_counter()
            frames[dtype] = extract.attention_norms(model, tokenizer, texts, progress=False)
            seconds[dtype].append(time.perf_counter() - start)
            print(f"  {dtype} run {repeat + 1}: {seconds[dtype][-1]:.2f} s", flush=True)
    return seconds, frames


def relative_errors(frame: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """``|norm - reference norm| / reference norm`` per row (the frames share their rows)."""
    got = frame["norm"].to_numpy(np.float64)
    expected = reference["norm"].to_numpy(np.float64)
    return np.abs(got - expected) / expected


def fits(frame: pd.DataFrame, max_position: int) -> pd.DataFrame:
    """Position trend and lag effects per layer (cluster-robust OLS), one row per term."""
    from attnmag import models

    trend = models.position_trend(frame, method="ols", max_position=max_position, n_jobs=1).tidy
    lags = models.lag_effects(frame, method="ols", n_jobs=1).tidy
    return pd.concat([trend, lags], ignore_index=True)[
        ["fit", "layer", "term", "estimate", "std_error"]
    ]


def shifts(fitted: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Each estimate's shift from the reference's, in units of the reference's standard error."""
    keys = ["fit", "layer", "term"]
    merged = fitted.merge(reference, on=keys, suffixes=("", "_ref"))
    merged["shift_se"] = (merged["estimate"] - merged["estimate_ref"]) / merged["std_error_ref"]
    return merged


def main(argv: list[str] | None = None) -> None:
    from attnmag import extract

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=1066, help="bundled texts (default 1066)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per dtype (default 3)")
    parser.add_argument("--model", choices=MODELS, default="smollm2")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    parser.add_argument("--max-position", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--results", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtypes = ["float32", *[d for d in args.dtypes.split(",") if d != "float32"]]
    models = {dtype: bundled_or_gpt2(args.model, dtype=dtype) for dtype in dtypes}
    for model, _ in models.values():
        warm_up(model)
    texts = list(extract.load_corpus(limit=args.texts)["text"])
    seconds, frames = measure(models, texts, args.repeats)
    reference = frames["float32"]
    reference_fits = fits(reference, args.max_position)
    speed, accuracy, statistics_rows = [], [], []
    for dtype in dtypes:
        paired = [s / f for s, f in zip(seconds[dtype], seconds["float32"], strict=True)]
        median = statistics.median(seconds[dtype])
        speed.append(
            {
                "dtype": dtype,
                "median s": f"{median:.2f}",
                "tokens/s": f"{reference.attrs['n_tokens'] / median:.0f}",
                "x float32": f"{statistics.median(paired):.3f}",
                "runs s": " ".join(f"{s:.1f}" for s in seconds[dtype]),
            }
        )
        if dtype == "float32":
            continue
        errors = relative_errors(frames[dtype], reference)
        by_layer = pd.Series(errors).groupby(reference["layer"].to_numpy()).median()
        accuracy.append(
            {
                "dtype": dtype,
                "median rel. error": f"{np.median(errors):.2e}",
                "p99 rel. error": f"{np.quantile(errors, 0.99):.2e}",
                "max rel. error": f"{errors.max():.2e}",
                "worst layer median": f"{by_layer.max():.2e} (layer {by_layer.idxmax()})",
            }
        )
        moved = shifts(fits(frames[dtype], args.max_position), reference_fits)
        for (fit, term), group in moved.groupby(["fit", "term"], sort=False):
            worst = group.loc[group["shift_se"].abs().idxmax()]
            statistics_rows.append(
                {
                    "dtype": dtype,
                    "fit": fit,
                    "term": term,
                    "median abs. shift/SE": f"{group['shift_se'].abs().median():.3f}",
                    "max abs. shift/SE": f"{abs(worst['shift_se']):.3f} (layer {worst['layer']})",
                    "float32 estimate there": f"{worst['estimate_ref']:.4g}",
                    "SE there": f"{worst['std_error_ref']:.2g}",
                }
            )
    device = next(models["float32"][0].parameters()).device
    run = (
        f"{args.model} on {device}, {args.threads} threads: {args.texts} texts, "
        f"{reference.attrs['n_tokens']} tokens, {args.repeats} repeats"
    )
    estimates = f"estimates against float32 (OLS, cluster-robust; positions 1-{args.max_position})"
    print(f"\n{run}\n{table(speed)}")
    if accuracy:
        print(f"\nnorms against float32\n{table(accuracy)}")
        print(f"\n{estimates}\n{table(statistics_rows)}")
    if args.results:
        notes = [run + "."]
        if accuracy:
            notes += ["", "Norms against float32:", "", markdown_table(accuracy)]
            notes += [
                "",
                estimates[0].upper() + estimates[1:] + ":",
                "",
                markdown_table(statistics_rows),
            ]
        write_results(args.results, "python -m benchmarks.precision", argv, speed, notes)


if __name__ == "__main__":
    main()
