"""Simulated tidy frames with known parameters, for testing the models and reports stages.

``simulated_frame`` draws, for each sequence s, layer l and position t >= 1::

    log_norm = intercept + slope * t + u_s + lag1 * y[t-1] + lag2 * y[t-2] + e,
    u_s ~ N(0, sd_sequence**2),  e ~ N(0, sd_noise**2)

(lags enter from t >= 3, so that both lags come from positions >= 1); position 0, the
attention sink, sits ``sink`` above the rest. The result has the extract stage's schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from attnmag.extract.frame import tidy_frame


def simulated_frame(
    n_sequences: int = 200,
    n_layers: int = 3,
    *,
    length: tuple[int, int] = (12, 40),
    intercept: float = 1.0,
    slope: float = -0.02,
    lag1: float = 0.0,
    lag2: float = 0.0,
    sd_sequence: float = 0.3,
    sd_noise: float = 0.2,
    sink: float = 2.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy frame drawn from the model in the module docstring (same parameters per layer)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(length[0], length[1] + 1, size=n_sequences)
    token_ids, norms = [], []
    for n in lengths:
        token_ids.append(rng.integers(0, 50, size=n))
        u = rng.normal(0.0, sd_sequence)
        per_layer = np.empty((n_layers, n))
        for layer in range(n_layers):
            y = np.empty(n)
            y[0] = intercept + sink + u + rng.normal(0.0, sd_noise)
            for t in range(1, n):
                y[t] = intercept + slope * t + u + rng.normal(0.0, sd_noise)
                if t >= 3:
                    y[t] += lag1 * y[t - 1] + lag2 * y[t - 2]
            per_layer[layer] = y
        norms.append(np.exp(per_layer).astype(np.float32))
    frame = tidy_frame(
        sequences=list(range(n_sequences)),
        token_ids=token_ids,
        norms=norms,
        layers=list(range(n_layers)),
        token_text={i: f"t{i}" for i in range(50)},
    )
    frame.attrs.update({"model": "simulated", "corpus": "simulated", "seed": seed})
    return frame
