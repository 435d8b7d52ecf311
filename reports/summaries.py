"""Aggregates of the tidy frame that the figures and the findings share.

Holds:
- ``mean_ci``: token-weighted means with cluster-robust (CR1, by sequence) t intervals;
- ``sequence_lengths``: real tokens per sequence;
- ``layer_means``: mean of a column per layer (first token left out by default);
- ``position_means``: mean norm per layer and position, and its log with the logged interval;
- ``position_means_across_layers``: mean norm per position over all layers.

Every interval treats the sequence as the unit that was sampled: tokens of one text are
not independent, so the standard error of a mean is the cluster-robust one of an
intercept-only regression (what ``models``' ``ols`` method uses), with G - 1 degrees of
freedom for G sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(
    data: pd.DataFrame,
    *,
    value: str,
    by: str | Sequence[str],
    cluster: str = "sequence",
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Mean of ``value`` per ``by`` group with a t interval, clustered by ``cluster``.

    Returns one row per group (index ``by``) with ``n``, ``n_groups`` (clusters), ``mean``,
    ``std_error``, ``conf_low`` and ``conf_high``; intervals are NaN for a single cluster.
    """
    keys = [by] if isinstance(by, str) else list(by)
    grouper = data.groupby(keys, sort=True)
    group = grouper.ngroup().to_numpy()
    y = data[value].to_numpy(np.float64)
    n = np.bincount(group)
    mean = np.bincount(group, weights=y) / n
    clusters = pd.factorize(data[cluster])[0].astype(np.int64)
    width = int(clusters.max()) + 1
    pairs, pair_of_row = np.unique(group * width + clusters, return_inverse=True)
    cluster_sums = np.bincount(pair_of_row, weights=y - mean[group])
    group_of_pair = pairs // width
    meat = np.bincount(group_of_pair, weights=cluster_sums**2, minlength=len(n))
    g = np.bincount(group_of_pair, minlength=len(n)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(g > 1, np.sqrt(meat / n**2 * g / (g - 1)), np.nan)
        half = stats.t.ppf(0.5 + conf_level / 2, g - 1) * se
    return pd.DataFrame(
        {
            "n": n,
            "n_groups": g.astype(np.int64),
            "mean": mean,
            "std_error": se,
            "conf_low": mean - half,
            "conf_high": mean + half,
        },
        index=grouper.size().index,
    )


def sequence_lengths(frame: pd.DataFrame) -> pd.Series:
    """Number of real tokens per sequence (index ``sequence``), read off the first layer."""
    first = frame["layer"].to_numpy() == frame["layer"].min()
    return frame.loc[first].groupby("sequence")["position"].size().rename("length")


def layer_means(
    frame: pd.DataFrame,
    *,
    value: str = "log_norm",
    exclude_first: bool = True,
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Mean of ``value`` per layer with its 95% (``conf_level``) interval, see ``mean_ci``."""
    rows = frame.loc[frame["position"] >= 1] if exclude_first else frame
    return mean_ci(rows, value=value, by="layer", conf_level=conf_level)


def position_means(
    frame: pd.DataFrame, *, max_position: int = 30, conf_level: float = 0.95
) -> pd.DataFrame:
    """Mean norm per layer and position (0 to ``max_position``) with interval and logs.

    Adds ``log_mean``, ``log_low`` and ``log_high``: the log of the mean and of the
    interval's ends (an interval for the log of the mean; NaN where the low end is <= 0).
    """
    rows = frame.loc[frame["position"] <= max_position]
    out = mean_ci(rows, value="norm", by=["layer", "position"], conf_level=conf_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["log_mean"] = np.log(out["mean"])
        out["log_low"] = np.log(out["conf_low"].where(out["conf_low"] > 0))
        out["log_high"] = np.log(out["conf_high"])
    return out


def position_means_across_layers(
    frame: pd.DataFrame, *, max_position: int = 30, conf_level: float = 0.95
) -> pd.DataFrame:
    """Mean norm per position (0 to ``max_position``) over all layers, clustered by sequence."""
    rows = frame.loc[frame["position"] <= max_position]
    return mean_ci(rows, value="norm", by="position", conf_level=conf_level)
