"""attnmag's mixed fits against R's lme4 and statsmodels' MixedLM: REML reached, per fit.

Run from the repository root (R with lme4 on the PATH)::

    .venv/bin/python -m benchmarks.reml                        # the bimodal lag design, 12 seeds
    .venv/bin/python -m benchmarks.reml --frame out/norms.parquet   # every layer of a frame
    .venv/bin/python -m benchmarks.reml --results docs/results/reml.md   # for the docs
    .venv/bin/python -m benchmarks.reml --frame out/norms.parquet \
        --results docs/results/reml-frame.md   # the bundled run's frame (``make report``)

Without ``--frame``: 300 simulated sequences of 5-35 tokens per seed, ``log_norm = 1 + u_s
- 0.02 * position + e`` (u_s ~ N(0, 0.3^2), e ~ N(0, 0.2^2), position 0 shifted by +3), the
lag model ``log_norm ~ lag1 + lag2 + (1 | sequence)`` on positions >= 3. With ``--frame``:
the position trend with a random intercept, and with a random slope, on positions 1-30 of
every layer (``part`` is then the layer). The table gives, per fit, attnmag's REML and its
difference from lme4's and from statsmodels' MixedLM (its own optimiser, from its default
start), whether each is on the boundary (zero variance or a singular covariance), and each
one's intercept relative to lme4's. The lines under it sum up, with and without a random
slope, how attnmag's REML stands to lme4's (where lme4 stops at a singular fit below
attnmag's interior maximum, and where it stops short elsewhere), and where statsmodels'
falls short. ``--results FILE`` also writes it all as Markdown.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from attnmag import extract
from benchmarks.common import table, write_results
from tests.mixed_direct import fit_mixed
from tests.simulate import simulated_frame

R_CODE = r"""
suppressMessages(library(lme4))
a <- commandArgs(TRUE); d <- read.csv(a[1]); cases <- read.csv(a[2]); out <- NULL
for (i in seq_len(nrow(cases))) {
  x <- d[d$part == cases$part[i], ]
  fit <- lmer(as.formula(cases$formula[i]), x, REML = TRUE)
  out <- rbind(out, data.frame(part = cases$part[i], slope = cases$slope[i],
                               reml_lme4 = sprintf("%.17g", as.numeric(logLik(fit))),
                               intercept_lme4 = sprintf("%.17g", fixef(fit)[1]),
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


def _statsmodels(rows: pd.DataFrame, formula: str, slope: bool) -> tuple[float, float, bool]:
    """statsmodels' MixedLM REML fit from its default start: REML, intercept, on the boundary
    (a variance, or the covariance's smallest eigenvalue, below 1e-6 of the scale)."""
    re_formula = "~position" if slope else None
    model = smf.mixedlm(formula, rows, groups=rows["sequence"], re_formula=re_formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(reml=True)
    boundary = np.linalg.eigvalsh(np.atleast_2d(fit.cov_re.to_numpy())).min() < 1e-6 * fit.scale
    return float(fit.llf), float(fit.fe_params["Intercept"]), bool(boundary)


def _lme4(data: list[pd.DataFrame], cases: list[tuple]) -> pd.DataFrame:
    """lme4's REML fit of each case (``part``, formula, slope) on its part of ``data``."""
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
    return r


def _agreement(group: pd.DataFrame) -> str:
    """How attnmag's REML stands to lme4's over ``group``'s fits (all with or all without a
    random slope): the range of the difference, and where and by how much attnmag's is higher
    (where lme4 stops at a singular fit and attnmag's maximum is not one, and elsewhere)."""
    kind = "Random slope" if group.slope.iloc[0] else "Random intercept"
    diff = group.reml - group.reml_lme4
    higher = diff > 1e-6
    line = (
        f"{kind}: attnmag's REML minus lme4's from {diff.min():.2g} to {diff.max():.3g}; "
        f"higher by more than 1e-6 in {higher.sum()} of {len(group)} fits"
    )
    singular = higher & group.singular_lme4 & ~group.boundary
    if singular.any():
        parts = ", ".join(str(p) for p in group.part[singular])
        line += (
            f": in parts {parts} lme4 stops at a singular fit, {diff[singular].min():.3g} to "
            f"{diff[singular].max():.3g} below attnmag's maximum (not singular)"
        )
    short = higher & ~singular
    if short.any():
        other = "the other " if singular.any() else ""
        line += f"; in {other}{short.sum()} by {diff[short].min():.1g} to {diff[short].max():.2g}"
    lower = diff < -1e-6
    if lower.any():
        parts = ", ".join(str(p) for p in group.part[lower])
        relative = (-diff[lower] / group.reml[lower].abs()).max()
        shift = (group.intercept / group.intercept_lme4 - 1)[lower].abs().max()
        line += (
            f"; lower by more than 1e-6 in parts {parts}, by at most {relative:.1g} of the REML's"
            f" size, their intercepts within {shift:.1g} of lme4's (rounding, not another maximum)"
        )
    return line


def _summary(fits: pd.DataFrame) -> list[str]:
    """The lines under the table: attnmag's REML against lme4's with and without random
    slopes, the intercepts, and where statsmodels' MixedLM stops short."""
    lower = fits.reml - fits.reml_statsmodels
    return [
        *(_agreement(group) for _, group in fits.groupby("slope")),
        f"Intercepts within {(fits.intercept / fits.intercept_lme4 - 1).abs().max():.1e} of lme4's",
        f"statsmodels' MixedLM reaches a lower REML (by more than 1e-3) in {(lower > 1e-3).sum()} "
        f"of {len(fits)} fits, by up to {lower.max():.2g}; on the boundary in "
        f"{fits.boundary_statsmodels.sum()} (attnmag: {fits.boundary.sum()}, lme4: "
        f"{fits.singular_lme4.sum()})",
    ]


def main(argv: list[str] | None = None) -> None:
    """Fit every part with attnmag, lme4 and statsmodels; print (and write) their REML."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reml", description=__doc__)
    parser.add_argument("--frame", help="a frame (Parquet file or shard folder)")
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    rows, cases, data = [], [], []
    for part, part_rows, formula, slope in _parts(args.frame, args.seeds):
        fit = fit_mixed(part_rows, formula, random_slope=slope, cov_type="model")
        reml_sm, intercept_sm, boundary_sm = _statsmodels(part_rows, formula, slope)
        rows.append(
            (part, slope, fit.stats["loglik"], fit.estimate["Intercept"], fit.stats["boundary"])
            + (reml_sm, intercept_sm, boundary_sm)
        )
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
    columns = ["part", "slope", "reml", "intercept", "boundary"]
    columns += ["reml_statsmodels", "intercept_statsmodels", "boundary_statsmodels"]
    fits = pd.DataFrame(rows, columns=columns).merge(_lme4(data, cases), on=["part", "slope"])
    out = [
        {
            "part": int(f.part),
            "random slope": bool(f.slope),
            "REML": f"{f.reml:.4f}",
            "minus lme4's": f"{f.reml - f.reml_lme4:.1e}",
            "minus statsmodels'": f"{f.reml - f.reml_statsmodels:.2g}",
            "boundary (attnmag, lme4, statsmodels)": ", ".join(
                "yes" if b else "no" for b in (f.boundary, f.singular_lme4, f.boundary_statsmodels)
            ),
            "intercept / lme4's - 1": f"{f.intercept / f.intercept_lme4 - 1:.1e}",
            "statsmodels' / lme4's - 1": f"{f.intercept_statsmodels / f.intercept_lme4 - 1:.2g}",
        }
        for f in fits.itertuples()
    ]
    notes = _summary(fits)
    print(table(out), "", *notes, sep="\n")
    if args.results:
        notes = [f"{line}." for line in notes]
        write_results(args.results, "python -m benchmarks.reml", argv, out, notes)


if __name__ == "__main__":
    main()
