"""Stage 2: tidy frame -> tidy coefficient tables (statsmodels).

Holds:
- ``position_trend(frame, *, method="ols", max_position=30, ...)``: ``log_norm ~ position``
  per layer, by ``"aggregate"`` (the notebook's fit), ``"ols"`` (cluster-robust) or
  ``"mixed"`` (REML, random intercept per sequence);
- ``lag_effects(frame, *, method="initial_conditions", ...)``: the lag-1 and lag-2 effects
  per layer, within texts by ``"initial_conditions"`` (REML random intercept with the
  text's first two levels, Wooldridge 2005; cluster-robust) or ``"gmm"`` (Arellano-Bond),
  or the notebook's pooled ``"ols"`` description of how magnitudes co-vary;
- ``glance(table)``: one row per layer and fit (n_obs, n_groups, r2, log-likelihood,
  AIC/BIC, sigma, converged, seconds, warnings; variance components and ``boundary`` for
  mixed fits; Hansen's J and the AR(2) test for ``gmm``);
- ``METHODS``, ``PARALLEL_METHODS``: the methods of each model, those fitted in workers;
- ``MAX_POSITION``, ``CONF_LEVEL``: the defaults of the trend's last position and of the
  intervals' level.

Usage::

    from attnmag import models

    trend = models.position_trend(frame, method="ols", max_position=30)
    lags = models.lag_effects(frame)                    # within texts, cluster-robust
    check = models.lag_effects(frame, method="gmm")     # Arellano-Bond
    models.glance(check)

The modules: ``fits`` (the public fits and the layer loop), ``ols``, ``mixed`` and ``gmm``
(one layer's fit), ``lags`` (the lag models' rows: initial conditions, differenced
equations), ``tidy`` (broom-style tables, Holm adjustment, glance).
"""

from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import METHODS, PARALLEL_METHODS, lag_effects, position_trend
from attnmag.models.tidy import glance

__all__ = [
    "CONF_LEVEL",
    "MAX_POSITION",
    "METHODS",
    "PARALLEL_METHODS",
    "glance",
    "lag_effects",
    "position_trend",
]
