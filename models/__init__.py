"""Stage 2: tidy frame -> tidy coefficient tables (statsmodels).

Holds:
- ``position_trend(frame, *, method="ols", max_position=30, ...)``: ``log_norm ~ position``
  per layer, by ``"aggregate"`` (the notebook's fit), ``"ols"`` (cluster-robust) or
  ``"mixed"`` (REML, random intercept per sequence);
- ``lag_effects(frame, *, method="ols", ...)``: ``log_norm ~ lag1 + lag2`` per layer;
- ``glance(table)``: one row per layer and fit (n_obs, r2, log-likelihood, AIC/BIC, sigma,
  converged, seconds, warnings; variance components and ``boundary`` for mixed fits).

Usage::

    from attnmag import models

    trend = models.position_trend(frame, method="ols", max_position=30)
    lags = models.lag_effects(frame, method="mixed")
    models.glance(lags)

The modules: ``fits`` (the public fits and the layer loop), ``ols`` and ``mixed`` (one
layer's fit), ``tidy`` (broom-style tables, Holm adjustment, glance).
"""

from attnmag.models.fits import METHODS, PARALLEL_METHODS, lag_effects, position_trend
from attnmag.models.tidy import glance

__all__ = ["METHODS", "PARALLEL_METHODS", "glance", "lag_effects", "position_trend"]
