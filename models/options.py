"""The fits' methods and the checks of their options, shared by every fit.

Holds:
- ``METHODS``: the methods of ``position_trend`` and ``lag_effects``;
- ``MIXED_METHODS``: those fitted by REML, which take ``cov_type``;
- ``check_options``: a method, interval level and ``cov_type`` checked, one line each.

>>> check_options("position_trend", "ols", METHODS["position_trend"], 0.95, "cluster")
"""

from __future__ import annotations

from attnmag.errors import AttnmagError
from attnmag.models.mixed import COV_TYPES

__all__ = ["METHODS", "MIXED_METHODS", "check_options"]

METHODS = {
    "position_trend": ("aggregate", "ols", "mixed"),
    "lag_effects": ("ols", "initial_conditions", "gmm"),
}
#: Methods fitted as linear mixed models (REML), which take ``cov_type``.
MIXED_METHODS = frozenset({"mixed", "initial_conditions"})


def check_options(
    name: str, method: str, methods: tuple[str, ...], conf_level: float, cov_type: str
) -> None:
    """Reject a method not in ``methods``, a level outside (0, 1), or a cov_type it lacks."""
    if method not in methods:
        raise AttnmagError(f"{name} has no method {method!r}; choose one of {methods}")
    if not 0 < conf_level < 1:
        raise AttnmagError(f"conf_level must lie strictly between 0 and 1, not {conf_level}")
    if cov_type not in COV_TYPES:
        raise AttnmagError(f"cov_type must be one of {list(COV_TYPES)}, not {cov_type!r}")
    if cov_type != "cluster" and method not in MIXED_METHODS:
        raise AttnmagError(
            f"cov_type={cov_type!r} needs a mixed method {sorted(MIXED_METHODS)}, "
            f"not method={method!r}"
        )
