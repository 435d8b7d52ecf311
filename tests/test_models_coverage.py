"""The 95% intervals of ``ols`` and ``mixed`` cover the true slope about 95% of the time."""

import os

import numpy as np

from attnmag import models
from tests.simulate import simulated_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_SIMULATIONS = 400  # binomial sd of the coverage at 95%: 1.1 points
TRUE_SLOPE = -0.02


def test_intervals_cover_the_true_slope_92_to_98_percent_of_the_time():
    covered = {"ols": [], "mixed": []}
    for seed in range(N_SIMULATIONS):
        frame = simulated_frame(
            30, 1, length=(8, 24), slope=TRUE_SLOPE, sd_sequence=0.3, sd_noise=0.2, seed=seed
        )
        for method, hits in covered.items():
            table = models.position_trend(frame, method=method, n_jobs=1)
            slope = table.set_index("term").loc["position"]
            hits.append(slope.conf_low <= TRUE_SLOPE <= slope.conf_high)
    for method, hits in covered.items():
        assert 0.92 <= np.mean(hits) <= 0.98, f"{method}: coverage {np.mean(hits):.3f}"
