"""Fits that keep their details: the tidy and glance tables, statsmodels' results, the rows.

Holds:
- ``Fits``: what every fit returns (``fit``, ``position_trend``, ``lag_effects``), in the
  manner of R's broom and of statsmodels: ``.tidy`` (one row per group and term),
  ``.glance`` (one row per group), ``.results`` (group key -> the statsmodels results
  object, with ``.summary()``), ``.augment()`` (the fitted rows with ``fitted`` and
  ``resid``); ``Fits.concat`` and ``+`` combine fits without losing any of them;
- ``GroupFit``: one group's part of a ``Fits``.

The details live in an object of their own, not in ``DataFrame.attrs``: pandas documents
``attrs`` as experimental, and ``pd.concat`` of tables drops it. ``Fits.tidy`` still
carries its glance records in ``attrs["glance"]``, so that ``models.glance`` works on it and
on its row selections.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import patsy

from attnmag.errors import AttnmagError

__all__ = ["Fits", "GroupFit"]


@dataclass(frozen=True)
class GroupFit:
    """One group's fit inside a ``Fits``.

    ``names``: the fit's ``(fit, method)``; ``groups``: the group's values by grouping
    column; ``formula``: the fit's formula; ``rows``: reads the rows fitted again (from the
    frame or the shard folder); ``estimate``: the coefficients by term; ``result``: builds
    the statsmodels result from those rows when called, or ``None`` where the fit has none.

    Examples
    --------
    >>> from attnmag.models.ols import cluster_ols_result
    >>> rows = frame.query("layer == 0 and position >= 1")
    >>> part = GroupFit(
    ...     names=("fit", "ols"), groups={"layer": 0}, formula="log_norm ~ position",
    ...     rows=lambda: rows, estimate=pd.Series({"Intercept": 0.0, "position": 0.0}),
    ...     result=lambda: cluster_ols_result(rows, "log_norm ~ position"))
    >>> part.result().params.index.tolist()
    ['Intercept', 'position']
    """

    names: tuple[str, str]
    groups: dict[str, object]
    formula: str
    rows: Callable[[], pd.DataFrame]
    estimate: pd.Series
    result: Callable[[], object] | None


class _Results(Mapping):
    """Key -> statsmodels result, building each from its function on first use."""

    def __init__(self, parts: dict[Hashable, GroupFit]) -> None:
        self._parts = parts
        self._built: dict[Hashable, object] = {}

    def __getitem__(self, key: Hashable) -> object:
        if key not in self._built:
            if not self._parts:
                raise KeyError(
                    "these fits were read back from their tables, without the rows to refit"
                )
            try:
                part = self._parts[key]
            except KeyError:
                raise KeyError(f"no fit for the group {key!r}; the keys are {list(self)}") from None
            self._built[key] = None if part.result is None else part.result()
        return self._built[key]

    def __contains__(self, key: object) -> bool:
        return key in self._parts

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        return f"<statsmodels results of {len(self)} fits; keys {list(self)}>"


class Fits:
    """Per-group fits of one or more models, with their tables, results and rows.

    Attributes
    ----------
    tidy : pandas.DataFrame
        One row per group and term (``models.tidy.TIDY_COLUMNS``, with the grouping
        columns in place of ``layer``); ``tidy.attrs["glance"]`` holds the glance records.
    glance : pandas.DataFrame
        One row per group and fit: n_obs, n_groups, r2, log-likelihood, AIC/BIC, sigma,
        converged, seconds, warnings (and variance components for mixed fits).
    results : Mapping
        Group key -> the statsmodels results object (``.summary()``, ``.params``, ...).
        The key is the layer where the frame has no ``model``, ``site`` or ``head`` column,
        else the tuple ``(model, site, layer, head)`` of those present. A combination of
        several fits is keyed ``(fit, method, *key)``. Each result is built when first
        asked for, by statsmodels on that group's rows, read again from the frame or the
        shard folder: OLS with the same CR1 errors, the ``aggregate`` fit's OLS on the
        position means, or ``MixedLM`` started at REML's maximum; its ``params`` equal the
        tidy rows' estimates, by term name. ``None`` for ``gmm``, and where a mixed fit's
        maximum is on the boundary, where statsmodels' optimiser does not land (the glance
        ``warnings`` say so).

    Examples
    --------
    >>> fits = models.fit(frame, "log_norm ~ position + C(label)", n_jobs=1)
    >>> len(fits.tidy), len(fits.glance)
    (36, 12)
    >>> type(fits.results[5]).__name__
    'RegressionResultsWrapper'
    >>> both = fits + models.fit(frame, "log_norm ~ position", method="mixed", n_jobs=1)
    >>> both.tidy.groupby("method").size().to_dict()
    {'mixed': 24, 'ols': 36}
    """

    def __init__(self, tidy: pd.DataFrame, parts: Iterable[GroupFit]) -> None:
        self._parts = list(parts)
        self.tidy = tidy
        self.glance = pd.DataFrame.from_records(tidy.attrs.get("glance", []))
        self._results = _Results(_keyed(self._parts))

    @property
    def results(self) -> Mapping:
        """Group key -> the statsmodels result (see the class docstring)."""
        return self._results

    def augment(self) -> pd.DataFrame:
        """The fitted rows with ``fitted`` and ``resid`` (outcome minus fitted), for diagnostics.

        ``fitted`` is the fixed-effects prediction X b (for mixed fits the population
        level, without the sequences' random effects).

        Returns
        -------
        pandas.DataFrame
            ``fit``, ``method``, the grouping columns, the fitted rows' columns, the
            outcome as the formula names it, ``fitted`` and ``resid``.

        >>> rows = fits.augment()
        >>> len(rows) == int(fits.glance["n_obs"].sum())
        True
        >>> ax = rows.plot.scatter("fitted", "resid")
        """
        return pd.concat([_augment(part) for part in self._parts], ignore_index=True)

    @classmethod
    def concat(cls, fits: Iterable[Fits]) -> Fits:
        """Several ``Fits`` as one: every tidy row, glance row and result kept.

        >>> label_fits = models.fit(frame, "log_norm ~ position + C(label)", n_jobs=1)
        >>> both = Fits.concat([fits, label_fits])
        >>> both.tidy["fit"].nunique(), len(both.glance)
        (2, 24)
        """
        fits = list(fits)
        if not fits or not all(isinstance(item, Fits) for item in fits):
            raise AttnmagError("Fits.concat takes a non-empty list of Fits")
        tidy = pd.concat([item.tidy for item in fits], ignore_index=True)
        tidy.attrs["glance"] = [record for item in fits for record in item.tidy.attrs["glance"]]
        return cls(tidy, [part for item in fits for part in item._parts])

    def __add__(self, other: object) -> Fits:
        if not isinstance(other, Fits):
            return NotImplemented
        return Fits.concat([self, other])

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        names = self.tidy[["fit", "method"]].drop_duplicates().itertuples(index=False)
        groups = self.tidy.columns[2 : self.tidy.columns.get_loc("term")]
        return (
            f"<Fits: {len(self.glance)} fits of {'; '.join(f'{f} [{m}]' for f, m in names)} "
            f"by {', '.join(groups)}; {len(self.tidy)} tidy rows; .tidy .glance .results "
            ".augment()>"
        )


def _keyed(parts: list[GroupFit]) -> dict[Hashable, GroupFit]:
    """The parts by group key, or by ``(fit, method, *key)`` where several fits are present."""
    several = len({part.names for part in parts}) > 1
    keyed = {}
    for part in parts:
        values = tuple(part.groups.values())
        key = values[0] if len(values) == 1 else values
        keyed[(*part.names, *values) if several else key] = part
    return keyed


def _augment(part: GroupFit) -> pd.DataFrame:
    """One group's rows with ``fitted`` and ``resid``."""
    fit, method = part.names
    data = part.rows()
    outcome, design = patsy.dmatrices(part.formula, data, return_type="dataframe")
    fitted = design.to_numpy(np.float64) @ part.estimate.to_numpy(np.float64)
    rows = data.loc[design.index]
    out = pd.DataFrame({"fit": fit, "method": method, **part.groups}, index=rows.index)
    out = pd.concat([out, rows], axis=1)
    name = outcome.columns[0]
    if name not in out.columns:
        out[name] = outcome.iloc[:, 0]
    out["fitted"] = fitted
    out["resid"] = outcome.iloc[:, 0].to_numpy() - fitted
    return out.reset_index(drop=True)
