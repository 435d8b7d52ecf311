"""The position trend's intervals cover what each method estimates, for every term printed.

Each test draws ``N_SIMULATIONS`` independent data sets at once (``simulated_trends``: one
``layer`` per simulation, so one ``position_trend`` call fits them all) and counts how often
the 95% interval of each term holds the truth. At a true coverage of 95%, the Monte Carlo
standard error of a coverage over 1,000 simulations is sqrt(0.95 * 0.05 / 1000) = 0.69
points, so the bounds [0.93, 0.97] lie 2.9 standard errors either side: a method whose true
coverage is outside about [0.915, 0.985] fails at the seed used.

What each method estimates (t = position, u_s the text's level):
- ``ols`` and ``mixed``: the line of the mean ``log_norm`` over texts, E[log_norm | t], with
  cluster-robust (CR1) errors by sequence and t on G - 1 df; valid when texts are
  independent, whatever the dependence within a text. They are checked on texts that differ
  in level, in slope and in noise, of unequal lengths.
- ``aggregate``: the line through the log of the expected mean norm at each position,
  log E[norm | t] (for log-normal norms, E[log_norm | t] + var / 2), with classical errors
  that treat the position means as independent points. That holds when tokens are
  independent and every position has the same texts; text effects make the position means
  share the texts' levels, and the intervals then miss, which the last test shows.
"""

import pandas as pd
import pytest

from attnmag import models
from tests.simulate import simulated_trends

N_SIMULATIONS = 1000
INTERCEPT, SLOPE, SD_NOISE = 1.0, -0.02, 0.2
#: Texts as a corpus has them: levels, slopes and noise differ by text; lengths 6 to 11
#: tokens (5 to 10 fitted positions).
TEXTS = {"sd_sequence": 0.3, "sd_slope": 0.01, "noise_spread": 0.5, "shortest": 5}


def _coverage(table: pd.DataFrame, truth: dict[str, float]) -> dict[str, float]:
    """The share of fits whose interval holds the true value, per term."""
    assert table.converged.all() and (table.conf_level == 0.95).all()
    rows = table.set_index("term")
    return {
        term: float(
            ((rows.loc[term].conf_low <= value) & (value <= rows.loc[term].conf_high)).mean()
        )
        for term, value in truth.items()
    }


def _trend(frame: pd.DataFrame, method: str) -> pd.DataFrame:
    table = models.position_trend(frame, method=method, max_position=10)
    assert table.layer.nunique() == frame.layer.nunique()
    return table


@pytest.mark.parametrize("method", ["ols", "mixed"])
def test_ols_and_mixed_cover_the_mean_log_norm_line_93_to_97_percent(method):
    frame = simulated_trends(
        N_SIMULATIONS, intercept=INTERCEPT, slope=SLOPE, sd_noise=SD_NOISE, seed=1, **TEXTS
    )
    coverage = _coverage(_trend(frame, method), {"intercept": INTERCEPT, "position": SLOPE})
    for term, share in coverage.items():
        assert 0.93 <= share <= 0.97, f"{method} {term}: coverage {share:.3f}"


def test_aggregate_covers_the_log_mean_norm_line_93_to_97_percent_for_independent_tokens():
    frame = simulated_trends(
        N_SIMULATIONS, intercept=INTERCEPT, slope=SLOPE, sd_noise=SD_NOISE, seed=2
    )
    truth = {"intercept": INTERCEPT + SD_NOISE**2 / 2, "position": SLOPE}
    for term, share in _coverage(_trend(frame, "aggregate"), truth).items():
        assert 0.93 <= share <= 0.97, f"aggregate {term}: coverage {share:.3f}"


def test_aggregate_misses_when_texts_differ_in_level():
    """Text levels (sd 0.3) and unequal lengths: the position means share the texts' levels."""
    frame = simulated_trends(
        N_SIMULATIONS // 2,
        intercept=INTERCEPT,
        slope=SLOPE,
        sd_noise=SD_NOISE,
        sd_sequence=0.3,
        shortest=5,
        seed=3,
    )
    truth = {"intercept": INTERCEPT + (0.3**2 + SD_NOISE**2) / 2, "position": SLOPE}
    aggregate = _coverage(_trend(frame, "aggregate"), truth)
    ols = _coverage(_trend(frame, "ols"), {"intercept": INTERCEPT, "position": SLOPE})
    for term in truth:
        assert aggregate[term] < 0.85 and ols[term] > 0.92, (term, aggregate, ols)
