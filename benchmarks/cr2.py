"""Coverage of the trend fits' intervals by number of texts: CR1 (t on G - 1) against CR2
(Bell-McCaffrey df), the study behind ``models.cr2.CR2_BELOW``.

Run from the repository root::

    .venv/bin/python -m benchmarks.cr2                       # 2,000 replicates per size
    .venv/bin/python -m benchmarks.cr2 --replicates 500      # quicker

Each replicate is a data set of ``tests.simulate.simulated_trends`` (``SERIAL_TRENDS``):
G texts of 8 to 31 tokens (positions 1-30 fitted), a text level with sd 0.4 and a text
slope with sd 0.005, a residual sd of 0.15 that differs across texts (log-sd spread 0.4),
AR(1) errors (0.5) within each text started 50 steps before its first token, a trend of
-0.02 and a sink at position 0. ``position_trend``'s ``ols`` and ``mixed`` fit each with
``cov_type="cluster"`` and ``"cr2"``; the table gives the coverage of the 95% intervals of
both terms, with the Monte Carlo standard error of a coverage of 95% (sqrt(0.95 * 0.05 /
replicates)), and writes it to ``docs/results/cr2_coverage.csv``, with the slope's table
that the documentation shows (``slope_table``) in ``docs/results/cr2_slope.csv``.
``--table-only`` writes that table again from the results file, without simulating.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from attnmag import models
from tests.simulate import SERIAL_TRENDS, simulated_trends

TRUTH = {"Intercept": SERIAL_TRENDS["intercept"], "position": SERIAL_TRENDS["slope"]}
SIZES = (10, 15, 20, 30, 40, 50, 75, 100)
RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "cr2_coverage.csv"
SLOPE = RESULTS.with_name("cr2_slope.csv")


def coverage(n_sequences: int, replicates: int, seed: int) -> list[dict[str, object]]:
    """The coverage of each method, cov_type and term at ``n_sequences`` texts."""
    frame = simulated_trends(replicates, n_sequences=n_sequences, seed=seed, **SERIAL_TRENDS)
    rows = []
    for method in ("ols", "mixed"):
        for cov_type in ("cluster", "cr2"):
            fits = models.position_trend(frame, method=method, cov_type=cov_type, n_jobs=1)
            table = fits.tidy
            for term, truth in TRUTH.items():
                part = table[table.term == term]
                held = (part.conf_low <= truth) & (truth <= part.conf_high)
                rows.append(
                    {
                        "texts": n_sequences,
                        "method": method,
                        "cov_type": cov_type,
                        "term": term,
                        "coverage": float(held.mean()),
                        "median_df": float(part.df.median()),
                        "replicates": replicates,
                    }
                )
    return rows


def slope_table(results: pd.DataFrame) -> pd.DataFrame:
    """The slope's coverage by size, method and errors (CR1 is ``cov_type="cluster"``), and
    the median df of ``ols``' CR2, formatted as the documentation shows them."""
    slope = results[results["term"] == "position"].set_index(["method", "cov_type", "texts"])
    slope = slope.sort_index()
    table = {"texts": slope.loc[("ols", "cr2")].index}
    for method in ("ols", "mixed"):
        for cov_type, name in (("cluster", "CR1"), ("cr2", "CR2")):
            values = slope.loc[(method, cov_type), "coverage"]
            table[f"`{method}` {name}"] = [f"{value:.3f}" for value in values]
    table["median df of CR2 (`ols`)"] = [f"{v:.1f}" for v in slope.loc[("ols", "cr2"), "median_df"]]
    return pd.DataFrame(table)


def main() -> None:
    """Run every size, print the table as Markdown and write the results file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cr2", description=__doc__)
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--table-only", action="store_true", help="write the slope's table from the results file"
    )
    arguments = parser.parse_args()
    if arguments.table_only:
        slope_table(pd.read_csv(RESULTS)).to_csv(SLOPE, index=False)
        return
    rows = [
        row
        for seed, size in enumerate(arguments.sizes)
        for row in coverage(size, arguments.replicates, seed)
    ]
    results = pd.DataFrame(rows)
    RESULTS.parent.mkdir(exist_ok=True)
    results.to_csv(RESULTS, index=False)
    slope_table(results).to_csv(SLOPE, index=False)
    wide = results.pivot_table(
        index="texts", columns=["method", "term", "cov_type"], values="coverage"
    )
    wide.columns = [" ".join(column) for column in wide.columns]
    error = np.sqrt(0.95 * 0.05 / arguments.replicates)
    print(f"coverage of 95% intervals; Monte Carlo se at 95%: {error:.4f}")
    print(wide.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
