"""The models stage against R: ``lm`` with ``sandwich::vcovCL`` for ``ols``, ``lmer`` for ``mixed``.

Skipped, with the reason shown, only where ``Rscript`` is absent (CI installs R first).
"""

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from attnmag import models
from tests.simulate import simulated_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RSCRIPT = shutil.which("Rscript")
pytestmark = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not installed (R comparison)")

R_CODE = r"""
suppressMessages({library(lme4); library(sandwich)})
args <- commandArgs(trailingOnly = TRUE)
cases <- read.csv(args[1], stringsAsFactors = FALSE)
out <- list()
for (i in seq_len(nrow(cases))) {
  case <- cases[i, ]
  d <- read.csv(case$file)
  d <- d[d$position >= case$first & d$position <= case$last, ]
  rhs <- if (case$model == "position_trend") "position" else "lag1 + lag2"
  terms <- if (case$model == "position_trend") c("intercept", "position") else
    c("intercept", "lag1", "lag2")
  if (case$method == "ols") {
    fit <- lm(as.formula(paste("log_norm ~", rhs)), data = d)
    se <- sqrt(diag(vcovCL(fit, cluster = ~sequence, type = "HC1")))
    est <- coef(fit); extra <- c(NA, NA, NA, NA, NA)
  } else {
    re <- if (case$random_slope) "(position | sequence)" else "(1 | sequence)"
    fit <- lmer(as.formula(paste("log_norm ~", rhs, "+", re)), data = d, REML = TRUE)
    est <- fixef(fit); se <- sqrt(diag(as.matrix(vcov(fit))))
    vc <- as.data.frame(VarCorr(fit))
    extra <- c(vc$vcov[1], if (case$random_slope) vc$vcov[2] else NA,
               sigma(fit), as.numeric(logLik(fit)), isSingular(fit))
  }
  out[[i]] <- data.frame(case = case$case, term = terms, estimate = unname(est),
                         std_error = unname(se), var_intercept = extra[1],
                         var_position = extra[2], sigma = extra[3], loglik = extra[4],
                         singular = as.logical(extra[5]))
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
"""

#: (case, frame parameters, model, method, random_slope)
CASES = [
    ("trend", {"sd_sequence": 0.3}, "position_trend", "ols", False),
    ("trend", {"sd_sequence": 0.3}, "position_trend", "mixed", False),
    ("trend_slopes", {"sd_slope": 0.01}, "position_trend", "mixed", True),
    ("lags", {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.3}, "lag_effects", "ols", False),
    ("lags", {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.3}, "lag_effects", "mixed", False),
    ("lags_boundary", {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.0}, "lag_effects", "ols", False),
    (
        "lags_boundary",
        {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.0},
        "lag_effects",
        "mixed",
        False,
    ),
]


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> list[tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """(case, attnmag table, attnmag glance, R's rows) for every case, R run once."""
    folder = tmp_path_factory.mktemp("r")
    cases, ours = [], []
    for index, (name, params, model, method, random_slope) in enumerate(CASES):
        frame = simulated_frame(300, 1, length=(8, 40), seed=index, **params)
        path = folder / f"{index}.csv"
        frame.drop(columns=["token"]).to_csv(path, index=False, float_format="%.17g")
        first, last = (1, 30) if model == "position_trend" else (3, 10**6)
        key = f"{index}-{name}-{method}"
        cases.append((key, str(path), model, method, random_slope, first, last))
        options = {"random_slope": True} if random_slope else {}
        table = getattr(models, model)(frame, method=method, n_jobs=1, **options)
        ours.append((key, table))
    columns = ["case", "file", "model", "method", "random_slope", "first", "last"]
    pd.DataFrame(cases, columns=columns).to_csv(folder / "cases.csv", index=False)
    (folder / "fit.R").write_text(R_CODE)
    run = subprocess.run(
        [RSCRIPT, folder / "fit.R", folder / "cases.csv", folder / "r.csv"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    reference = pd.read_csv(folder / "r.csv")
    return [(key, t, models.glance(t), reference[reference.case == key]) for key, t in ours]


def test_ols_matches_lm_with_vcovcl_hc1(fits):
    checked = 0
    for key, table, _, r in fits:
        if key.endswith("-ols"):
            assert table.term.tolist() == r.term.tolist()
            np.testing.assert_allclose(table.estimate, r.estimate, rtol=1e-8, err_msg=key)
            np.testing.assert_allclose(table.std_error, r.std_error, rtol=1e-8, err_msg=key)
            checked += 1
    assert checked == 3


def test_mixed_matches_lmer_reml(fits):
    checked = 0
    for key, table, summary, r in fits:
        if key.endswith("-mixed"):
            assert table.term.tolist() == r.term.tolist()
            np.testing.assert_allclose(table.estimate, r.estimate, rtol=1e-5, err_msg=key)
            np.testing.assert_allclose(table.std_error, r.std_error, rtol=1e-3, err_msg=key)
            np.testing.assert_allclose(summary.sigma, r.sigma.iloc[0], rtol=1e-3, err_msg=key)
            np.testing.assert_allclose(summary.loglik, r.loglik.iloc[0], rtol=1e-6, err_msg=key)
            np.testing.assert_allclose(
                summary.var_intercept, r.var_intercept.iloc[0], rtol=1e-2, atol=1e-6, err_msg=key
            )
            if "slopes" in key:
                np.testing.assert_allclose(
                    summary.var_position, r.var_position.iloc[0], rtol=1e-2, err_msg=key
                )
            assert bool(summary.boundary[0]) == bool(r.singular.iloc[0]), key
            checked += 1
    assert checked == 4


def test_the_near_boundary_lag_fit_is_one(fits):
    (summary,) = [s for key, _, s, _ in fits if key.endswith("lags_boundary-mixed")]
    assert summary.boundary[0] and summary.var_intercept[0] < 1e-6
