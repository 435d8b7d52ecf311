"""Any statsmodels formula, fitted per group: ``models.fit``.

Holds:
- ``fit``: a formula (``"log_norm ~ position + C(label)"``) fitted once per group by
  cluster-robust OLS or REML mixed model -> a ``Fits`` (tidy, glance, statsmodels results,
  augment), on a frame or straight from a shard folder;
- ``FORMULA_METHODS``: the methods ``fit`` accepts;
- ``BATCH_ROWS``: the rows of a shard read at a time by a fit from a folder.

The formula is patsy's, as statsmodels' formula API takes it: ``C(label)`` for a
categorical, ``a * b`` for main effects and their interaction, ``I(position ** 2)``,
``np.log(norm)``. Term names are statsmodels', with ``Intercept`` named ``intercept``.

From a shard folder (``extract.write_shards``) the frame is never built. The columns the
formula uses are read shard by shard through ``extract.shards.shard_rows`` (which computes
``log_norm`` and the lags the shards do not store), in Arrow batches of ``BATCH_ROWS`` rows:

1. where the formula uses a column stored as a Parquet dictionary (``token``), its
   categories over the folder, ordered as ``extract.read_frame`` orders them;
2. patsy's incremental builder (``patsy.incr_dbuilders``) fixes one design for every batch
   (each categorical's levels, from every batch where they are not a column's categories);
   it stops reading once it knows them, at once for a formula without categoricals;
3. each batch's design rows ``v = [X | 1 | position | y]`` (``position`` for a random
   slope) are summed into per-(group, sequence) cross products ``v'v``.

From these, per group, come what the frame's fit gives (``models.mixed.GroupedDesign``):
OLS with CR1 errors by sequence (the GLS algebra at zero random-effect variance), or REML's
global maximum and the GLS values there (``models.stream``'s mixed fit: statsmodels, which
needs the rows, does not confirm it; the two agree to about 1e-6). Memory is that of a
batch and of the sums: groups x sequences x (columns + 3)^2 numbers, whatever the number of
rows. The frame's fit builds each group's design from that group's rows, the folder's one
design from all of them: they are the same model where each group has every categorical
level (a group without one is refused, naming the group). Transforms whose values depend on
all the rows (``center``, ``standardize``, splines) are refused for a folder: the frame's
fit computes them per group. A ``Fits`` from a folder has tidy and glance tables;
``.results`` and ``.augment()``, which need the rows, say to fit the frame for them.
"""

from __future__ import annotations

import ast
import builtins
import os
from collections.abc import Hashable, Iterable, Iterator
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import patsy
import patsy.builtins
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from attnmag.errors import AttnmagError
from attnmag.extract.norms import progress_bar
from attnmag.extract.shards import shard_rows, verified_shards
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.fits import (
    FitSpec,
    Plan,
    check_options,
    fit_plans,
    fitted_rows,
    frame_or_folder,
    group_rows,
)
from attnmag.models.groups import GROUP_COLUMNS, describe, key_values
from attnmag.models.mixed import GroupedDesign
from attnmag.models.results import Fits, GroupFit
from attnmag.models.stream import _connection, _mixed, _ols
from attnmag.models.tidy import Fit, build_table, term_names

FORMULA_METHODS = ("ols", "mixed")
#: ``re_formula`` values ``fit`` accepts: a random intercept, or with a slope on position.
RE_FORMULAS = (None, "~position")
#: Names a formula may use besides the frame's columns: patsy's functions, numpy, builtins.
_FUNCTIONS = frozenset({*patsy.builtins.__all__, "np", "numpy", *dir(builtins)})
#: Rows of a shard read at a time by a fit from a folder.
BATCH_ROWS = 1 << 16
#: The environment formulas are evaluated in.
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
    frame : pandas.DataFrame, str or os.PathLike
        The tidy frame (``sequence``, ``layer``, ``position`` and the formula's columns);
        or the path of a shard folder of ``extract.write_shards``, fitted from streamed
        per-sequence cross products without building the frame (see the module
        docstring), or of a Parquet file, read as the frame.
    formula : str
        A statsmodels (patsy) formula with an outcome, e.g. ``"log_norm ~ position +
        C(label)"`` or ``"log_norm ~ position * C(label)"``.
    method : {"ols", "mixed"}
        ``"ols"``: token-level OLS with CR1 standard errors clustered by sequence, t on
        G - 1 df (G sequences). ``"mixed"``: a REML linear mixed model with a random
        intercept per sequence (``fit_mixed``: REML's global maximum, confirmed by
        statsmodels' MixedLM on a frame; the GLS values there on a folder).
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
        Worker processes for ``"mixed"`` on a frame (``None`` or -1: one per core);
        ``"ols"`` fits in this process, where it is quicker, as does a folder.
    progress : bool, optional
        A progress bar on stderr over the groups (over the shards for a folder): True,
        False, or None (shown where someone watches, once the fits take more than a
        second).

    Returns
    -------
    Fits
        ``.tidy`` (one row per group and term, ``fit`` = the formula), ``.glance`` (one
        row per group), ``.results`` (group key -> statsmodels result), ``.augment()``
        (the last two of a frame's fit only).

    Examples
    --------
    >>> fits = models.fit(frame, "log_norm ~ position + C(label)")  # doctest: +SKIP
    >>> fits.tidy.query("term == 'C(label)[T.rotten]'")  # doctest: +SKIP
    >>> fits.results[5].summary()  # doctest: +SKIP
    >>> fits.augment().plot.scatter("fitted", "resid")  # doctest: +SKIP
    >>> models.fit("norms/", "log_norm ~ position * C(token_id % 2)").tidy  # doctest: +SKIP
    """
    check_options("fit", method, FORMULA_METHODS, conf_level, cov_type)
    random_slope = _random_slope(re_formula, method)
    first, last = _positions(positions)
    frame = frame_or_folder(frame)
    if isinstance(frame, Path):
        options = {"method": method, "random_slope": random_slope, "cov_type": cov_type}
        return _fit_folder(
            frame,
            formula,
            first=first,
            last=last,
            conf_level=conf_level,
            progress=progress,
            **options,
        )
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
    return fit_plans([Plan(spec, groups, parts)], n_jobs=n_jobs, progress=progress)[0]


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


def _fit_folder(
    folder: Path,
    formula: str,
    *,
    method: str,
    random_slope: bool,
    cov_type: str,
    first: int,
    last: int,
    conf_level: float,
    progress: bool | None,
) -> Fits:
    """``fit`` on a shard folder, from per-(group, sequence) cross products (module
    docstring)."""
    paths = verified_shards(folder)
    with _connection() as connection:
        names = shard_rows(connection, paths[:1]).columns
        columns = _columns(formula, names)
        missing = [column for column in ["layer", *columns] if column not in names]
        if missing:
            raise AttnmagError(
                f"the shard folder {folder} lacks the columns {missing} that the models stage needs"
            )
        _check_stateless(formula)
        groups = [column for column in GROUP_COLUMNS if column in names]
        schema = pq.read_schema(paths[0])  # the stored types: which columns are categorical
        reader = _Reader(connection, paths, schema, [*groups, *columns], first=first, last=last)
        # With no rows to fit, the groups' checks say so (patsy cannot build a design).
        has_rows = next(reader.rows(), None) is not None
        designs = _folder_design(formula, reader) if has_rows else None
        terms = [] if designs is None else term_names(designs[1].column_names)
        sums = _Sums(groups, slope=random_slope)
        bar = progress_bar(
            progress, total=len(paths), unit="shard", desc=f"{method} fit", delay=1.0
        )
        with bar:
            _sum_batches(reader, designs, sums, bar)
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
    fitted = []
    for key in sums.keys():
        cross, n_covered = sums.group(key)
        _check_folder_group(groups, key, cross, n_covered, random_slope, (first, last), terms)
        fitted.append(_fit_folder_group(spec, key_values(groups, key), cross, folder))
    table = build_table([rows for rows, _, _ in fitted], [record for _, record, _ in fitted])
    return Fits(table, [part for _, _, part in fitted])


def _sum_batches(
    reader: _Reader,
    designs: tuple[patsy.DesignInfo, patsy.DesignInfo] | None,
    sums: _Sums,
    bar: object,
) -> None:
    """Add every batch's groups, and its rows' cross products under ``designs``, to ``sums``."""
    for present, rows in reader.batches(bar):
        sums.add_groups(present)
        if len(rows):
            outcome, design = patsy.build_design_matrices(designs, rows, return_type="dataframe")
            sums.add(rows.loc[design.index], design.to_numpy(np.float64), outcome)


def _fit_folder_group(
    spec: FitSpec, values: dict[str, object], cross: np.ndarray, folder: Path
) -> tuple[pd.DataFrame, dict[str, object], GroupFit]:
    """One group's fit from its cross products: table rows, glance record, ``GroupFit``."""
    rows, record, group_fit = fitted_rows(spec, values, partial(_fit_cross, cross, spec))
    part = GroupFit(
        names=(spec.fit, spec.method),
        groups=values,
        formula=spec.formula,
        data=None,
        estimate=group_fit.estimate,
        result=None,
        source=folder,
    )
    return rows, record, part


def _check_stateless(formula: str) -> None:
    """Refuse transforms whose values depend on all the rows (patsy's stateful ones)."""
    description = patsy.ModelDesc.from_formula(formula)
    for term in [*description.lhs_termlist, *description.rhs_termlist]:
        for factor in term.factors:
            if factor.memorize_passes_needed({}, _ENVIRONMENT):
                raise AttnmagError(
                    f"{factor.code} depends on all of a group's rows (center, standardize, "
                    "splines): a fit from a shard folder cannot compute it per group; fit "
                    "extract.read_frame(folder) for it"
                )


class _Reader:
    """The rows of a folder's shards that a formula uses, in batches of ``BATCH_ROWS``.

    ``columns`` are read (the grouping columns, ``sequence``, ``position`` and the
    formula's); a dictionary column (a categorical of the frame, such as ``token``) becomes
    a pandas categorical with the categories the frame has: ``extract.read_frame`` orders
    ``token`` by ``token_id``, others sorted.
    """

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        paths: list[Path],
        schema: pa.Schema,
        columns: list[str],
        *,
        first: int,
        last: int,
    ) -> None:
        self.connection = connection
        self.paths, self.columns = paths, list(dict.fromkeys(columns))
        self.first, self.last = first, last
        self.used = [column for column in self.columns if column not in GROUP_COLUMNS]
        dictionary = [
            column
            for column in self.used
            if column in schema.names and pa.types.is_dictionary(schema.field(column).type)
        ]
        self.categories = self._categories(dictionary)

    def _categories(self, columns: list[str]) -> dict[str, pd.Index]:
        """Each dictionary column's categories over the whole folder."""
        if not columns:
            return {}
        read = columns + (["token_id"] if "token" in columns else [])
        seen: dict[str, set] = {column: set() for column in columns}
        pairs: dict[int, str] = {}
        for batch in self._raw(read):
            frame = batch.to_pandas()
            for column in columns:
                seen[column].update(frame[column].dropna().astype(str).unique())
            if "token" in columns:
                first = frame.drop_duplicates("token_id")
                pairs.update(
                    zip(first["token_id"].tolist(), first["token"].astype(str), strict=True)
                )
        categories = {column: pd.Index(sorted(seen[column])) for column in columns}
        if "token" in columns:
            categories["token"] = pd.Index([pairs[i] for i in sorted(pairs)]).unique()
        return categories

    def _raw(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """``columns`` of every shard, batch by batch."""
        for path in self.paths:
            yield from self._read(path, columns)

    def _read(self, path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """``columns`` of one shard's rows (``shard_rows``), batch by batch, on a cursor of
        its own (a reader left unfinished holds only its cursor)."""
        relation = shard_rows(self.connection.cursor(), [path])
        selected = relation.select(", ".join(f'"{column}"' for column in columns))
        yield from selected.to_arrow_reader(BATCH_ROWS)

    def batches(self, bar: object | None = None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """Per batch, its groups (whatever their rows' positions) and its rows the formula
        fits (``fit``'s rule: positions ``first``..``last``, missing values dropped,
        infinite ones an error); ``bar`` moves on a shard at a time.

        The positions are selected in Arrow, so that only the fitted rows become pandas.
        """
        groups = [column for column in self.columns if column in GROUP_COLUMNS]
        for path in self.paths:
            for batch in self._read(path, self.columns):
                present = pa.Table.from_batches([batch.select(groups)])
                present = present.group_by(groups).aggregate([]).to_pandas()
                position = batch.column("position")
                kept = pc.and_(
                    pc.greater_equal(position, self.first), pc.less_equal(position, self.last)
                )
                yield present, self._rows(self._frame(batch.filter(kept)))
            if bar is not None:
                bar.update(1)

    def rows(self) -> Iterator[pd.DataFrame]:
        """The fitted rows of each batch that has some (patsy's ``data_iter_maker``)."""
        return (rows for _, rows in self.batches() if len(rows))

    def _frame(self, batch: pa.RecordBatch) -> pd.DataFrame:
        """A batch as pandas, its dictionary columns with the folder's categories."""
        frame = batch.to_pandas()
        for column, categories in self.categories.items():
            frame[column] = pd.Categorical(frame[column].astype(object), categories=categories)
        return frame

    def _rows(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``chunk`` (at the fitted positions) without missing values, as
        ``group_rows`` keeps them for a frame; an infinite value is an error."""
        rows = chunk.dropna(subset=self.used)
        checked = [column for column in self.used if column not in ("sequence", "position")]
        values = rows[checked].select_dtypes("number")
        if not np.isfinite(values.to_numpy(np.float64)).all():
            raise AttnmagError(
                f"the frame has missing or infinite values in {list(values.columns)} at "
                f"positions {self.first} and beyond (a zero norm, or positions missing from a "
                "sequence)"
            )
        return rows


def _folder_design(formula: str, reader: _Reader) -> tuple[patsy.DesignInfo, patsy.DesignInfo]:
    """The outcome's and the design's ``DesignInfo``, fixed over the whole folder."""
    try:
        lhs, rhs = patsy.incr_dbuilders(formula, reader.rows, eval_env=_ENVIRONMENT)
    except patsy.PatsyError as error:
        raise AttnmagError(f"cannot fit the formula {formula!r}: {_first_line(error)}") from None
    if len(lhs.column_names) != 1:
        raise AttnmagError(
            f"the formula {formula!r} has {len(lhs.column_names)} outcome columns; it needs one"
        )
    return lhs, rhs


class _Sums:
    """Per group and sequence, the cross products of ``[X | 1 | position | y]`` of the rows
    added (``position`` only with ``slope``), and the positions each group covers."""

    def __init__(self, groups: list[str], *, slope: bool) -> None:
        self.groups, self.slope = groups, slope
        self.expected: set[Hashable] = set()
        self.parts: dict[Hashable, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.positions: dict[Hashable, set[int]] = {}

    def add_groups(self, present: pd.DataFrame) -> None:
        """Note the groups of ``present`` (the grouping columns' distinct values)."""
        self.expected.update(_key(row) for row in present[self.groups].itertuples(index=False))

    def add(self, rows: pd.DataFrame, design: np.ndarray, outcome: pd.DataFrame) -> None:
        """Add the cross products of ``rows``' design rows to their groups' sequences."""
        extra = [np.ones(len(rows))]
        if self.slope:
            extra.append(rows["position"].to_numpy(np.float64))
        data = np.column_stack([design, *extra, outcome.to_numpy(np.float64)[:, 0]])
        n, m = data.shape
        pairs = rows.groupby([*self.groups, "sequence"], sort=False, observed=True)
        codes = pairs.ngroup().to_numpy()
        n_pairs = int(codes.max()) + 1
        indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_pairs, n))
        cross = np.asarray(indicator @ (data[:, :, None] * data[:, None, :]).reshape(n, m * m))
        cross = cross.reshape(n_pairs, m, m)
        first_rows = np.unique(codes, return_index=True)[1]
        keys = rows[[*self.groups, "sequence"]].iloc[first_rows]
        for key, index in keys.groupby(self.groups, sort=False, observed=True).indices.items():
            key = _key(key if isinstance(key, tuple) else (key,))
            sequences = keys["sequence"].to_numpy()[index]
            self.parts.setdefault(key, []).append((sequences, cross[index]))
        for key, positions in rows.groupby(self.groups, sort=False, observed=True)["position"]:
            key = _key(key if isinstance(key, tuple) else (key,))
            self.positions.setdefault(key, set()).update(np.unique(positions).tolist())

    def keys(self) -> list[Hashable]:
        """The groups, sorted as ``models.groups.split`` sorts them."""
        return sorted(self.expected)

    def group(self, key: Hashable) -> tuple[np.ndarray, int]:
        """A group's per-sequence cross products (sequences x m x m; a sequence's batches
        summed), and the number of positions it covers; emptied as it is taken."""
        parts = self.parts.pop(key, [])
        if not parts:
            return np.empty((0, 0, 0)), 0
        sequences = np.concatenate([s for s, _ in parts])
        cross = np.concatenate([c for _, c in parts])
        labels, codes = np.unique(sequences, return_inverse=True)
        if len(labels) < len(sequences):
            n, m = cross.shape[:2]
            indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(len(labels), n))
            cross = np.asarray(indicator @ cross.reshape(n, m * m)).reshape(len(labels), m, m)
        return cross, len(self.positions.pop(key, ()))


def _key(values: Iterable[object]) -> Hashable:
    """A group's values -> its key (``models.groups``' form), as Python values."""
    plain = tuple(value.item() if isinstance(value, np.generic) else value for value in values)
    return plain[0] if len(plain) == 1 else plain


def _check_folder_group(
    groups: list[str],
    key: Hashable,
    cross: np.ndarray,
    n_covered: int,
    random_slope: bool,
    positions: tuple[int, int],
    terms: list[str],
) -> None:
    """A group's sums pass the checks a frame's rows pass (``group_rows`` and ``fit``), and
    its design is not singular."""
    n_terms = len(terms)
    n_rows = int(round(cross[:, n_terms, n_terms].sum())) if len(cross) else 0
    n_sequences, n_positions = len(cross), 2 if random_slope else 1
    span = f"positions {positions[0]}..{positions[1]}"
    if n_rows < 2 or n_sequences < 2 or n_covered < n_positions:
        raise AttnmagError(
            f"{describe(groups, key)} has {n_rows} rows from {n_sequences} sequences "
            f"covering {n_covered} positions at {span}; this fit needs at least 2 rows "
            f"from 2 sequences covering {n_positions} positions"
        )
    if n_rows < n_terms + 2:
        raise AttnmagError(
            f"{describe(groups, key)} has {n_rows} rows at {span} without missing values; "
            f"the formula's {n_terms} terms need at least {n_terms + 2}"
        )
    xx = cross[:, :n_terms, :n_terms].sum(axis=0)
    scale = np.sqrt(np.diag(xx))
    if not scale.all() or np.linalg.matrix_rank(xx / np.outer(scale, scale), tol=1e-10) < n_terms:
        raise AttnmagError(
            f"the formula's design is singular in {describe(groups, key)} (a term without "
            "variation there, such as a categorical level its rows lack); fit "
            "extract.read_frame(folder) for it"
        )


def _fit_cross(cross: np.ndarray, spec: FitSpec) -> Fit:
    """One group's fit from its per-sequence cross products of ``[X | 1 | position | y]``."""
    terms = list(spec.terms)
    k = len(terms)
    n_obs = int(round(cross[:, k, k].sum()))
    if spec.method == "ols":
        keep = np.r_[0 : k + 1, cross.shape[1] - 1]
        design = GroupedDesign(cross[:, keep][:, :, keep], n_obs, k, 1)
        centred = _has_constant(design.cross.sum(axis=0), k)
        return _ols(design, terms, len(cross), centred=centred)
    scales = np.ones(1)
    if spec.random_slope:
        total = cross.sum(axis=0)
        spread = np.sqrt((total[k + 1, k + 1] - total[k, k + 1] ** 2 / n_obs) / (n_obs - 1))
        cross = cross.copy()
        cross[:, k + 1, :] /= spread
        cross[:, :, k + 1] /= spread
        scales = np.array([1.0, 1.0 / spread])
    design = GroupedDesign(cross, n_obs, k, 2 if spec.random_slope else 1)
    return _mixed(design, scales, spec.terms, len(cross), cov_type=spec.cov_type)


def _has_constant(total: np.ndarray, k: int) -> bool:
    """Whether the columns of X span the constant (``total`` is the cross product of
    ``[X | 1 | y]`` over all rows): the residual of 1 on X is zero."""
    xx, x1, n = total[:k, :k], total[:k, k], total[k, k]
    coefficients = np.linalg.lstsq(xx, x1, rcond=None)[0]
    return bool(n - x1 @ coefficients <= 1e-10 * n)
