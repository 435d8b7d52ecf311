"""Coverage of the lag intervals of ``initial_conditions`` in a model they were not tuned on.

Run from the repository root (``nice -n 10`` on a shared machine; ``--processes`` fits that
many frames at once, with the same results)::

    .venv/bin/python -m benchmarks.lag_intervals                      # writes the results file
    .venv/bin/python -m benchmarks.lag_intervals --sizes 20 --replicates 200 --out -  # a quick look

Each replicate is a data set of ``tests/simulate_burn_in.py``: texts of 8-40 tokens, a text
effect of sd 0.3 against a residual sd of 0.2, an AR(2) (lag-1 0.4, lag-2 0.1) already
running when the text starts (a burn-in of 50 steps), a position trend of -0.01 and a sink
jump at position 0. For 20, 100 and 1,066 texts, the bias of lag1, lag2 and position, the
ratio of the estimates' sd across replicates to the mean standard error (1 where the errors
are right), and the coverage of the 95% intervals with its Monte Carlo standard error
(sqrt(c (1 - c) / replicates)), for:

- ``initial_conditions``: the default, ML with the sandwich over the fixed effects and the
  variance components together, Mancl and DeRouen's bias-corrected scores
  (``models.mixed.stacked_covariance``), t on G - 1 df;
- REML with the fixed effects' CR1 sandwich alone (``models.fit`` of the same formula,
  ``method="mixed"``), for reference;

and the share of replicates where the test of a random lag1 slope (``lag1_slope_p``)
rejects at 5% (its size: every text has the same lag1 here).

The results file, ``docs/results/lag_intervals.csv``, is the table that
``docs/validation.md`` shows.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from attnmag import models
from tests.simulate_burn_in import TRUTH, burn_in_frame

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "lag_intervals.csv"
SIZES = (20, 100, 1066)
FORMULA = "log_norm ~ lag1 + lag2 + position + y1 + y2"


def _arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lag_intervals", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--replicates", type=int, nargs="+", default=[2000, 2000, 1000])
    parser.add_argument("--per-frame", type=int, default=50, help="replicates per frame")
    parser.add_argument("--processes", type=int, default=1, help="frames fitted at once")
    parser.add_argument("--out", default=str(RESULTS), help="results CSV, or - for stdout")
    return parser.parse_args()


def with_initial_conditions(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``y1`` and ``y2``: each text's ``log_norm`` at positions 1 and 2."""
    keys = ["layer", "sequence"]
    starts = frame[frame.position.isin([1, 2])].pivot_table(
        index=keys, columns="position", values="log_norm"
    )
    starts.columns = ["y1", "y2"]
    return frame.merge(starts.reset_index(), on=keys, how="left")


def _fits(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each estimator's rows of lag1, lag2 and position on every layer of ``frame``."""
    tables = {
        "initial_conditions": models.lag_effects(frame, n_jobs=1).tidy,
        "REML, CR1 of the fixed effects alone": models.fit(
            with_initial_conditions(frame), FORMULA, method="mixed", positions=(3, 10_000), n_jobs=1
        ).tidy,
    }
    return {label: table[table.term.isin(list(TRUTH))] for label, table in tables.items()}


def _summary(rows: pd.DataFrame, rejections: float) -> list[dict[str, object]]:
    """Bias, sd/se, coverage and its Monte Carlo error per term of one estimator's rows."""
    out = []
    for term, truth in TRUTH.items():
        part = rows[rows.term == term]
        cover = float(((part.conf_low <= truth) & (truth <= part.conf_high)).mean())
        out.append(
            {
                "term": term,
                "bias": part.estimate.mean() - truth,
                "sd/se": part.estimate.std() / part.std_error.mean(),
                "coverage": cover,
                "mc_se": np.sqrt(cover * (1 - cover) / len(part)),
                "slope_test_rejects": rejections,
            }
        )
    return out


def _frame(size: int, first: int, layers: int) -> tuple[dict[str, pd.DataFrame], list[bool]]:
    """The fits of the frame of ``layers`` data sets from replicate ``first`` on, and whether
    the slope test rejects in each."""
    fits = _fits(burn_in_frame(size, layers, seed=size * 100_000 + first))
    return fits, list(models.glance(fits["initial_conditions"]).lag1_slope_p < 0.05)


def run(size: int, replicates: int, per_frame: int, processes: int = 1) -> pd.DataFrame:
    """The summary rows of every estimator at ``size`` texts over ``replicates`` data sets,
    their frames fitted in ``processes`` processes (the same rows whatever their number)."""
    parts: dict[str, list[pd.DataFrame]] = {}
    rejected = []
    firsts = list(range(0, replicates, per_frame))
    layers = [min(per_frame, replicates - first) for first in firsts]
    with ProcessPoolExecutor(processes) as pool:
        for first, count, (fits, rejects) in zip(
            firsts, layers, pool.map(partial(_frame, size), firsts, layers), strict=True
        ):
            for label, rows in fits.items():
                parts.setdefault(label, []).append(rows)
            rejected.extend(rejects)
            print(f"{size} texts: {first + count} / {replicates}", file=sys.stderr, flush=True)
    rows = []
    for label, tables in parts.items():
        rejections = float(np.mean(rejected)) if label == "initial_conditions" else np.nan
        for row in _summary(pd.concat(tables), rejections):
            rows.append({"texts": size, "replicates": replicates, "estimator": label, **row})
    return pd.DataFrame(rows)


def main() -> None:
    """Run every size and write (or print) the results."""
    args = _arguments()
    counts = args.replicates * len(args.sizes) if len(args.replicates) == 1 else args.replicates
    table = pd.concat(
        [
            run(size, count, args.per_frame, args.processes)
            for size, count in zip(args.sizes, counts, strict=True)
        ]
    )
    text = table.to_csv(index=False, float_format="%.4g")
    if args.out == "-":
        print(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
