"""The least-squares fits' inference against R: ``lm`` for ``aggregate``, ``sandwich`` for ``ols``.

``aggregate`` is R's ``summary(lm(log(mean norm) ~ position))`` and ``confint`` on the
position means (classical errors, t on n - 2 df); ``ols`` is ``lm`` on the tokens with
``sandwich::vcovCL(fit, cluster = ~sequence, type = "HC1")`` (CR1), its statistics and
intervals computed in R on t with G - 1 df. Every column a report prints is compared:
estimate, standard error, statistic, p-value and the interval at two levels.

Skipped, with the reason shown, only where ``Rscript`` is absent (CI installs R first).
"""

import numpy as np
import pandas as pd
import pytest

from attnmag import models
from tests.rscript import needs_r, run_r
from tests.simulate import simulated_frame

pytestmark = needs_r
LEVELS = (0.95, 0.8)

R_CODE = r"""
suppressMessages(library(sandwich))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
levels <- c(0.95, 0.8)
rows <- function(layer, model, method, est, se, df) {
  stat <- est / se
  out <- data.frame(layer = layer, model = model, method = method,
                    term = c("Intercept", names(est)[-1]), estimate = unname(est),
                    std_error = unname(se), statistic = unname(stat),
                    p_value = unname(2 * pt(-abs(stat), df)), df = df)
  for (level in levels) {
    q <- qt(0.5 + level / 2, df)
    out[[paste0("conf_low_", 100 * level)]] <- unname(est - q * se)
    out[[paste0("conf_high_", 100 * level)]] <- unname(est + q * se)
  }
  out
}
out <- list()
for (layer in sort(unique(d$layer))) {
  trend <- d[d$layer == layer & d$position >= 1 & d$position <= 30, ]
  means <- tapply(trend$norm, trend$position, mean)
  points <- data.frame(position = as.numeric(names(means)), log_mean = log(as.numeric(means)))
  fit <- lm(log_mean ~ position, data = points)
  agg <- rows(layer, "position_trend", "aggregate", coef(fit),
              summary(fit)$coefficients[, "Std. Error"], fit$df.residual)
  stopifnot(isTRUE(all.equal(agg$p_value, unname(summary(fit)$coefficients[, 4]))))
  for (level in levels) {
    ci <- confint(fit, level = level)
    stopifnot(isTRUE(all.equal(agg[[paste0("conf_low_", 100 * level)]], unname(ci[, 1]))))
  }
  out[[length(out) + 1]] <- agg
  lags <- d[d$layer == layer & d$position >= 3, ]
  for (case in list(list("position_trend", "log_norm ~ position", trend),
                    list("lag_effects", "log_norm ~ lag1 + lag2", lags))) {
    data <- case[[3]]
    fit <- lm(as.formula(case[[2]]), data = data)
    se <- sqrt(diag(vcovCL(fit, cluster = ~sequence, type = "HC1")))
    out[[length(out) + 1]] <- rows(layer, case[[1]], "ols", coef(fit), se,
                                   length(unique(data$sequence)) - 1)
  }
}
write.csv(do.call(rbind, out), args[2], row.names = FALSE)
"""


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Two layers of texts that differ in level, with lags and a modest slope."""
    return simulated_frame(
        80, 2, length=(6, 40), slope=-0.004, lag1=0.2, lag2=0.1, sd_noise=0.3, seed=23
    )


@pytest.fixture(scope="module")
def reference(frame, tmp_path_factory) -> pd.DataFrame:
    """R's rows for every layer, model and method, R run once."""
    folder = tmp_path_factory.mktemp("ols-r")
    columns = ["layer", "sequence", "position", "norm", "log_norm", "lag1", "lag2"]
    frame[columns].to_csv(folder / "frame.csv", index=False, float_format="%.17g", na_rep="NA")
    return run_r(R_CODE, folder / "frame.csv", timeout=120)


@pytest.mark.parametrize(
    ("model", "method"),
    [("position_trend", "aggregate"), ("position_trend", "ols"), ("lag_effects", "ols")],
)
def test_estimates_errors_p_values_and_intervals_match_r(frame, reference, model, method):
    expected = reference[(reference.model == model) & (reference.method == method)]
    assert len(expected) == (4 if model == "position_trend" else 6)
    for level in LEVELS:
        table = getattr(models, model)(frame, method=method, conf_level=level).tidy
        assert (
            table[["layer", "term"]].values.tolist() == expected[["layer", "term"]].values.tolist()
        )
        for column in ["estimate", "std_error", "statistic", "p_value", "df"]:
            np.testing.assert_allclose(
                table[column], expected[column], rtol=1e-8, err_msg=f"{method} {column}"
            )
        tag = round(100 * level)
        for column in ["conf_low", "conf_high"]:
            np.testing.assert_allclose(
                table[column], expected[f"{column}_{tag}"], rtol=1e-8, err_msg=f"{method} {column}"
            )
