"""Fits that keep their details: the tidy and glance tables, statsmodels' results, the rows.

Holds ``Fits`` (what every fit returns, in the manner of R's broom and of statsmodels) and
``GroupFit`` (one group's part), objects rather than ``DataFrame.attrs`` (which ``pd.concat``
drops); ``Fits.tidy`` still carries its glance records in ``attrs["glance"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import patsy

from attnmag.errors import AttnmagError
from attnmag.models.groups import key_of

__all__ = ["Fits", "GroupFit"]


@dataclass(frozen=True)
class GroupFit:
    """One group's fit: ``(fit, method)``, its values by column, the formula, ``rows`` (reads
    them again), the estimates and ``result`` (builds statsmodels' result; or ``None``)."""

    names: tuple[str, str]
    groups: dict[str, object]
    formula: str
    rows: Callable[[], pd.DataFrame]
    estimate: pd.Series
    result: Callable[[], object] | None


class _Results(Mapping):
    """Key -> statsmodels result, each built from its group's fit when first asked for; the
    key is the group's, or ``(fit, method, *key)`` where several fits are present."""

    def __init__(self, parts: list[GroupFit]) -> None:
        several = len({part.names for part in parts}) > 1
        keys = (key_of([*(part.names if several else ()), *part.groups.values()]) for part in parts)
        self._parts, self._built = dict(zip(keys, parts, strict=True)), {}

    def __getitem__(self, key: Hashable) -> object:
        if key not in self._built:
            if not self._parts:
                raise KeyError("these fits were read back from their tables: no rows to refit")
            if key not in self._parts:
                raise KeyError(f"no fit for the group {key!r}; the keys are {list(self)}")
            result = self._parts[key].result
            self._built[key] = None if result is None else result()
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
    """Per-group fits of one or more models.

    Attributes
    ----------
    tidy : pandas.DataFrame
        One row per group and term.
    glance : pandas.DataFrame
        One row per group and fit.
    results : Mapping
        Group key (the layer, or the tuple of the grouping columns' values; ``(fit,
        method, *key)`` for several fits) -> statsmodels' results object, built from the
        group's rows when first asked for, its ``params`` the tidy estimates by term name;
        ``None`` for ``gmm`` and a mixed maximum on the boundary.

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
        self.results: Mapping = _Results(self._parts)

    def augment(self) -> pd.DataFrame:
        """The fitted rows with ``fitted`` (X b: for mixed fits without the random effects)
        and ``resid`` (outcome minus fitted).

        >>> rows = fits.augment()
        >>> len(rows) == int(fits.glance["n_obs"].sum())
        True
        >>> ax = rows.plot.scatter("fitted", "resid")
        """
        return pd.concat([_augment(part) for part in self._parts], ignore_index=True)

    @classmethod
    def concat(cls, fits: Iterable[Fits]) -> Fits:
        """Several ``Fits`` as one.

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


def _augment(part: GroupFit) -> pd.DataFrame:
    """One group's rows with ``fitted`` and ``resid``."""
    fit, method = part.names
    data = part.rows()
    outcome, design = patsy.dmatrices(part.formula, data, return_type="dataframe")
    fitted = design.to_numpy(np.float64) @ part.estimate.to_numpy(np.float64)
    rows = data.loc[design.index]
    names = pd.DataFrame({"fit": fit, "method": method, **part.groups}, index=rows.index)
    computed = outcome.drop(columns=rows.columns, errors="ignore")  # an outcome such as np.log(x)
    out = pd.concat([names, rows, computed], axis=1)
    resid = outcome.iloc[:, 0].to_numpy() - fitted
    return out.assign(fitted=fitted, resid=resid).reset_index(drop=True)
