"""The position trend's intervals cover what each method estimates, for every term printed.

Each scenario draws its simulations at once (``simulated_trends``: one ``layer`` per
simulation, so one ``position_trend`` call fits them all) and counts how often the 95%
interval of each term holds the truth. At a true coverage of 95%, the Monte Carlo standard
error of a coverage over 1,000 simulations is sqrt(0.95 * 0.05 / 1000) = 0.69 points, so
the bounds [0.93, 0.97] lie 2.9 standard errors either side: a method whose true coverage
is outside about [0.915, 0.985] fails at the seeds used.

What each method estimates (t = position):
- ``ols`` and ``mixed``: the line of the mean ``log_norm`` over texts, E[log_norm | t], with
  cluster-robust (CR1) errors by sequence and t on G - 1 df (asked for: at 40 texts the
  default is CR2, whose coverage ``tests/test_models_cr2_coverage.py`` checks); valid when texts are
  independent, whatever the dependence within a text. They are checked on texts that differ
  in level, in slope and in noise, of unequal lengths (``TEXTS``).
- ``aggregate``: the line through the log of the expected mean norm at each position,
  log E[norm | t] (for log-normal norms, E[log_norm | t] + var / 2), with classical errors
  that treat the position means as independent points. That holds when tokens are
  independent and every position has the same texts; text levels make the position means
  share those levels, and its intervals then miss (the last two scenarios): the intercept's
  always, the slope's where texts end at different positions.

``python -m benchmarks.trend_coverage --repeats N`` prints each scenario's coverage at the
seeds the tests use, and over ``N`` further seeds.
"""

from __future__ import annotations

import pytest

from attnmag import models
from tests.simulate import simulated_trends

N_SIMULATIONS = 1000
INTERCEPT, SLOPE, SD_NOISE, SD_SEQUENCE = 1.0, -0.02, 0.2, 0.3
LINE = {"Intercept": INTERCEPT, "position": SLOPE}
#: Texts as a corpus has them: levels, slopes and noise differ by text; lengths 6 to 11
#: tokens (5 to 10 fitted positions).
TEXTS = {"sd_sequence": SD_SEQUENCE, "sd_slope": 0.01, "noise_spread": 0.5, "shortest": 5}
#: log E[norm | t] where texts differ in level (log-normal norms).
LOG_MEAN_LINE = {"Intercept": INTERCEPT + (SD_SEQUENCE**2 + SD_NOISE**2) / 2, "position": SLOPE}
#: name -> (simulations, seed, simulated_trends options, {method: true value per term}).
SCENARIOS = {
    "texts": (N_SIMULATIONS, 1, TEXTS, {"ols": LINE, "mixed": LINE}),
    "independent tokens": (
        N_SIMULATIONS,
        2,
        {},
        {"aggregate": {"Intercept": INTERCEPT + SD_NOISE**2 / 2, "position": SLOPE}},
    ),
    "text levels": (
        N_SIMULATIONS // 2,
        3,
        {"sd_sequence": SD_SEQUENCE, "shortest": 5},
        {"aggregate": LOG_MEAN_LINE, "ols": LINE},
    ),
    "text levels, equal lengths": (
        N_SIMULATIONS,
        4,
        {"sd_sequence": SD_SEQUENCE},
        {"aggregate": LOG_MEAN_LINE},
    ),
}


def coverage(scenario: str, *, seed: int | None = None) -> dict[str, dict[str, float]]:
    """The share of a scenario's 95% intervals that hold the true value, by method and term."""
    n, default_seed, options, truths = SCENARIOS[scenario]
    frame = simulated_trends(
        n,
        intercept=INTERCEPT,
        slope=SLOPE,
        sd_noise=SD_NOISE,
        seed=default_seed if seed is None else seed,
        **options,
    )
    shares = {}
    for method, truth in truths.items():
        table = models.position_trend(
            frame, method=method, max_position=10, cov_type="cluster"
        ).tidy
        assert table.converged.all() and (table.conf_level == 0.95).all()
        assert table.layer.nunique() == n and set(table.term) == set(truth)
        rows = table.set_index("term")
        shares[method] = {
            term: float(((rows.loc[term].conf_low <= v) & (v <= rows.loc[term].conf_high)).mean())
            for term, v in truth.items()
        }
    return shares


@pytest.mark.parametrize("scenario", ["texts", "independent tokens"])
def test_intervals_cover_93_to_97_percent(scenario):
    """ols and mixed on texts that differ; aggregate where its errors hold."""
    for method, shares in coverage(scenario).items():
        for term, share in shares.items():
            assert 0.93 <= share <= 0.97, f"{method} {term}: coverage {share:.3f}"


def test_aggregate_misses_when_texts_differ_in_level():
    """Text levels (sd 0.3): every position mean shares them, so aggregate's intercept misses;
    with unequal lengths the texts behind each mean change, and its slope misses too. ols,
    on the same texts, covers."""
    equal = coverage("text levels, equal lengths")["aggregate"]
    assert equal["Intercept"] < 0.85 and 0.93 <= equal["position"] <= 0.97, equal
    unequal = coverage("text levels")
    for term in LINE:
        assert unequal["aggregate"][term] < 0.85 and unequal["ols"][term] > 0.92, unequal
