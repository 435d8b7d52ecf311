"""CR2's intervals (``cov_type="cr2"``, the trend fits' default below ``CR2_BELOW`` texts)
cover the trend at 20 and 100 texts, in a simulation unlike the one the methods were built
on (``tests.simulate.SERIAL_TRENDS``): unequal text-level and residual sds, residual sds
that differ by text, AR(1) errors within texts started from a burn-in, a sink at position 0.

At a true coverage of 95%, the Monte Carlo standard error over 1,000 simulations is 0.69
points: the bounds [0.93, 0.97] lie 2.9 of them either side; over 400, 1.09 points, and
[0.925, 0.975] lie 2.3 either side. ``benchmarks/cr2.py`` runs the full study (CR1 against
CR2 from 10 to 100 texts, 2,000 simulations each).
"""

import pytest

from attnmag import models
from attnmag.models.cr2 import CR2_BELOW
from tests.simulate import SERIAL_TRENDS, simulated_trends

TRUTH = {"Intercept": SERIAL_TRENDS["intercept"], "position": SERIAL_TRENDS["slope"]}


def _coverage(table) -> dict[str, float]:
    """The share of the table's intervals that hold the truth, by term."""
    return {
        term: float(((part.conf_low <= TRUTH[term]) & (TRUTH[term] <= part.conf_high)).mean())
        for term, part in table.groupby("term")
    }


@pytest.mark.parametrize("method", ["ols", "mixed"])
def test_cr2_covers_at_20_texts_and_is_the_default_there(method):
    frame = simulated_trends(1000, n_sequences=20, seed=11, **SERIAL_TRENDS)
    table = models.position_trend(frame, method=method).tidy
    assert 20 < CR2_BELOW and table.converged.all()
    assert (table.df != 19).all()  # Bell-McCaffrey df, not G - 1
    for term, share in _coverage(table).items():
        assert 0.93 <= share <= 0.97, f"{method} {term}: coverage {share:.3f}"


def test_cr2_covers_at_100_texts():
    frame = simulated_trends(400, n_sequences=100, seed=12, **SERIAL_TRENDS)
    table = models.position_trend(frame, method="ols", cov_type="cr2").tidy
    for term, share in _coverage(table).items():
        assert 0.925 <= share <= 0.975, f"{term}: coverage {share:.3f}"
    default = models.position_trend(frame[frame.layer < 5], method="ols").tidy
    assert (default.df == 99).all()  # from CR2_BELOW texts on: CR1, t on G - 1
