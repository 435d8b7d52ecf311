"""Simulated tidy frames from a stationary dynamic model, for the lag intervals' coverage.

It differs from ``tests/simulate_lags.py`` (whose texts start their dynamics at position 3,
with the text sd equal to the residual sd) where the lag estimators are most easily wrong:
the text effect is larger than the residual sd, and each text's process is already running
when its first token is read. ``burn_in_frame`` draws, for each layer l (an independent
replicate), sequence s and time t from ``-burn`` on::

    z[t] = intercept + u + trend * t + lag1 * z[t-1] + lag2 * z[t-2] + e[t]
    u ~ N(0, sd_sequence**2) per sequence and layer,  e[t] ~ N(0, sd_noise**2)

(``z`` is 0 before ``-burn``); with ``sd_lag1`` each text's lag-1 coefficient is drawn
from N(lag1, sd_lag1**2) instead (texts whose persistence differs). It keeps positions
0 .. n - 1, n uniform on 8-40 tokens per text: ``log_norm[t] = z[t]``, except at position 0,
the attention sink, which sits ``sink`` above it and does not carry forward.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from attnmag.extract.frame import tidy_frame

__all__ = ["TRUTH", "burn_in_frame"]

#: The model's lag and trend coefficients, as ``lag_effects`` names its terms.
TRUTH = {"lag1": 0.4, "lag2": 0.1, "position": -0.01}
LENGTHS = (8, 40)


def burn_in_frame(
    n_sequences: int,
    n_layers: int = 1,
    *,
    sd_sequence: float = 0.3,
    sd_noise: float = 0.2,
    sd_lag1: float = 0.0,
    intercept: float = 1.0,
    sink: float = 2.0,
    burn: int = 50,
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy frame of ``n_layers`` independent data sets of ``n_sequences`` texts each.

    >>> frame = burn_in_frame(20, 3, seed=1)
    >>> frame.groupby("sequence").position.max().between(7, 39).all()
    np.True_
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(LENGTHS[0], LENGTHS[1] + 1, size=n_sequences)
    u = rng.normal(0.0, sd_sequence, size=(n_sequences, n_layers))
    lag1 = TRUTH["lag1"] + (sd_lag1 * rng.standard_normal(u.shape) if sd_lag1 else 0.0)
    longest = int(lengths.max())
    levels = np.empty((n_sequences, n_layers, longest))
    previous, before = np.zeros_like(u), np.zeros_like(u)
    for t in range(-burn, longest):
        noise = rng.normal(0.0, sd_noise, size=u.shape)
        level = intercept + u + TRUTH["position"] * t + noise
        level += lag1 * previous + TRUTH["lag2"] * before
        previous, before = level, previous
        if t >= 0:
            levels[:, :, t] = level
    levels[:, :, 0] += sink
    frame = tidy_frame(
        sequences=list(range(n_sequences)),
        token_ids=[np.zeros(n, dtype=np.int64) for n in lengths],
        norms=[np.exp(levels[s, :, :n]).astype(np.float32) for s, n in enumerate(lengths)],
        layers=list(range(n_layers)),
        token_text={0: "t"},
    )
    frame.attrs.update({"model": "simulated", "corpus": "simulated", "seed": seed})
    return frame
