"""Any statsmodels formula, fitted per group: ``models.fit``.

Holds ``fit`` (a formula fitted per group by cluster-robust OLS or a REML mixed model),
``FORMULA_METHODS`` and ``BATCH_ROWS`` (the rows read at a time). patsy's incremental
builder fixes one design over all the rows (a text column's categories: a categorical's own,
``token`` by ``token_id``, others sorted), ``GroupedDesign.of`` sums each batch's ``[X | 1 |
position | y]`` into per-(group, sequence) cross products, and ``named.fit_design`` fits each group:
memory is a batch's and the sums', whatever the rows.
"""

from __future__ import annotations

import ast
import builtins
import os
from collections.abc import Hashable, Iterable, Iterator
from functools import partial

import duckdb
import numpy as np
import pandas as pd
import patsy
import patsy.builtins

from attnmag.database import n_threads
from attnmag.errors import AttnmagError
from attnmag.models.checks import (
    CONF_LEVEL,
    MAX_POSITION,
    check_columns,
    check_options,
    check_position,
    check_size,
    not_finite,
)
from attnmag.models.groups import (
    GROUP_COLUMNS,
    describe,
    group_keys,
    key_of,
    key_values,
    sql_list,
)
from attnmag.models.mixed import GroupedDesign
from attnmag.models.named import fit_design
from attnmag.models.results import Fits
from attnmag.models.source import Source, open_source
from attnmag.models.tidy import fits_of, fitted_rows
from attnmag.progress import progress_bar

__all__ = ["BATCH_ROWS", "FORMULA_METHODS", "fit"]

FORMULA_METHODS = ("ols", "mixed")
RE_FORMULAS = (None, "~position")
#: Names a formula may use besides the frame's columns.
_FUNCTIONS = frozenset({*patsy.builtins.__all__, "np", "numpy", *dir(builtins)})
BATCH_ROWS = 1 << 16
_ENVIRONMENT = patsy.EvalEnvironment([{"np": np}])


def fit(
    frame: pd.DataFrame | str | os.PathLike,
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
    """Fit a statsmodels (patsy) formula once per group of the frame.

    Rows with a missing value in a column the formula uses are dropped; term names are
    statsmodels' (``Intercept``, ``C(label)[T.fresh]``).

    Parameters
    ----------
    frame : pandas.DataFrame, str, os.PathLike or Source
        The tidy frame, or a shard folder's or Parquet file's path.
    formula : str
        With an outcome, e.g. ``"log_norm ~ position * C(label)"``.
    method : {"ols", "mixed"}
        Token-level OLS, or REML with a random intercept per sequence.
    re_formula : {None, "~position"}
        For ``"mixed"``: a correlated random slope on position too.
    positions : tuple of int
        The first and last position used, inclusive.
    cov_type : {"cluster", "cr2", "model"}
        As for ``position_trend`` (``"cr2"``: no ``results`` for ``ols``).
    conf_level, n_jobs, progress
        As for ``position_trend`` (the bar counts the batches read).

    Returns
    -------
    Fits
        Its ``fit`` column is the formula.

    Examples
    --------
    >>> fits = models.fit(frame, "log_norm ~ position + C(label)", n_jobs=1)
    >>> fits.tidy.query("layer == 5")["term"].tolist()[1:]
    ['C(label)[T.fresh]', 'position']
    >>> fits.results[5].params.size
    3
    >>> fits.augment().columns.tolist()
    [...'fitted', 'resid'...]
    >>> on_folder = models.fit(shards, "log_norm ~ position * C(token_id % 2)", n_jobs=1)
    >>> on_folder.tidy["layer"].unique().tolist()
    [0, 1, 2]
    """
    n_threads(n_jobs)
    check_options("fit", method, FORMULA_METHODS, conf_level, cov_type)
    random_slope = _random_slope(re_formula, method)
    if not isinstance(positions, tuple | list) or len(positions) != 2:
        raise AttnmagError(f"positions must be a pair (first, last), not {positions!r}")
    first, last = positions
    check_position("positions' last", last)
    check_position("positions' first", first, last)
    source = open_source(frame)
    with source.connected(n_jobs) as connection:
        described = connection.execute("SELECT column_name, column_type FROM (DESCRIBE frame)")
        types = dict(described.fetchall())
        columns = _columns(formula, types)
        check_columns(source.name, list(types), ["layer", *columns])
        groups, keys = group_keys(connection, list(types))
        reader = _Reader(connection, groups, columns, types, first=first, last=last)
        # With no rows to fit, the groups' checks say so (patsy cannot build a design).
        designs = None
        if next(reader.batches(), None) is not None:
            try:
                designs = patsy.incr_dbuilders(formula, reader.batches, eval_env=_ENVIRONMENT)
            except patsy.PatsyError as error:
                message = f"cannot fit the formula {formula!r}: {_first_line(error)}"
                raise AttnmagError(message) from None
            if (n_outcomes := len(designs[0].column_names)) != 1:
                message = f"the formula {formula!r} has {n_outcomes} outcome columns; it needs one"
                raise AttnmagError(message)
        bar = {"progress": progress, "desc": f"{method} fit", "delay": 1.0}
        crosses, covered = _cross_products(reader, designs, random_slope, **bar)
    terms = [] if designs is None else list(designs[1].column_names)
    spec = {"fit": formula.strip(), "method": method, "conf_level": conf_level}
    model = {"formula": formula, "random_slope": random_slope, "cov_type": cov_type}
    fitted, k = [], len(terms)
    for key in keys:
        cross = crosses.pop(key, np.empty((0, k + 2 + random_slope, k + 2 + random_slope)))
        design = GroupedDesign(cross, int(round(cross[:, k, k].sum())), k, 1 + random_slope)
        _check_group(describe(groups, key), design, covered.get(key, 0), first, last)
        values = key_values(groups, key)
        rows = partial(reader.group_rows, source, values)
        run = partial(fit_design, design, method, terms, len(cross), rows=rows, **model)
        fitted.append(fitted_rows(run, groups=values, formula=formula, rows=rows, **spec))
    return fits_of(fitted)


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


def _columns(formula: str, available: Iterable[str]) -> list[str]:
    """The frame columns a formula uses, with ``sequence`` and ``position`` (or an error)."""
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
            if factor.memorize_passes_needed({}, _ENVIRONMENT):
                raise AttnmagError(
                    f"{factor.code} depends on all of a group's rows (center, standardize, "
                    "splines), which fit does not compute per group; write it out, e.g. "
                    "I(position - 15)"
                )
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


def _first_line(error: Exception) -> str:
    """An exception's message, first line only (patsy's add a caret diagram)."""
    return str(error).strip().splitlines()[0]


def _cross_products(
    reader: _Reader,
    designs: tuple[patsy.DesignInfo, patsy.DesignInfo] | None,
    slope: bool,
    **bar: object,
) -> tuple[dict[Hashable, np.ndarray], dict[Hashable, int]]:
    """Per group, the per-sequence cross products of ``[X | 1 | position | y]`` (``position``
    with ``slope``) and the positions covered, each batch's by ``GroupedDesign.of``."""
    groups, sums, covered = reader.group_columns, [], []
    keys = [*groups, "sequence"]
    with progress_bar(total=None, unit="batch", **bar) as shown:
        for rows in reader.batches() if designs else ():
            outcome, design = patsy.build_design_matrices(designs, rows, return_type="dataframe")
            rows = rows.loc[design.index, [*keys, "position"]]
            extra = [np.ones(len(rows)), *([rows["position"].to_numpy(np.float64)] * slope)]
            data = np.column_stack([design, *extra, outcome.to_numpy(np.float64)[:, 0]])
            by_sequence = rows.groupby(keys)
            codes = by_sequence.ngroup().to_numpy()
            cross = GroupedDesign.of(data[:, :-1], data[:, :0], data[:, -1], codes).cross
            sums.append(pd.DataFrame(cross.reshape(len(cross), -1), index=by_sequence.size().index))
            covered.append(rows[[*groups, "position"]].drop_duplicates())
            shown.update(1)
    if not sums:
        return {}, {}
    m = int(np.sqrt(sums[0].shape[1]))
    by_key = pd.concat(sums).groupby(level=keys).sum().groupby(level=groups)
    crosses = {key_of(key): part.to_numpy().reshape(-1, m, m) for key, part in by_key}
    positions = pd.concat(covered).drop_duplicates().groupby(groups)
    return crosses, {key_of(key): len(part) for key, part in positions}


class _Reader:
    """The rows of the view ``frame`` that a formula fits, text columns as categoricals."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        groups: list[str],
        columns: list[str],
        types: dict[str, str],
        *,
        first: int,
        last: int,
    ) -> None:
        self.connection, self.group_columns = connection, groups
        self.columns, self.used = [*groups, *columns], columns  # ``_columns``: no group column
        self.first = first
        self.span = f'"position" BETWEEN {int(first)} AND {int(last)}'
        text = [c for c in self.used if types[c].startswith(("VARCHAR", "ENUM"))]
        self.categories = {column: self._categories(column, types) for column in text}

    def _categories(self, column: str, types: dict[str, str]) -> pd.Index:
        """A text column's categories over all the rows."""
        query = f'SELECT DISTINCT "{column}" FROM frame WHERE "{column}" IS NOT NULL ORDER BY 1'
        if types[column].startswith("ENUM"):
            query = f"SELECT unnest(enum_range(NULL::{types[column]}))"
        elif column == "token" and "token_id" in types:
            query = (
                "SELECT token FROM frame WHERE token IS NOT NULL GROUP BY 1 ORDER BY min(token_id)"
            )
        return pd.Index([row[0] for row in self.connection.execute(query).fetchall()])

    def group_rows(self, source: Source, values: dict[str, object]) -> pd.DataFrame:
        """One group's fitted rows, read again from ``source``."""
        return self._rows(source.rows(sql_list(self.used), [self.span], values))

    def batches(self) -> Iterator[pd.DataFrame]:
        """Per batch, the rows the formula fits (patsy's ``data_iter_maker``)."""
        query = f"SELECT {sql_list(self.columns)} FROM frame WHERE {self.span}"
        reader = self.connection.sql(query).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            rows = self._rows(batch.to_pandas())
            if len(rows):
                yield rows

    def _rows(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """``chunk`` less rows with a missing value (an infinite one: error), texts categorical."""
        for column, categories in self.categories.items():
            chunk[column] = pd.Categorical(chunk[column].astype(object), categories=categories)
        rows = chunk.dropna(subset=self.used)
        checked = [column for column in self.used if column not in ("sequence", "position")]
        values = rows[checked].select_dtypes("number")
        if not np.isfinite(values.to_numpy(np.float64)).all():
            raise not_finite(list(values.columns), self.first)
        return rows


def _check_group(group: str, design: GroupedDesign, n_covered: int, first: int, last: int) -> None:
    """A group has the rows, texts and positions its fit needs, and no singular design."""
    k, cross = design.k_fe, design.cross
    counts = {"n_rows": design.n_obs, "n_sequences": len(cross), "n_covered": n_covered}
    check_size(group, first=first, last=last, n_terms=k, n_positions=design.k_re, **counts)
    xx = cross[:, :k, :k].sum(axis=0)
    scale = np.sqrt(np.diag(xx))
    if not scale.all() or np.linalg.matrix_rank(xx / np.outer(scale, scale), tol=1e-10) < k:
        raise AttnmagError(
            f"the formula's design is singular in {group} (a term without "
            "variation there, such as a categorical level its rows lack)"
        )
