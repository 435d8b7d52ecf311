"""Aggregates of the tidy frame and of the coefficient tables that the report's parts share.

Holds:
- ``mean_ci``: token-weighted means with cluster-robust (CR1, by sequence) t intervals;
- ``sequence_lengths``: real tokens per sequence;
- ``layer_means``: mean of a column per layer (first token left out by default);
- ``position_means``: mean norm per layer and position, and its log with the logged interval;
- ``position_means_across_layers``: mean norm per position over all layers;
- ``interval_level`` and ``percent``: the level a coefficient table's intervals carry, and
  that level as text (0.95 -> "95%");
- ``ordered_methods``: methods in the order of ``models.METHODS``;
- ``lag_comparison``: per layer, the within-text lag estimators side by side (their gap in
  ``gmm``'s standard errors), ``gmm``'s specification tests, and the texts and rows each
  lag estimator used.

Every interval of a mean treats the sequence as the unit that was sampled: tokens of one text are
not independent, so the standard error of a mean is the cluster-robust one of an
intercept-only regression (what ``models``' ``ols`` method uses), with G - 1 degrees of
freedom for G sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from attnmag import models
from attnmag.errors import AttnmagError

#: The lag estimators compared layer by layer: the default, and the check with fewer
#: assumptions whose standard errors measure the gap.
COMPARED = ("initial_conditions", "gmm")
#: How far apart (in ``gmm``'s standard errors) the two may be before a layer is flagged.
GAP_LIMIT = 2.0
#: ``gmm``'s specification tests, as ``glance`` names them.
GMM_TESTS = ("hansen_j", "hansen_df", "hansen_p", "ar2_statistic", "ar2_p", "n_instruments")


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
    """Mean of ``value`` per layer with its ``conf_level`` interval, see ``mean_ci``."""
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


def interval_level(table: pd.DataFrame, *, name: str = "table") -> float:
    """The level of ``table``'s intervals, from its ``conf_level`` column.

    Raises ``AttnmagError`` where the column is missing or holds more than one level, so
    that no caption can print a level the intervals were not computed at.

    >>> interval_level(models.position_trend(frame, conf_level=0.8))  # doctest: +SKIP
    0.8
    """
    if "conf_level" not in table.columns:
        raise AttnmagError(
            f"the {name} table has no conf_level column, so its intervals' level is unknown; "
            "refit it with this attnmag"
        )
    levels = table["conf_level"].dropna().unique()
    if len(levels) != 1:
        raise AttnmagError(
            f"the {name} table holds intervals at {len(levels)} levels "
            f"({sorted(float(x) for x in levels)}); a report shows one level per table"
        )
    return float(levels[0])


def percent(level: float) -> str:
    """A level as a percentage: 0.95 -> '95%', 0.975 -> '97.5%'."""
    return f"{round(100 * level, 6):g}%"


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """``methods`` without repeats, in the order ``models.METHODS`` lists them, unknown last."""
    known = list(dict.fromkeys(m for names in models.METHODS.values() for m in names))
    found = list(dict.fromkeys(methods))
    return [m for m in known if m in found] + sorted(m for m in found if m not in known)


def lag_comparison(lags: pd.DataFrame, glance: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per layer: the lag estimators side by side, ``gmm``'s tests, and what each one used.

    Columns: ``layer``; ``texts_<method>`` and ``rows_<method>`` for each method in
    ``lags``; where both ``initial_conditions`` and ``gmm`` are present, ``gap_lag1`` and
    ``gap_lag2`` (their difference in ``gmm``'s standard errors) and ``flagged`` (either gap
    beyond ``GAP_LIMIT``); and the ``gmm`` rows' Hansen J and AR(2) tests from ``glance``
    where it carries them.

    >>> lag_comparison(models.lag_effects(frame, method="gmm"))  # doctest: +SKIP
    """
    keys = ["layer", "method"]
    sizes = lags.drop_duplicates(keys).pivot(
        index="layer", columns="method", values=["n_groups", "n_obs"]
    )
    out = pd.DataFrame(index=pd.Index(sorted(lags["layer"].unique()), name="layer"))
    for method in ordered_methods(lags["method"]):
        out[f"texts_{method}"] = sizes["n_groups"][method]
        out[f"rows_{method}"] = sizes["n_obs"][method]
    if set(COMPARED) <= set(lags["method"]):
        default, check = COMPARED
        for term in ("lag1", "lag2"):
            rows = lags[lags["term"] == term].pivot(
                index="layer", columns="method", values=["estimate", "std_error"]
            )
            gap = (rows["estimate"][default] - rows["estimate"][check]) / rows["std_error"][check]
            out[f"gap_{term}"] = gap
        out["flagged"] = (out[["gap_lag1", "gap_lag2"]].abs() > GAP_LIMIT).any(axis=1)
    if glance is not None and "method" in glance:
        tests = glance[(glance["method"] == COMPARED[1])]
        if "model" in tests:
            tests = tests[tests["model"] == "lag_effects"]
        present = [c for c in GMM_TESTS if c in tests]
        if present and len(tests):
            out = out.join(tests.set_index("layer")[present].astype(float))
    return out.reset_index()
