"""Stage 2: tidy frame -> tidy coefficient tables, per group (a layer, or a (model, site,
layer, head) combination where the frame has those columns).

Holds:
- ``position_trend(frame, *, method="ols", ...)``: ``log_norm ~ position`` by ``"aggregate"``
  (the notebook's fit), ``"ols"`` (cluster-robust) or ``"mixed"`` (REML) -> a ``Fits``;
- ``lag_effects(frame, *, method="initial_conditions", ...)``: the lag-1 and lag-2 effects,
  within texts by ``"initial_conditions"`` or ``"gmm"`` (Arellano-Bond), or the notebook's
  pooled ``"ols"`` -> a ``Fits``;
- ``fit(frame, formula, *, method="ols", ...)``: any statsmodels formula -> a ``Fits``;
- ``Fits``: ``.tidy``, ``.glance``, ``.results`` (statsmodels', built when asked for),
  ``.augment()``; ``Fits.concat`` and ``+`` combine them;
- ``glance(fits)``: one row per group and fit;
- ``fit_all(frame, ...)``: every requested method of both named fits (``attnmag fit``);
- ``write_fits`` / ``read_fits``: those fits as CSV files (tidy tables, ``glance.csv``);
- ``METHODS``, ``MAX_POSITION``, ``CONF_LEVEL``: the methods and the defaults.

Each fit takes a frame, a shard folder's or Parquet file's path, or a ``source.Source``:
DuckDB sums per-(group, sequence) cross products, and one estimator per method fits them.
docs/guide-models.md says what each method estimates and assumes.

Usage::

    from attnmag import models

    fits = models.fit(frame, "log_norm ~ position + C(label)")
    fits.results[5].summary()
    trend = models.position_trend("norms/", method="ols")   # a shard folder
    lags = models.lag_effects(frame, method="gmm")
    lags.glance

The modules: ``source``, ``named``, ``formula``, ``standard`` (``fit_all``), ``checks``,
``groups``, ``results`` (``Fits``), ``tidy`` (tables, Holm, glance), the estimators ``ols``,
``mixed``, ``gmm`` and ``cr2``, and ``leading`` (the leading-position diagnostic).
"""

from attnmag.models.checks import METHODS
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.formula import fit
from attnmag.models.named import lag_effects, position_trend
from attnmag.models.results import Fits
from attnmag.models.standard import fit_all, read_fits, write_fits
from attnmag.models.tidy import glance

__all__ = [
    "CONF_LEVEL",
    "MAX_POSITION",
    "METHODS",
    "Fits",
    "fit",
    "fit_all",
    "glance",
    "lag_effects",
    "position_trend",
    "read_fits",
    "write_fits",
]
