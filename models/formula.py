"""Any statsmodels formula, fitted per group: ``models.fit``.

Holds:
- ``fit``: a formula (``"log_norm ~ position + C(label)"``) fitted once per group by
  cluster-robust OLS or REML mixed model -> a ``Fits`` (tidy, glance, statsmodels results,
  augment);
- ``FORMULA_METHODS``: the methods ``fit`` accepts.

The formula is patsy's, as statsmodels' formula API takes it: ``C(label)`` for a
categorical, ``a * b`` for main effects and their interaction, ``I(position ** 2)``,
``np.log(norm)``. Term names are statsmodels', with ``Intercept`` named ``intercept``.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable

import numpy as np
import pandas as pd
import patsy
import patsy.builtins

from attnmag.errors import AttnmagError
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import FitSpec, check_options, fit_groups, group_rows
from attnmag.models.groups import GROUP_COLUMNS, describe
from attnmag.models.results import Fits
from attnmag.models.tidy import term_names

FORMULA_METHODS = ("ols", "mixed")
#: ``re_formula`` values ``fit`` accepts: a random intercept, or with a slope on position.
RE_FORMULAS = (None, "~position")
#: Names a formula may use besides the frame's columns: patsy's functions, numpy, builtins.
_FUNCTIONS = frozenset({*patsy.builtins.__all__, "np", "numpy", *dir(builtins)})


def fit(
    frame: pd.DataFrame,
    formula: str,
    *,
    method: str = "ols",
    re_formula: str | None = None,
    positions: tuple[int, int] = (1, MAX_POSITION),
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> Fits:
    """Fit a statsmodels formula once per group of the frame.

    The groups are the frame's grouping columns: ``layer``, and ``model`` (the language
    models of ``extract.combine``), ``site`` and ``head`` where present: one fit per
    (model, site, layer, head). The tables' ``fit`` column names the fit, here the formula.

    Rows are those at positions ``positions[0]``..``positions[1]`` (inclusive); rows with a
    missing value in any column the formula uses are dropped (``lag1`` is missing at a
    text's first position, for instance), so ``n_obs`` counts the rows each fit used.
    Sequence-level columns (e.g. ``label``, carried by ``extract.attention_norms(...,
    keep=["label"])``) enter as covariates.

    Parameters
    ----------
    frame : pandas.DataFrame
        The tidy frame (``sequence``, ``layer``, ``position`` and the formula's columns).
    formula : str
        A statsmodels (patsy) formula with an outcome, e.g. ``"log_norm ~ position +
        C(label)"`` or ``"log_norm ~ position * C(label)"``.
    method : {"ols", "mixed"}
        ``"ols"``: token-level OLS with CR1 standard errors clustered by sequence, t on
        G - 1 df (G sequences). ``"mixed"``: a REML linear mixed model with a random
        intercept per sequence (``fit_mixed``: REML's global maximum, confirmed by
        statsmodels' MixedLM).
    re_formula : {None, "~position"}
        For ``"mixed"``: ``None``, a random intercept; ``"~position"``, a random intercept
        and a random slope on position, correlated.
    positions : tuple of int
        The first and last position used, inclusive; ``(1, 30)`` leaves out the first
        token (the attention sink).
    cov_type : {"cluster", "model"}
        For ``"mixed"``: the fixed effects' CR1 sandwich by sequence (t on G - 1 df), or
        lme4's model-based covariance (Wald z). ``"ols"`` takes only ``"cluster"``.
    conf_level : float
        The level of ``conf_low``/``conf_high`` (``models.CONF_LEVEL`` by default).
    n_jobs : int, optional
        Worker processes for ``"mixed"`` (``None`` or -1: one per core); ``"ols"`` fits
        in this process, where it is quicker.
    progress : bool, optional
        A progress bar on stderr over the groups: True, False, or None (shown where
        someone watches, once the fits take more than a second).

    Returns
    -------
    Fits
        ``.tidy`` (one row per group and term, ``fit`` = the formula), ``.glance`` (one
        row per group), ``.results`` (group key -> statsmodels result), ``.augment()``.

    Examples
    --------
    >>> fits = models.fit(frame, "log_norm ~ position + C(label)")  # doctest: +SKIP
    >>> fits.tidy.query("term == 'C(label)[T.rotten]'")  # doctest: +SKIP
    >>> fits.results[5].summary()  # doctest: +SKIP
    >>> fits.augment().plot.scatter("fitted", "resid")  # doctest: +SKIP
    """
    check_options("fit", method, FORMULA_METHODS, conf_level, cov_type)
    random_slope = _random_slope(re_formula, method)
    first, last = _positions(positions)
    columns = _columns(formula, frame.columns)
    groups, parts = group_rows(
        frame,
        columns,
        first=first,
        last=last,
        layers=None,
        n_terms=0,
        n_positions=2 if random_slope else 1,
        drop_missing=True,
    )
    terms = _terms(formula, pd.concat([part for _, part in parts]))
    for key, part in parts:
        if len(part) < len(terms) + 2:
            raise AttnmagError(
                f"{describe(groups, key)} has {len(part)} rows at positions {first}..{last} "
                f"without missing values; the formula's {len(terms)} terms need at least "
                f"{len(terms) + 2}"
            )
    spec = FitSpec(
        fit=formula.strip(),
        method=method,
        formula=formula,
        terms=tuple(terms),
        conf_level=conf_level,
        random_slope=random_slope,
        cov_type=cov_type,
        first=first,
    )
    return fit_groups(spec, groups, parts, n_jobs=n_jobs, progress=progress)


def _random_slope(re_formula: str | None, method: str) -> bool:
    """``re_formula`` -> whether the mixed model has a random slope on position."""
    if re_formula is None:
        return False
    if "".join(re_formula.split()) not in RE_FORMULAS:
        raise AttnmagError(
            f"re_formula must be None (a random intercept) or '~position' (and a random "
            f"slope on position), not {re_formula!r}"
        )
    if method != "mixed":
        raise AttnmagError(f"re_formula needs method='mixed', not method={method!r}")
    return True


def _positions(positions: tuple[int, int]) -> tuple[int, int]:
    """``(first, last)`` checked: two whole numbers, 0 <= first <= last."""
    try:
        first, last = (int(value) for value in positions)
        valid = (first, last) == tuple(positions) and 0 <= first <= last
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise AttnmagError(
            f"positions must be (first, last) whole numbers with 0 <= first <= last, "
            f"not {positions!r}"
        )
    return first, last


def _columns(formula: str, available: Iterable[str]) -> list[str]:
    """The frame columns a formula uses, with ``sequence`` and ``position``; unknown names
    and formulas patsy cannot read are one-line errors."""
    if not isinstance(formula, str):
        raise AttnmagError(
            f"the formula must be a string such as 'log_norm ~ position', not {formula!r}"
        )
    try:
        description = patsy.ModelDesc.from_formula(formula)
    except patsy.PatsyError as error:
        raise AttnmagError(f"cannot read the formula {formula!r}: {_first_line(error)}") from None
    if not description.lhs_termlist:
        raise AttnmagError(f"the formula {formula!r} has no outcome; write e.g. 'log_norm ~ ...'")
    names: list[str] = []
    for term in [*description.lhs_termlist, *description.rhs_termlist]:
        for factor in term.factors:
            tree = ast.parse(factor.code, mode="eval")
            names += [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]
    available = set(available)
    unknown = [name for name in dict.fromkeys(names) if name not in available | _FUNCTIONS]
    if unknown:
        raise AttnmagError(
            f"the formula {formula!r} names {unknown}, which the frame has no columns for"
        )
    used = [name for name in dict.fromkeys(names) if name in available]
    constant = [name for name in used if name in GROUP_COLUMNS]
    if constant:
        raise AttnmagError(
            f"the formula {formula!r} uses the grouping columns {constant}, which are constant "
            "within each fit (fit runs once per group)"
        )
    return list(dict.fromkeys(["sequence", "position", *used]))


def _terms(formula: str, rows: pd.DataFrame) -> list[str]:
    """The formula's term names on ``rows`` (statsmodels' names, ``intercept``)."""
    try:
        _, design = patsy.dmatrices(
            formula,
            rows,
            eval_env=patsy.EvalEnvironment([{"np": np}]),
            return_type="dataframe",
        )
    except patsy.PatsyError as error:
        raise AttnmagError(f"cannot fit the formula {formula!r}: {_first_line(error)}") from None
    return term_names(design.columns)


def _first_line(error: Exception) -> str:
    """An exception's message, first line only (patsy's add a caret diagram)."""
    return str(error).strip().splitlines()[0]
