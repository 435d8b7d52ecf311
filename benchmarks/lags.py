"""Simulation study of the lag estimators: bias, interval coverage and seconds per fit.

Run from the repository root::

    .venv/bin/python -m benchmarks.lags                            # 200 replicates per scenario
    .venv/bin/python -m benchmarks.lags --replicates 50 --markdown  # a quicker run, as Markdown
    .venv/bin/python -m benchmarks.lags --results docs/results/lags.md  # the validation page's

Each replicate is a data set drawn from the dynamic model of ``tests/simulate_lags.py``:
an AR(2) within texts (lag-1 0.4, lag-2 0.1), a text effect with sd equal to the residual
sd (0.2), a position trend (-0.01), ``--sequences`` texts (1,066 by default) with lengths
like the corpus's (median 23, 4-68). Scenarios vary it:

- ``corpus``: as above;
- ``short_texts``: 25% of the texts only 4-6 tokens long;
- ``t_errors``: Student-t errors (5 df) scaled to the same sd;
- ``sd_varies``: the residual sd differs across texts (log-sd spread 0.5).

Estimators: ``lag_effects``' ``ols`` (pooled), ``initial_conditions`` with cluster-robust
and with model-based errors, ``gmm``; and, for reference, the within (fixed-effects)
estimator with CR1 errors, which Nickell's bias makes too small in short texts.

For each: the bias (mean estimate - truth), the coverage of the 95% intervals, the ratio of
the estimates' standard deviation across replicates to the mean standard error (1 when the
errors are right), the median wall-clock seconds per fit (one layer, one process; the
fits' own ``glance`` seconds) and the CPU seconds per fit (this process's CPU time over a
frame's fits, per layer: the fairer figure on a shared machine). Replicates are the layers
of simulated frames of ``--per-frame`` layers, each frame with its own seed. ``--results
FILE`` also writes the table to a Markdown file (``docs/results/lags.md``, included by the
validation page).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from attnmag import models
from benchmarks.common import write_results
from tests.simulate_lags import dynamic_frame

TRUTH = {"lag1": 0.4, "lag2": 0.1}
SCENARIOS = {
    "corpus": {},
    "short_texts": {"short_share": 0.25},
    "t_errors": {"noise": "t"},
    "sd_varies": {"sd_spread": 0.5},
}
#: (label, lag_effects method, cov_type)
ESTIMATORS = [
    ("ols", "ols", "cluster"),
    ("initial_conditions", "initial_conditions", "cluster"),
    ("initial_conditions (model SEs)", "initial_conditions", "model"),
    ("gmm", "gmm", "cluster"),
]


def _arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lags", description=__doc__)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--sequences", type=int, default=1066)
    parser.add_argument("--per-frame", type=int, default=25, help="replicates per frame")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--no-within", action="store_true", help="skip the within estimator")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    return parser.parse_args()


def within_fit(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-effects OLS of ``log_norm ~ lag1 + lag2 + position``: estimates, CR1 errors.

    The variables are demeaned within texts; the CR1 factor is G/(G-1) * (N-1)/(N-K).
    """
    codes = pd.factorize(rows["sequence"])[0]
    data = rows[["log_norm", "lag1", "lag2", "position"]].to_numpy(np.float64)
    sizes = np.bincount(codes)
    means = np.stack([np.bincount(codes, weights=c) for c in data.T], axis=1) / sizes[:, None]
    demeaned = data - means[codes]
    y, x = demeaned[:, 0], demeaned[:, 1:]
    bread = np.linalg.inv(x.T @ x)
    beta = bread @ x.T @ y
    scores = np.stack(
        [np.bincount(codes, weights=x[:, k] * (y - x @ beta)) for k in range(x.shape[1])], axis=1
    )
    g, n, k = len(sizes), len(y), x.shape[1]
    covariance = bread @ scores.T @ scores @ bread * g / (g - 1) * (n - 1) / (n - k)
    return beta[:2], np.sqrt(np.diag(covariance))[:2]


def _within(frame: pd.DataFrame) -> pd.DataFrame:
    """The within estimator on every layer of ``frame``: the tidy columns the summary needs."""
    rows, seconds = [], []
    cpu = time.process_time()
    for layer, part in frame[frame.position >= 3].groupby("layer"):
        start = time.perf_counter()
        estimate, std_error = within_fit(part)
        seconds.append(time.perf_counter() - start)
        half = stats.t(part.sequence.nunique() - 1).ppf(0.975) * std_error
        for i, term in enumerate(TRUTH):
            rows.append((layer, term, estimate[i], std_error[i], estimate[i] - half[i]))
    table = pd.DataFrame(rows, columns=["layer", "term", "estimate", "std_error", "conf_low"])
    table["conf_high"] = 2 * table.estimate - table.conf_low
    table["seconds"] = np.repeat(seconds, len(TRUTH))
    table["cpu_seconds"] = (time.process_time() - cpu) / len(seconds)
    return table


def _fits(frame: pd.DataFrame, *, within: bool) -> dict[str, pd.DataFrame]:
    """Every estimator's lag1/lag2 rows on every layer of ``frame``, with seconds per fit."""
    out = {}
    for label, method, cov_type in ESTIMATORS:
        cpu = time.process_time()
        table = models.lag_effects(frame, method=method, cov_type=cov_type, n_jobs=1).tidy
        cpu = (time.process_time() - cpu) / frame["layer"].nunique()
        seconds = models.glance(table).set_index("layer")["seconds"]
        table = table[table.term.isin(list(TRUTH))].copy()
        table["seconds"] = table.layer.map(seconds)
        table["cpu_seconds"] = cpu
        out[label] = table
    if within:
        out["within (reference)"] = _within(frame)
    return out


def _summary(label: str, scenario: str, table: pd.DataFrame) -> dict[str, object]:
    """Bias, coverage, sd/se and seconds per fit of one estimator in one scenario."""
    row: dict[str, object] = {"scenario": scenario, "estimator": label}
    for term, truth in TRUTH.items():
        part = table[table.term == term]
        row[f"bias_{term}"] = part.estimate.mean() - truth
        row[f"coverage_{term}"] = ((part.conf_low <= truth) & (truth <= part.conf_high)).mean()
        row[f"sd/se_{term}"] = part.estimate.std() / part.std_error.mean()
    fits = table.drop_duplicates("layer")
    row["s_per_fit"] = fits.seconds.median()
    row["cpu_s_per_fit"] = fits.cpu_seconds.mean()
    row["replicates"] = len(fits)
    return row


def _cells(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as text, numbers to 3 significant digits."""
    return table.map(lambda v: f"{v:.3g}" if isinstance(v, float) else str(v))


def _markdown(table: pd.DataFrame) -> str:
    """``table`` as a Markdown table, numbers to 3 significant digits."""
    lines = [list(table.columns), ["---"] * table.shape[1], *_cells(table).to_numpy().tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    """Run every scenario and print the table."""
    args = _arguments()
    rows = []
    for index, scenario in enumerate(args.scenarios):
        collected: dict[str, list[pd.DataFrame]] = {}
        done = 0
        while done < args.replicates:
            layers = min(args.per_frame, args.replicates - done)
            seed = 1000 * index + done
            frame = dynamic_frame(args.sequences, layers, seed=seed, **SCENARIOS[scenario])
            for label, table in _fits(frame, within=not args.no_within).items():
                collected.setdefault(label, []).append(table.assign(layer=table.layer + done))
            done += layers
        for label, tables in collected.items():
            rows.append(_summary(label, scenario, pd.concat(tables)))
        print(f"done: {scenario} ({args.replicates} replicates)", flush=True)
    table = pd.DataFrame(rows)
    if args.markdown:
        print(_markdown(table))
    else:
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if args.results:
        rows = _cells(table).to_dict("records")
        write_results(args.results, "python -m benchmarks.lags", sys.argv[1:], rows)


if __name__ == "__main__":
    main()
