"""``lag_effects(method="gmm")`` against R's ``plm::pgmm``: estimates, Windmeijer SEs, tests.

R fits ``log_norm ~ lag(log_norm, 1:2) + trend | lag(log_norm, 2:6) | trend`` on the panel
of used positions (``trend`` a numeric copy of position: its difference is the constant),
first differences, two steps, collapsed instruments, individual effects; standard errors
from ``vcovHC`` (Windmeijer), Hansen's J from ``sargan`` (two-step weights), AR(2) from
``mtest(order = 2, vcov = vcovHC)``. Skipped, with the reason shown, only where ``Rscript``
is absent (CI installs R with plm).
"""

import os

import numpy as np
import pandas as pd
import pytest

from attnmag import models
from tests.rscript import needs_r, run_r
from tests.simulate_lags import dynamic_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = needs_r

R_CODE = r"""
suppressMessages(library(plm))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$trend <- d$position
p <- pdata.frame(d, index = c("sequence", "position"))
fit <- pgmm(log_norm ~ lag(log_norm, 1:2) + trend | lag(log_norm, 2:6) | trend, data = p,
            effect = "individual", model = "twosteps", collapse = TRUE, transformation = "d")
hansen <- sargan(fit)
ar2 <- mtest(fit, order = 2, vcov = vcovHC)
used <- sapply(fit$model, function(m) sum(m[, "trend"] != 0))
out <- data.frame(term = c("lag1", "lag2", "position"),
                  estimate = sprintf("%.17g", fit$coefficients[[2]]),
                  std_error = sprintf("%.17g", sqrt(diag(vcovHC(fit)))),
                  hansen_j = sprintf("%.17g", hansen$statistic), hansen_df = hansen$parameter,
                  ar2_statistic = sprintf("%.17g", ar2$statistic),
                  n_obs = sum(used), n_groups = sum(used > 0), n_instruments = ncol(fit$W[[1]]))
write.csv(out, args[2], row.names = FALSE)
"""

#: (case, simulation options, first_position, whether some texts are too short for GMM)
CASES = [
    ("short_texts", {"n_sequences": 120, "short_share": 0.2, "seed": 11}, 1, True),
    ("t_errors_first_token", {"n_sequences": 90, "noise": "t", "seed": 12}, 0, False),
]


@pytest.fixture(scope="module", params=CASES, ids=[case[0] for case in CASES])
def fits(request, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(attnmag's table, its glance, R's rows) for one case; texts drop out where expected."""
    name, options, first_position, drops = request.param
    frame = dynamic_frame(n_layers=1, **options)
    folder = tmp_path_factory.mktemp(name)
    used = frame[frame.position >= first_position]
    used[["sequence", "position", "log_norm"]].to_csv(
        folder / "panel.csv", index=False, float_format="%.17g"
    )
    table = models.lag_effects(frame, method="gmm", first_position=first_position).tidy
    summary = models.glance(table)
    assert (summary.n_groups[0] < frame.sequence.nunique()) == drops
    return table, summary, run_r(R_CODE, folder / "panel.csv")


def test_estimates_and_windmeijer_errors_match_pgmm(fits):
    table, _, r = fits
    assert table.term.tolist() == r.term.tolist()
    np.testing.assert_allclose(table.estimate, r.estimate, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table.std_error, r.std_error, rtol=1e-6, atol=1e-9)


def test_hansen_and_ar2_match_sargan_and_mtest(fits):
    _, summary, r = fits
    np.testing.assert_allclose(summary.hansen_j, r.hansen_j.iloc[0], rtol=1e-6)
    np.testing.assert_allclose(summary.ar2_statistic, r.ar2_statistic.iloc[0], rtol=1e-6)
    assert summary.hansen_df[0] == r.hansen_df.iloc[0] == 3
    assert summary.n_instruments[0] == r.n_instruments.iloc[0] == 6


def test_rows_and_texts_used_match_pgmm(fits):
    """Texts too short for a differenced equation drop out, in both."""
    table, summary, r = fits
    assert summary.n_obs[0] == r.n_obs.iloc[0]
    assert summary.n_groups[0] == r.n_groups.iloc[0]
    assert (table.n_groups == r.n_groups.iloc[0]).all()
