"""Stage 2: tidy frame -> tidy coefficient tables (statsmodels).

Holds:
- ``fit(frame, formula, *, method="ols", ...)``: any statsmodels formula per group
  (``"ols"``: cluster-robust; ``"mixed"``: REML, random intercept per sequence, optionally
  a random slope on position) -> a ``Fits``;
- ``Fits``: per-group fits that keep their details: ``.tidy``, ``.glance``, ``.results``
  (statsmodels' results, with ``.summary()``), ``.augment()``; ``Fits.concat`` and ``+``
  combine them;
- ``position_trend(frame, *, method="ols", max_position=30, ...)``: ``log_norm ~ position``
  per group, by ``"aggregate"`` (the notebook's fit), ``"ols"`` (cluster-robust) or
  ``"mixed"`` (REML, random intercept per sequence);
- ``lag_effects(frame, *, method="initial_conditions", ...)``: the lag-1 and lag-2 effects
  per group, within texts by ``"initial_conditions"`` (REML random intercept with the
  text's first two levels, Wooldridge 2005; cluster-robust) or ``"gmm"`` (Arellano-Bond),
  or the notebook's pooled ``"ols"`` description of how magnitudes co-vary;
- ``glance(table)``: one row per group and fit (n_obs, n_groups, r2, log-likelihood,
  AIC/BIC, sigma, converged, seconds, warnings; variance components and ``boundary`` for
  mixed fits; Hansen's J and the AR(2) test for ``gmm``), of a table or a ``Fits``;
- ``fit_all(frame, ...)``: every requested method of both named models, the tables a report
  shows and ``attnmag fit`` writes (``position_trend``, ``lag_effects``, ``glance``);
- ``METHODS``: the methods of each named model;
- ``MAX_POSITION``, ``CONF_LEVEL``: the defaults of the trend's last position and of the
  intervals' level.

Each fit takes the frame or a path. A shard folder (``extract.write_shards``, ``attnmag extract
--out``) is fitted without building the frame, from per-sequence sums streamed from its
shards, in memory that does not grow with its rows: ``position_trend``, ``lag_effects`` and
``fit_all`` through ``models.stream``, ``fit`` through patsy's incremental design builder and
per-(group, sequence) cross products (``models.formula``). The tables equal the frame's
(OLS to rounding; REML's maximum to about 1e-6); a folder's ``Fits`` has no rows, so its
``.results`` and ``.augment()`` ask for the frame. A Parquet file is read as the frame.

A group is a layer, or a (model, site, layer, head) combination where the frame has those
columns (``model``: the language models of ``extract.combine``); the tables carry the
grouping columns, and their ``fit`` column names the fit. Holm's correction runs across the
groups of one fit, method and term.

Usage::

    from attnmag import models

    fits = models.fit(frame, "log_norm ~ position + C(label)")
    fits.results[5].summary()
    tables = models.fit_all("norms/")                   # a shard folder, streamed
    trend = models.position_trend(frame, method="ols", max_position=30)
    lags = models.lag_effects(frame)                    # within texts, cluster-robust
    check = models.lag_effects(frame, method="gmm")     # Arellano-Bond
    models.glance(check)

The modules: ``formula`` (``fit``), ``fits`` (the named fits and the per-group loop),
``standard`` (``fit_all``), ``groups`` (the grouping columns), ``results`` (``Fits``),
``ols``, ``mixed`` and ``gmm`` (one group's fit), ``lags`` (the lag models' rows: initial
conditions, differenced equations), ``tidy`` (broom-style tables, Holm adjustment, glance).
"""

from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import METHODS, lag_effects, position_trend
from attnmag.models.formula import fit
from attnmag.models.results import Fits
from attnmag.models.standard import fit_all
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
]
