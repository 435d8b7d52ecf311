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
  ``"mixed"`` (REML, random intercept per sequence) -> a ``Fits``;
- ``lag_effects(frame, *, method="initial_conditions", ...)``: the lag-1 and lag-2 effects
  per group, within texts by ``"initial_conditions"`` (ML random intercept with the
  text's first two levels, Wooldridge 2005; cluster-robust, with a test of a random lag-1
  slope) or ``"gmm"`` (Arellano-Bond), or the notebook's pooled ``"ols"`` description of
  how magnitudes co-vary -> a ``Fits``;
- ``glance(fits)``: one row per group and fit (n_obs, n_groups, r2, log-likelihood,
  AIC/BIC, sigma, converged, seconds, warnings; variance components and ``boundary`` for
  mixed fits; Hansen's J and the AR(2) test for ``gmm``; for the named fits the
  leading-position diagnostic), of a ``Fits`` or its tidy table;
- ``fit_all(frame, ...)``: every requested method of both named models, what a report shows
  and ``attnmag fit`` writes: a ``Fits`` by name (``position_trend``, ``lag_effects``);
- ``write_fits(fits, folder)`` / ``read_fits(folder)``: those fits as the CSV files
  ``attnmag fit`` writes (the tidy tables, and ``glance.csv`` beside them), and read back;
- ``METHODS``: the methods of each named model;
- ``MAX_POSITION``, ``CONF_LEVEL``: the defaults of the trend's last position and of the
  intervals' level.

Each fit takes the frame, a path or a ``models.source.Source``, and goes one way: the rows
are a DuckDB view (a frame registered, not copied; a shard folder's verified shards, verified
once per process), DuckDB sums per-(group, sequence) cross products, and one estimator per
method turns them into estimates, in memory that grows with the texts, not the rows. A
Parquet file is read as the frame. ``Fits.results`` and ``.augment()`` read a group's rows
again (from the frame or the folder) when asked for.

A group is a layer, or a (model, site, layer, head) combination where the frame has those
columns (``model``: the language models of ``extract.combine``); the tables carry the
grouping columns, and their ``fit`` column names the fit. Holm's correction runs across the
groups of one fit, method and term.

Usage::

    from attnmag import models

    fits = models.fit(frame, "log_norm ~ position + C(label)")
    fits.results[5].summary()
    fits = models.fit_all("norms/")                     # a shard folder
    trend = models.position_trend(frame, method="ols", max_position=30)
    trend.tidy; trend.results[5].params                 # the same estimates, by name
    lags = models.lag_effects(frame)                    # within texts, cluster-robust
    check = models.lag_effects(frame, method="gmm")     # Arellano-Bond
    check.glance

The modules: ``source`` (what a fit reads), ``named`` (``position_trend``, ``lag_effects``),
``formula`` (``fit``), ``standard`` (``fit_all``, ``write_fits``, ``read_fits``), ``checks``
(methods, checks of options and rows), ``groups`` (the grouping columns), ``results``
(``Fits``), ``ols``, ``mixed`` and ``gmm`` (the estimators), ``cr2`` (CR2 errors with
Bell-McCaffrey df, the trend's default below 50 texts), ``leading`` (leading positions that
stand off the rest), ``tidy`` (broom-style tables, Holm adjustment, glance).
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
