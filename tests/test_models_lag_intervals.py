"""Coverage of ``initial_conditions``' default intervals, and the size and power of its test of
a random lag1 slope, in the burn-in model of ``tests/simulate_burn_in.py`` (text sd 0.3 against
a residual sd of 0.2, AR(2) running before the text starts, texts of 8-40 tokens, a sink at
position 0), which the intervals were not tuned on.

Each layer of a frame is an independent data set: 500 of 20 texts and 200 of 60 texts. At a
true coverage of 95% the binomial sd of the share covered is 0.97 and 1.5 points, and each
share must lie within 3 sd of 95%. ``benchmarks/lag_intervals.py`` runs the same at 20, 100
and 1,066 texts with more replicates (``docs/validation.md`` shows its table).
"""

import numpy as np
import pytest

from attnmag import models
from tests.simulate_burn_in import TRUTH, burn_in_frame

SIZES = {20: 500, 60: 200}  # texts: data sets


@pytest.fixture(scope="module")
def fits() -> dict[int, models.Fits]:
    """The default fit of every data set, by number of texts."""
    return {
        size: models.lag_effects(burn_in_frame(size, count, seed=size), n_jobs=1)
        for size, count in SIZES.items()
    }


@pytest.mark.parametrize("size", list(SIZES))
def test_intervals_cover_95_percent_within_monte_carlo_error(fits, size):
    table = fits[size].tidy
    bound = 3 * np.sqrt(0.95 * 0.05 / SIZES[size])
    for term, truth in TRUTH.items():
        rows = table[table.term == term]
        assert len(rows) == SIZES[size] and rows.converged.all()
        share = ((rows.conf_low <= truth) & (truth <= rows.conf_high)).mean()
        assert abs(share - 0.95) <= bound, f"{size} texts, {term}: coverage {share:.3f}"


@pytest.mark.parametrize("size", list(SIZES))
def test_the_slope_test_rejects_at_its_level_when_every_text_has_the_same_lag1(fits, size):
    p_values = models.glance(fits[size]).lag1_slope_p
    bound = 3 * np.sqrt(0.05 * 0.95 / SIZES[size])
    assert p_values.between(0, 1).all()
    assert abs((p_values < 0.05).mean() - 0.05) <= bound


def test_the_slope_test_finds_texts_whose_lag1_differs():
    """lag1 ~ N(0.4, 0.1^2) across 300 texts: the test rejects in most data sets."""
    fits = models.lag_effects(burn_in_frame(300, 20, sd_lag1=0.1, seed=11), n_jobs=1)
    assert (fits.glance.lag1_slope_p < 0.05).mean() >= 0.6
