"""Simulated tidy frames from a dynamic panel model, for checking the lag estimators.

``dynamic_frame`` draws, for each layer l, sequence s and position t >= 1::

    log_norm[t] = intercept + trend * t + u + e[t]                                 (t = 1, 2)
    log_norm[t] = intercept + trend * t + u + lag1 * log_norm[t-1]
                  + lag2 * log_norm[t-2] + e[t]                                    (t >= 3)
    u ~ N(0, sd_sequence**2) per sequence and layer,  e[t] ~ sd_s * (unit-variance noise)

Position 0, the attention sink, sits ``sink`` above ``intercept + u + e[0]`` and takes no part
in the dynamics (the lag models exclude it by default). Layers are independent replicates:
each has its own ``u`` and ``e`` (the token lengths are shared, as in a real frame), so one
frame of R layers is R simulated data sets and ``lag_effects`` fits them all in one call.

Options reproduce the harder scenarios: ``noise="t"`` draws ``e`` from Student's t on 5 df
scaled to unit variance; ``sd_spread`` makes the residual sd differ across texts
(``sd_s = sd_noise * exp(sd_spread * N(0, 1))``, per text and layer); ``short_share`` makes
that share of texts only 4-6 tokens long.

Lengths are like the bundled corpus's texts: log-normal around a median of 23 tokens,
clipped to 4-68 (``corpus_lengths``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from attnmag.extract.frame import tidy_frame

T_DF = 5


def corpus_lengths(
    n_sequences: int, rng: np.random.Generator, *, median: int = 23, short_share: float = 0.0
) -> np.ndarray:
    """Token counts like the corpus's: log-normal (sd 0.45) around ``median``, within 4-68.

    A ``short_share`` of the texts (chosen at random) get 4-6 tokens instead.

    >>> corpus_lengths(5, np.random.default_rng(0)).tolist()
    [24, 22, 31, 24, 18]
    """
    lengths = np.clip(np.rint(median * np.exp(0.45 * rng.standard_normal(n_sequences))), 4, 68)
    short = rng.random(n_sequences) < short_share
    lengths[short] = rng.integers(4, 7, size=int(short.sum()))
    return lengths.astype(np.int64)


def dynamic_frame(
    n_sequences: int = 150,
    n_layers: int = 1,
    *,
    lag1: float = 0.4,
    lag2: float = 0.1,
    intercept: float = 1.0,
    trend: float = -0.01,
    sd_sequence: float = 0.2,
    sd_noise: float = 0.2,
    sd_spread: float = 0.0,
    noise: str = "normal",
    short_share: float = 0.0,
    median_length: int = 23,
    sink: float = 2.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy frame drawn from the dynamic model in the module docstring.

    >>> frame = dynamic_frame(100, 5, seed=1)  # 5 independent data sets of 100 texts
    >>> sorted(frame.layer.unique().tolist())
    [0, 1, 2, 3, 4]
    """
    rng = np.random.default_rng(seed)
    lengths = corpus_lengths(n_sequences, rng, median=median_length, short_share=short_share)
    longest = int(lengths.max())
    shape = (n_sequences, n_layers, longest)
    if noise == "normal":
        unit = rng.standard_normal(shape)
    elif noise == "t":
        unit = rng.standard_t(T_DF, size=shape) / np.sqrt(T_DF / (T_DF - 2))
    else:
        raise ValueError(f"noise must be 'normal' or 't', not {noise!r}")
    sd = sd_noise * np.exp(sd_spread * rng.standard_normal((n_sequences, n_layers, 1)))
    e = sd * unit
    u = rng.normal(0.0, sd_sequence, size=(n_sequences, n_layers))
    y = np.empty(shape)
    y[:, :, 0] = intercept + sink + u + e[:, :, 0]
    for t in range(1, longest):
        y[:, :, t] = intercept + trend * t + u + e[:, :, t]
        if t >= 3:
            y[:, :, t] += lag1 * y[:, :, t - 1] + lag2 * y[:, :, t - 2]
    frame = tidy_frame(
        sequences=list(range(n_sequences)),
        token_ids=[np.zeros(n, dtype=np.int64) for n in lengths],
        norms=[np.exp(y[s, :, :n]).astype(np.float32) for s, n in enumerate(lengths)],
        layers=list(range(n_layers)),
        token_text={0: "t"},
    )
    frame.attrs.update({"model": "simulated", "corpus": "simulated", "seed": seed})
    return frame
