"""attnmag's mixed fits against R's lme4: REML reached, per fit.

Run from the repository root (R with lme4 on the PATH)::

    .venv/bin/python -m benchmarks.reml                        # the bimodal lag design, 12 seeds
    .venv/bin/python -m benchmarks.reml --frame out/norms.parquet   # every layer of a frame

Without ``--frame``: 300 simulated sequences of 5-35 tokens per seed, ``log_norm = 1 + u_s
- 0.02 * position + e`` (u_s ~ N(0, 0.3^2), e ~ N(0, 0.2^2), position 0 shifted by +3), the
lag model ``log_norm ~ lag1 + lag2 + (1 | sequence)`` on positions >= 3. With ``--frame``:
the position trend with a random intercept, and with a random slope, on positions 1-30 of
every layer. The table gives attnmag's and lme4's REML and their difference.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from attnmag import extract
from tests.mixed_direct import fit_mixed
from tests.simulate import simulated_frame

R_CODE = r"""
suppressMessages(library(lme4))
a <- commandArgs(TRUE); d <- read.csv(a[1]); cases <- read.csv(a[2]); out <- NULL
for (i in seq_len(nrow(cases))) {
  x <- d[d$part == cases$part[i], ]
  fit <- lmer(as.formula(cases$formula[i]), x, REML = TRUE)
  out <- rbind(out, data.frame(part = cases$part[i], slope = cases$slope[i],
                               reml_lme4 = as.numeric(logLik(fit)),
                               singular_lme4 = isSingular(fit)))
}
write.csv(out, a[3], row.names = FALSE)
"""


def _parts(frame_path: str | None, seeds: int) -> list[tuple[int, pd.DataFrame, str, bool]]:
    """(part, rows, fixed-effects formula, random slope) for every fit to run."""
    if frame_path is None:
        parts = []
        for seed in range(seeds):
            frame = simulated_frame(300, 1, length=(5, 35), sink=3.0, sd_sequence=0.3, seed=seed)
            parts.append((seed, frame[frame.position >= 3], "log_norm ~ lag1 + lag2", False))
        return parts
    frame = extract.read_frame(frame_path).query("1 <= position <= 30")
    return [
        (int(layer), rows, "log_norm ~ position", slope)
        for slope in (False, True)
        for layer, rows in frame.groupby("layer")
    ]


def main() -> None:
    """Fit every part with attnmag and lme4; print the REML of each and the difference."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reml", description=__doc__)
    parser.add_argument("--frame", help="a frame (Parquet file or shard folder)")
    parser.add_argument("--seeds", type=int, default=12)
    args = parser.parse_args()
    rows, cases, data = [], [], []
    for part, part_rows, formula, slope in _parts(args.frame, args.seeds):
        fit = fit_mixed(part_rows, formula, random_slope=slope, cov_type="model")
        rows.append((part, slope, fit.stats["loglik"], fit.stats["boundary"]))
        key = part + (10**6 if slope else 0)
        re = "(position | sequence)" if slope else "(1 | sequence)"
        cases.append((key, f"{formula} + {re}", slope))
        if not slope:
            data.append(
                part_rows.assign(part=part)[
                    ["part", "sequence", "position", "log_norm"]
                    + [c for c in ("lag1", "lag2") if c in formula]
                ]
            )
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        both = pd.concat(data)
        pd.concat([both, both.assign(part=both.part + 10**6)]).to_csv(
            folder / "d.csv", index=False, float_format="%.17g"
        )
        pd.DataFrame(cases, columns=["part", "formula", "slope"]).to_csv(
            folder / "c.csv", index=False
        )
        (folder / "fit.R").write_text(R_CODE)
        subprocess.run(
            ["Rscript", folder / "fit.R", folder / "d.csv", folder / "c.csv", folder / "r.csv"],
            check=True,
        )
        r = pd.read_csv(folder / "r.csv")
    r["part"] = r.part % 10**6
    table = pd.DataFrame(rows, columns=["part", "slope", "reml", "boundary"]).merge(
        r, on=["part", "slope"]
    )
    table["attnmag_minus_lme4"] = table.reml - table.reml_lme4
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
