"""The models stage against R: ``lm`` with ``sandwich::vcovCL`` for ``ols``; ``lmer`` for ``mixed``,
with ``clubSandwich::vcovCR`` for its cluster-robust errors.

Skipped, with the reason shown, only where ``Rscript`` is absent (CI installs R first).
"""

import numpy as np
import pandas as pd
import pytest

from attnmag import models
from attnmag.models.mixed import GroupedDesign, cluster_covariance
from tests.mixed_direct import fit_mixed
from tests.rscript import needs_r, run_r
from tests.simulate import simulated_frame

pytestmark = needs_r

R_CODE = r"""
suppressMessages({library(lme4); library(sandwich); library(clubSandwich)})
args <- commandArgs(trailingOnly = TRUE)
cases <- read.csv(args[1], stringsAsFactors = FALSE)
out <- list()
for (i in seq_len(nrow(cases))) {
  case <- cases[i, ]
  d <- read.csv(case$file)
  d <- d[d$position >= case$first & d$position <= case$last, ]
  rhs <- if (case$model == "position_trend") "position" else "lag1 + lag2"
  terms <- if (case$model == "position_trend") c("Intercept", "position") else
    c("Intercept", "lag1", "lag2")
  theta <- c(NA, NA, NA); cluster_se <- NA
  if (case$method == "ols") {
    fit <- lm(as.formula(paste("log_norm ~", rhs)), data = d)
    se <- sqrt(diag(vcovCL(fit, cluster = ~sequence, type = "HC1")))
    est <- coef(fit); extra <- c(NA, NA, NA, NA, NA)
  } else {
    re <- if (case$random_slope) "(position | sequence)" else "(1 | sequence)"
    fit <- lmer(as.formula(paste("log_norm ~", rhs, "+", re)), data = d, REML = TRUE)
    est <- fixef(fit); se <- sqrt(diag(as.matrix(vcov(fit))))
    cluster_se <- sqrt(diag(as.matrix(vcovCR(fit, cluster = d$sequence, type = "CR1S"))))
    theta[seq_along(getME(fit, "theta"))] <- getME(fit, "theta")
    vc <- as.data.frame(VarCorr(fit))
    extra <- c(vc$vcov[1], if (case$random_slope) vc$vcov[2] else NA,
               sigma(fit), as.numeric(logLik(fit)), isSingular(fit))
  }
  out[[i]] <- data.frame(case = case$case, term = terms, estimate = unname(est),
                         std_error = unname(se), cluster_se = unname(cluster_se),
                         var_intercept = extra[1], var_position = extra[2], sigma = extra[3],
                         loglik = extra[4], singular = as.logical(extra[5]),
                         theta1 = theta[1], theta2 = theta[2], theta3 = theta[3])
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
"""

#: The issue's bimodal design: the lag model's REML profile over the random intercept's sd
#: falls from zero, dips, then rises to a higher interior maximum, where lme4 lands.
BIMODAL = {"n": 300, "length": (5, 35), "sink": 3.0, "sd_sequence": 0.3}
#: (case, frame parameters, model, method, random_slope, lme4 reaches the same maximum)
CASES = [
    ("trend", {"sd_sequence": 0.3}, "position_trend", "ols", False, True),
    ("trend", {"sd_sequence": 0.3}, "position_trend", "mixed", False, True),
    ("trend_slopes", {"sd_slope": 0.01}, "position_trend", "mixed", True, True),
    ("lags", {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.3}, "lag_effects", "ols", False, True),
    ("lags", {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.3}, "lag_effects", "mixed", False, True),
    (
        "lags_boundary",
        {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.0},
        "lag_effects",
        "ols",
        False,
        True,
    ),
    (
        "lags_boundary",
        {"lag1": 0.3, "lag2": 0.1, "sd_sequence": 0.0},
        "lag_effects",
        "mixed",
        False,
        True,
    ),
    *[
        (f"bimodal_{seed}", {**BIMODAL, "seed": seed}, "lag_effects", "mixed", False, True)
        for seed in (1, 2, 3, 9)
    ],
    # Random slopes where lme4's optimiser stops short of the maximum (by up to 0.01).
    *[
        (
            f"slopes_short_{seed}",
            {"sd_slope": sd, "seed": seed},
            "position_trend",
            "mixed",
            True,
            False,
        )
        for seed, sd in ((0, 0.0), (3, 0.006))
    ],
]
FORMULAS = {"position_trend": "log_norm ~ position", "lag_effects": "log_norm ~ lag1 + lag2"}
SPANS = {"position_trend": (1, 30), "lag_effects": (3, 10**6)}


class Case:
    """One case: its rows, attnmag's fits (both ``cov_type``s for mixed) and R's rows."""

    def __init__(self, key, model, method, random_slope, rows, fitted, same):
        self.key, self.model, self.method, self.random_slope = key, model, method, random_slope
        self.rows, self.fitted, self.same, self.r = rows, fitted, same, None


def _in_float64(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``log_norm`` and its lags taken in float64 from ``norm``: the data on
    which the cases were chosen (lme4 stopping short is a property of those numbers)."""
    log_norm = np.log(frame["norm"].to_numpy(np.float64))
    lagged = pd.Series(log_norm, index=frame.index).groupby([frame.sequence, frame.layer])
    return frame.assign(log_norm=log_norm, lag1=lagged.shift(1), lag2=lagged.shift(2))


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[Case]:
    """Every case fitted by attnmag and by R (R run once)."""
    folder = tmp_path_factory.mktemp("r")
    listed, out = [], []
    for index, (name, params, model, method, random_slope, same) in enumerate(CASES):
        options = {"n": 300, "length": (8, 40), "seed": index, **params}
        frame = _in_float64(simulated_frame(options.pop("n"), 1, **options))
        path = folder / f"{index}.csv"
        frame.drop(columns=["token"]).to_csv(path, index=False, float_format="%.17g")
        first, last = SPANS[model]
        key = f"{index}-{name}-{method}"
        listed.append((key, str(path), model, method, random_slope, first, last))
        rows = frame[(frame.position >= first) & (frame.position <= last)]
        if method == "ols":
            fitted = {"ols": getattr(models, model)(frame, method="ols", n_jobs=1).tidy}
        else:
            fitted = {
                cov: fit_mixed(rows, FORMULAS[model], random_slope=random_slope, cov_type=cov)
                for cov in ("model", "cluster")
            }
        out.append(Case(key, model, method, random_slope, rows, fitted, same))
    columns = ["case", "file", "model", "method", "random_slope", "first", "last"]
    pd.DataFrame(listed, columns=columns).to_csv(folder / "cases.csv", index=False)
    reference = run_r(R_CODE, folder / "cases.csv")
    for case in out:
        case.r = reference[reference.case == case.key].reset_index(drop=True)
    return out


def test_ols_matches_lm_with_vcovcl_hc1(cases):
    checked = 0
    for case in cases:
        if case.method == "ols":
            table, r = case.fitted["ols"], case.r
            assert table.term.tolist() == r.term.tolist()
            np.testing.assert_allclose(table.estimate, r.estimate, rtol=1e-8, err_msg=case.key)
            np.testing.assert_allclose(table.std_error, r.std_error, rtol=1e-8, err_msg=case.key)
            checked += 1
    assert checked == 3


def test_mixed_matches_lmer_reml(cases):
    checked = 0
    for case in cases:
        if case.method != "mixed" or not case.same:
            continue
        fit, r, key = case.fitted["model"], case.r, case.key
        assert fit.estimate.index.tolist() == r.term.tolist()
        assert np.isinf(fit.df) and case.fitted["cluster"].df == case.rows.sequence.nunique() - 1
        np.testing.assert_allclose(fit.estimate, r.estimate, rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(fit.std_error, r.std_error, rtol=1e-3, err_msg=key)
        np.testing.assert_allclose(
            case.fitted["cluster"].std_error, r.cluster_se, rtol=1e-3, err_msg=key
        )
        stats = fit.stats
        np.testing.assert_allclose(stats["sigma"], r.sigma[0], rtol=1e-3, err_msg=key)
        np.testing.assert_allclose(stats["loglik"], r.loglik[0], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(
            stats["var_intercept"], r.var_intercept[0], rtol=1e-2, atol=1e-6, err_msg=key
        )
        if case.random_slope:
            np.testing.assert_allclose(
                stats["var_position"], r.var_position[0], rtol=1e-2, err_msg=key
            )
        assert bool(stats["boundary"]) == bool(r.singular[0]), key
        checked += 1
    assert checked == 8


def test_mixed_reml_is_at_least_lme4s(cases):
    """attnmag's REML is never below lme4's; where lme4 stops short, attnmag is higher."""
    higher = {}
    for case in cases:
        if case.method == "mixed":
            for fit in case.fitted.values():
                assert fit.stats["loglik"] >= case.r.loglik[0] - 1e-6, case.key
            higher[case.key] = case.fitted["model"].stats["loglik"] - case.r.loglik[0]
    assert len(higher) == 10
    assert all(higher[c.key] > 1e-3 for c in cases if c.method == "mixed" and not c.same), higher


def test_bimodal_lag_fits_land_on_lme4s_interior_maximum(cases):
    bimodal = [case for case in cases if case.key.split("-")[1].startswith("bimodal")]
    assert len(bimodal) == 4
    for case in bimodal:
        rows, stats = case.rows, case.fitted["model"].stats
        exog = np.column_stack([np.ones(len(rows)), rows.lag1, rows.lag2])
        design = GroupedDesign.of(exog, exog[:, :1], rows.log_norm.to_numpy(), rows.sequence)
        at_zero, near_zero = design.intercept_profile(np.array([0.0, 0.01]))
        # Zero variance is a local maximum, the interior one (lme4's) is higher.
        assert at_zero > near_zero and stats["loglik"] > at_zero + 0.05, case.key
        assert not stats["boundary"] and not case.r.singular[0], case.key


def test_the_cluster_sandwich_equals_clubsandwich_cr1s_at_lmers_fit(cases):
    """At lme4's variance components, attnmag's sandwich is clubSandwich's CR1S to 1e-6."""
    checked = 0
    for case in cases:
        if case.method != "mixed":
            continue
        rows, r = case.rows, case.r
        exog = np.column_stack([np.ones(len(rows))] + [rows[term] for term in r.term.tolist()[1:]])
        exog_re = np.column_stack([np.ones(len(rows)), rows.position])
        theta = r.loc[0, ["theta1", "theta2", "theta3"]].to_numpy(np.float64)
        if case.random_slope:
            factor = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        else:
            factor, exog_re = np.array([[theta[0]]]), exog_re[:, :1]
        cov_rel = factor @ factor.T
        design = GroupedDesign.of(exog, exog_re, rows.log_norm.to_numpy(), rows.sequence)
        point = design.gls(cov_rel)
        np.testing.assert_allclose(point.fe_params, r.estimate, rtol=1e-6, err_msg=case.key)
        covariance = cluster_covariance(design, cov_rel, point.fe_params, point.xwx_inv)
        np.testing.assert_allclose(
            np.sqrt(np.diag(covariance)), r.cluster_se, rtol=1e-6, err_msg=case.key
        )
        checked += 1
    assert checked == 10


def test_the_near_boundary_lag_fit_is_one(cases):
    (case,) = [c for c in cases if c.key.endswith("lags_boundary-mixed")]
    assert (
        case.fitted["model"].stats["boundary"]
        and case.fitted["model"].stats["var_intercept"] < 1e-6
    )
