"""Stage 2: tidy frame -> tidy coefficient tables, per group (a layer, or a (model, site,
layer, head) combination where the frame has those columns).

Holds ``position_trend`` (``log_norm ~ position`` by ``"aggregate"``, ``"ols"`` or
``"mixed"``), ``lag_effects`` (the lag-1 and lag-2 effects by ``"initial_conditions"``,
``"gmm"`` or the pooled ``"ols"``), ``fit`` (any formula), each -> a ``Fits`` (``.tidy``,
``.glance``, ``.results``, ``.augment()``); ``glance``; ``fit_all`` (every method of both
named fits, ``attnmag fit``); ``write_fits`` / ``read_fits`` (CSV files); ``METHODS``,
``MAX_POSITION`` and ``CONF_LEVEL``.

Each fit takes a frame, a shard folder's or Parquet file's path, or a ``source.Source``:
DuckDB sums per-(group, sequence) cross products, and one estimator per method fits them
(docs/guide-models.md)::

    fits = models.fit(frame, "log_norm ~ position + C(label)")
    fits.results[5].summary()
    trend = models.position_trend("norms/", method="ols")   # a shard folder

The modules: ``source``, ``named``, ``formula``, ``standard``, ``checks``, ``groups``,
``results``, ``tidy``, the estimators ``ols``, ``mixed``, ``gmm``, ``cr2``, and ``leading``.
"""

from attnmag.models.checks import CONF_LEVEL, MAX_POSITION, METHODS
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
