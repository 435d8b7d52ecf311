"""One layer's mixed fit straight from its rows, for tests and ``benchmarks/reml.py``.

``fit_mixed`` builds statsmodels' ``MixedLM`` design for ``formula`` with a random intercept
(and optionally a random slope on position) per ``sequence``, and fits it with the library's
``models.mixed.mixed_fit``: an independent route to the per-sequence cross products that
``models.fit`` and the named fits compute by SQL.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from attnmag.models.checks import check_options
from attnmag.models.mixed import GroupedDesign, mixed_fit, mixed_result
from attnmag.models.tidy import Estimate


def fit_mixed(
    data: pd.DataFrame, formula: str, *, random_slope: bool = False, cov_type: str = "cluster"
) -> Estimate:
    """REML fit of ``formula`` on one layer's ``data`` (``mixed_fit``'s ``cov_type``); the
    random slope is fitted on position / sd(position), as ``mixed_result`` does, and
    reported unscaled; ``result`` builds statsmodels' results object (``mixed_result``).
    """
    check_options("fit_mixed", "mixed", ("mixed",), 0.95, cov_type)
    spread = float(data["position"].std()) if random_slope else 1.0
    scaled = data.assign(position_sd=data["position"] / spread)
    groups = data["sequence"].to_numpy()
    re_formula = "~position_sd" if random_slope else None
    model = smf.mixedlm(formula, scaled, groups=groups, re_formula=re_formula)
    design = GroupedDesign.of(model.exog, model.exog_re, model.endog, groups)
    return mixed_fit(
        design,
        np.array([1.0, 1.0 / spread][: design.k_re]),
        list(model.exog_names),
        len(model.group_labels),
        cov_type=cov_type,
        result=partial(mixed_result, data, formula, random_slope),
    )
