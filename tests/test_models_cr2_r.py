"""``cov_type="cr2"`` against R: clubSandwich's ``vcovCR(fit, type = "CR2")`` and
``coef_test(fit, vcov, test = "Satterthwaite")`` on ``lm`` (``ols``) and ``lmer`` (``mixed``
with ``REML = TRUE``, ``initial_conditions``, an ML fit, with ``REML = FALSE``) fits of the
same rows: CR2 of the fixed effects at the fitted variance components.

Skipped, with the reason shown, only where ``Rscript`` is absent (CI installs R first).
"""

import numpy as np
import pandas as pd
import pytest

from attnmag import models
from tests.rscript import needs_r, run_r
from tests.simulate import simulated_frame

pytestmark = needs_r

R_CODE = r"""
suppressMessages({library(lme4); library(clubSandwich)})
args <- commandArgs(trailingOnly = TRUE)
cases <- read.csv(args[1], stringsAsFactors = FALSE)
out <- list()
for (i in seq_len(nrow(cases))) {
  case <- cases[i, ]
  d <- read.csv(case$file)
  if (case$random == "") {
    fit <- lm(as.formula(case$formula), data = d)
    vc <- vcovCR(fit, cluster = d$sequence, type = "CR2")
  } else {
    # lme4's model at attnmag's REML (or ML) maximum (lme4's optimiser can stop short of it).
    parts <- lFormula(as.formula(paste(case$formula, "+", case$random)), data = d,
                      REML = as.logical(case$reml))
    devfun <- do.call(mkLmerDevfun, parts)
    theta <- as.numeric(strsplit(case$theta, " ")[[1]])
    opt <- list(par = theta, fval = devfun(theta), conv = 0, feval = 1, message = "")
    fit <- mkMerMod(environment(devfun), opt, parts$reTrms, fr = parts$fr)
    vc <- vcovCR(fit, type = "CR2")
  }
  test <- coef_test(fit, vcov = vc, test = "Satterthwaite")
  out[[i]] <- data.frame(case = case$case, estimate = unname(test$beta),
                         std_error = unname(test$SE), df = unname(test$df_Satt))
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
"""

#: (case, frame parameters, fit, method, random_slope, R's fixed and random parts)
CASES = [
    ("trend_ols", {}, "position_trend", "ols", False, "log_norm ~ position", ""),
    ("trend_mixed", {}, "position_trend", "mixed", False, "log_norm ~ position", "(1 | sequence)"),
    (
        "trend_slopes",
        {"sd_slope": 0.02},
        "position_trend",
        "mixed",
        True,
        "log_norm ~ position",
        "(position | sequence)",
    ),
    (
        "lags_ols",
        {"lag1": 0.3, "lag2": 0.1},
        "lag_effects",
        "ols",
        False,
        "log_norm ~ lag1 + lag2",
        "",
    ),
    (
        "lags_ic",
        {"lag1": 0.3, "lag2": 0.1},
        "lag_effects",
        "initial_conditions",
        False,
        "log_norm ~ lag1 + lag2 + position + y1 + y2",
        "(1 | sequence)",
    ),
]


def _rows(frame: pd.DataFrame, fit: str) -> pd.DataFrame:
    """The rows each fit uses (first position 1), with the initial conditions ``y1``, ``y2``."""
    if fit == "position_trend":
        return frame[frame.position.between(1, 30)]
    levels = frame.pivot(index="sequence", columns="position", values="log_norm")
    rows = frame[frame.position >= 3]
    return rows.assign(
        y1=rows.sequence.map(levels[1]).to_numpy(), y2=rows.sequence.map(levels[2]).to_numpy()
    )


def _theta(table: pd.DataFrame) -> str:
    """lme4's theta (the relative Cholesky factor by columns) of a mixed fit's glance row."""
    row = models.glance(table).iloc[0]
    if "var_intercept" not in row:
        return ""
    if np.isnan(row["var_position"]):
        return f"{np.sqrt(row['var_intercept']) / row['sigma']:.17g}"
    covariance = [
        [row["var_intercept"], row["cov_intercept_position"]],
        [row["cov_intercept_position"], row["var_position"]],
    ]
    factor = np.linalg.cholesky(np.array(covariance) / row["sigma"] ** 2)
    return " ".join(f"{v:.17g}" for v in factor[np.tril_indices(2)])


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Each case's attnmag table and R's rows (R run once)."""
    folder = tmp_path_factory.mktemp("cr2")
    listed, tables = [], []
    for index, (name, params, fit, method, slope, formula, random) in enumerate(CASES):
        frame = simulated_frame(30, 1, length=(6, 25), sd_noise=0.25, seed=index, **params)
        path = folder / f"{name}.csv"
        columns = ["sequence", "position", "log_norm", "lag1", "lag2"]
        rows = _rows(frame, fit)
        rows[[*columns, *(c for c in ("y1", "y2") if c in rows)]].to_csv(
            path, index=False, float_format="%.17g"
        )
        options = {"random_slope": True} if slope else {}
        table = getattr(models, fit)(frame, method=method, cov_type="cr2", **options).tidy
        reml = "TRUE" if method == "mixed" else "FALSE"
        listed.append((name, str(path), formula, random, _theta(table), reml))
        tables.append(table)
    pd.DataFrame(listed, columns=["case", "file", "formula", "random", "theta", "reml"]).to_csv(
        folder / "cases.csv", index=False
    )
    reference = run_r(R_CODE, folder / "cases.csv", keep_default_na=False)
    return [
        (name, table, reference[reference.case == name].reset_index(drop=True))
        for (name, *_), table in zip(CASES, tables, strict=True)
    ]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case[0] for case in CASES])
def test_cr2_equals_clubsandwich(compared, index):
    name, table, r = compared[index]
    assert len(table) == len(r)
    np.testing.assert_allclose(table.estimate, r.estimate, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(table.std_error, r.std_error, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(table.df, r.df, rtol=1e-6, err_msg=name)
    # The intervals are t intervals on those df, not on G - 1.
    assert not np.allclose(table.df, table.n_groups - 1)
