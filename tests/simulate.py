"""Simulated tidy frames with known parameters, for testing the models and reports stages.

``simulated_frame`` draws, for each sequence s, layer l and position t >= 1::

    log_norm = intercept + (slope + v_s) * t + u_s + lag1 * y[t-1] + lag2 * y[t-2] + e,
    u_s ~ N(0, sd_sequence**2),  v_s ~ N(0, sd_slope**2),  e ~ N(0, sd_noise**2)

(lags enter from t >= 3, so that both lags come from positions >= 1); position 0, the
attention sink, sits ``sink`` above the rest. ``u_s`` and ``v_s`` are shared by the
layers of a sequence. The result has the extract stage's schema.

The draws are vectorised over sequences and layers; with ``sd_slope=0`` (the default) a
seed gives the same frame as the original per-token loop did.

``simulated_trends`` draws many independent simulations of the position trend at once, one
per ``layer`` (for coverage tests: one ``position_trend`` call fits them all)::

    log_norm = intercept + (slope + v_s) * t + u_s + s_s * z_t,   z_t ~ N(0, 1),
    s_s = sd_noise * exp(noise_spread * w_s),  w_s ~ N(0, 1),

with fresh u_s, v_s, w_s for every sequence of every simulation, at t = 1..max_position for
every sequence, or ``shortest``..``max_position`` positions (uniform) where ``shortest``
is given; position 0 sits ``sink`` above the line. With ``ar1`` the z_t of a text are an
AR(1) series with that coefficient and unit variance, started ``BURN_IN`` steps before
position 0 (serial correlation within texts).

``write_folder`` writes a frame as a finished shard folder, as ``extract.write_shards``
would, for the fits and reports that read folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attnmag.extract.frame import derived_columns, tidy_frame
from attnmag.extract.shards import shard_ranges, write_frames

#: Steps an AR(1) series runs before its first position (its start is then forgotten).
BURN_IN = 50
#: ``simulated_trends`` options of the small-sample study (``benchmarks/cr2.py`` and its
#: coverage test): texts of 8 to 31 tokens, unequal text-level (0.4) and residual (0.15) sds,
#: residual sds that differ by text, AR(1) errors within texts, a sink at position 0.
SERIAL_TRENDS = {
    "max_position": 30,
    "shortest": 7,
    "intercept": 1.0,
    "slope": -0.02,
    "sd_sequence": 0.4,
    "sd_slope": 0.005,
    "sd_noise": 0.15,
    "noise_spread": 0.4,
    "ar1": 0.5,
    "sink": 2.0,
}


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
    sd_slope: float = 0.0,
    sd_noise: float = 0.2,
    sink: float = 2.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy frame drawn from the model in the module docstring (same parameters per layer).

    >>> frame = simulated_frame(50, 2, slope=-0.03, sd_sequence=0.2, seed=1)
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(length[0], length[1] + 1, size=n_sequences)
    longest = int(lengths.max())
    token_ids = []
    u = np.empty(n_sequences)
    noise = np.zeros((n_sequences, n_layers, longest))
    for s, n in enumerate(lengths):
        token_ids.append(rng.integers(0, 50, size=n))
        u[s] = rng.normal(0.0, sd_sequence)
        noise[s, :, :n] = rng.normal(0.0, sd_noise, size=(n_layers, n))
    # A separate stream for the random slopes keeps the frames of sd_slope=0 as they were.
    v = np.random.default_rng([seed, 1]).normal(0.0, sd_slope, size=n_sequences) if sd_slope else 0
    slopes = np.broadcast_to(slope + v, (n_sequences,))[:, None]
    u = u[:, None]
    y = np.empty_like(noise)
    y[:, :, 0] = intercept + sink + u + noise[:, :, 0]
    for t in range(1, longest):
        y[:, :, t] = intercept + slopes * t + u + noise[:, :, t]
        if t >= 3:
            y[:, :, t] += lag1 * y[:, :, t - 1] + lag2 * y[:, :, t - 2]
    frame = tidy_frame(
        sequences=list(range(n_sequences)),
        token_ids=token_ids,
        norms=[np.exp(y[s, :, :n]).astype(np.float32) for s, n in enumerate(lengths)],
        layers=list(range(n_layers)),
        token_text={i: f"t{i}" for i in range(50)},
    )
    frame.attrs.update({"model": "simulated", "corpus": "simulated", "seed": seed})
    return frame


def simulated_trends(
    n_simulations: int,
    *,
    n_sequences: int = 40,
    max_position: int = 10,
    shortest: int | None = None,
    intercept: float = 1.0,
    slope: float = -0.02,
    sd_sequence: float = 0.0,
    sd_slope: float = 0.0,
    sd_noise: float = 0.2,
    noise_spread: float = 0.0,
    ar1: float = 0.0,
    sink: float = 2.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Independent simulations of the trend model in the module docstring, one per ``layer``.

    The frame has the columns the models stage reads: ``layer`` (the simulation),
    ``sequence``, ``position``, ``norm`` (float32) and ``log_norm`` (its log, as the frame
    has it).

    >>> frame = simulated_trends(100, sd_sequence=0.3, shortest=5, seed=1)
    """
    rng = np.random.default_rng(seed)
    shape = (n_simulations, n_sequences, 1)
    u = rng.normal(0.0, sd_sequence, size=shape)
    v = rng.normal(0.0, sd_slope, size=shape)
    spread = sd_noise * np.exp(noise_spread * rng.normal(size=shape))
    noise = spread * rng.normal(size=(n_simulations, n_sequences, max_position + 1))
    if ar1:
        noise = spread * _ar1_series(ar1, noise.shape, np.random.default_rng([seed, 1]))
    position = np.arange(max_position + 1)
    y = intercept + (slope + v) * position + u + noise
    y[:, :, 0] += sink
    last = rng.integers(shortest or max_position, max_position + 1, size=shape)
    real = np.broadcast_to(position <= last, y.shape)
    layer, sequence, position = np.meshgrid(
        np.arange(n_simulations), np.arange(n_sequences), position, indexing="ij"
    )
    norm = np.exp(y[real]).astype(np.float32)
    return pd.DataFrame(
        {
            "layer": layer[real],
            "sequence": sequence[real],
            "position": position[real],
            "norm": norm,
            "log_norm": derived_columns(norm, position[real])["log_norm"],
        }
    )


def _ar1_series(coefficient: float, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance AR(1) series along the last axis, started ``BURN_IN`` steps earlier."""
    steps = rng.normal(0.0, np.sqrt(1 - coefficient**2), size=(*shape[:-1], BURN_IN + shape[-1]))
    series = np.zeros(steps.shape)
    for t in range(1, steps.shape[-1]):
        series[..., t] = coefficient * series[..., t - 1] + steps[..., t]
    return series[..., BURN_IN:]


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (sorted by sequence, series and position) with ``log_norm``, ``lag1`` and
    ``lag2`` recomputed from its ``norm``, as the extraction and the shard readers compute
    them."""
    derived = derived_columns(frame["norm"].to_numpy(), frame["position"].to_numpy())
    return frame.assign(**{c: v for c, v in derived.items() if c in frame.columns})


def write_folder(
    frame: pd.DataFrame, folder: Path, shard_texts: int, row_group_size: int | None = None
) -> Path:
    """Write ``frame`` as a finished shard folder (``extract.shards.write_frames``), shards of
    ``shard_texts`` sequences in Parquet row groups of ``row_group_size`` rows, which DuckDB
    reads in parallel."""
    n_texts = int(frame["sequence"].max()) + 1
    parts = (
        frame[frame["sequence"].between(start, stop - 1)].reset_index(drop=True)
        for _, start, stop in shard_ranges(n_texts, shard_texts)
    )
    layers = sorted(frame["layer"].unique().tolist())
    write_frames(
        parts,
        folder,
        n_texts=n_texts,
        shard_texts=shard_texts,
        layers=layers,
        row_group_size=row_group_size,
    )
    return folder
