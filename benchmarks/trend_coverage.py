"""Coverage of the position trend's 95% intervals, by simulation, at the tests' seeds and
pooled over more seeds.

Runs ``coverage`` of ``tests/test_models_trend_coverage.py`` for each of its scenarios (CR1,
``cov_type="cluster"``, 40 texts, positions 1-10; the scenarios and their simulation counts
are that module's ``SCENARIOS``) at the seed the tests use and at ``--repeats`` more seeds,
and prints the share of intervals that hold the true value at the tests' seed and pooled
over all seeds. ``--results FILE`` also writes the table to a Markdown file
(``docs/results/trend_coverage.md``, included by the validation page).

Usage::

    python -m benchmarks.trend_coverage                         # the tests' seeds alone
    python -m benchmarks.trend_coverage --repeats 5 --results docs/results/trend_coverage.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import table, write_results
from tests.test_models_trend_coverage import SCENARIOS, coverage


def rows(repeats: int) -> list[dict]:
    """Per scenario, method and term: the coverage at the tests' seed and pooled over
    ``repeats`` more seeds."""
    out = []
    for scenario, (n, seed, _, _) in SCENARIOS.items():
        seeds = [seed, *range(100 + seed, 100 + seed + repeats)]
        runs = [coverage(scenario, seed=s) for s in seeds]
        for method, shares in runs[0].items():
            for term in shares:
                values = [run[method][term] for run in runs]
                out.append(
                    {
                        "scenario": scenario,
                        "method": f"`{method}`",
                        "term": term,
                        "simulations": n,
                        "at the test's seed": f"{values[0]:.3f}",
                        "seeds": len(seeds),
                        "pooled": f"{sum(values) / len(values):.3f}",
                    }
                )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=0, help="more seeds (default 0)")
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    found = rows(args.repeats)
    print(table(found))
    if args.results:
        write_results(args.results, "python -m benchmarks.trend_coverage", argv, found)


if __name__ == "__main__":
    main()
