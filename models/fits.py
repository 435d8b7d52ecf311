"""The models stage's fits: one statsmodels fit per group, gathered into tidy tables.

Holds:
- ``position_trend``: ``log_norm ~ position`` per group (``aggregate``, ``ols``, ``mixed``);
- ``lag_effects``: the lag-1 and lag-2 effects per group (``ols``, ``initial_conditions``,
  ``gmm``);
- ``METHODS``: the methods each model accepts; ``PARALLEL_METHODS``: those fitted in
  worker processes; ``MIXED_METHODS``: those fitted by REML, which take ``cov_type``;
- ``check_options``, ``FitSpec``, ``group_rows``, ``Plan``, ``fit_plans``: the per-group
  loop every fit goes through (``models.fit``'s formulas too): the options checked, what to
  fit, each group's checked rows, the fits gathered into a ``Fits`` (``fit_group`` and
  ``gathered``, its two halves, for a caller with a pool of its own); ``trend_plan`` and
  ``lag_plan``: the plans of ``position_trend`` and ``lag_effects`` on a frame;
- ``frame_or_folder``: what the fits take, a frame or a path, -> the frame, or the shard
  folder to stream.

Each fit takes the frame, or a path: the folder of Parquet shards that ``extract.write_shards``
writes is fitted from per-sequence sums streamed by ``attnmag.models.stream`` without
building the frame (the same tables, in memory that does not grow with the rows; worker
processes and the progress bar are not used there), and a single Parquet file is read
with ``extract.read_frame`` and fitted as a frame.

A group is a layer, or a (model, site, layer, head) combination where the frame has those
columns (``attnmag.models.groups``). Both functions return the table described in
``attnmag.models.tidy``; ``glance(table)`` gives the per-fit details. Groups are fitted in
worker processes forked from this one (``attnmag.workers.fork_map``: each group's rows are
already there, only its result comes back) where a mixed model is among the fits; fits of
``ols``, ``aggregate`` or ``gmm`` alone take less time than starting the workers and stay in
this process. The table does not depend on ``n_jobs``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from attnmag.errors import AttnmagError
from attnmag.extract.norms import progress_bar
from attnmag.extract.shards import read_frame
from attnmag.models.defaults import CONF_LEVEL, MAX_POSITION
from attnmag.models.gmm import fit_gmm, gmm_stats
from attnmag.models.groups import describe, group_columns, key_values, split
from attnmag.models.lags import GMM_LAGS, with_initial_conditions
from attnmag.models.mixed import COV_TYPES, DeferredFit, fit_mixed
from attnmag.models.ols import cluster_ols_result, fit_aggregate, fit_cluster_ols
from attnmag.models.results import Fits, GroupFit
from attnmag.models.tidy import Fit, build_table, glance_row, tidy_rows
from attnmag.workers import fork_map, n_workers

__all__ = [
    "METHODS",
    "MIXED_METHODS",
    "PARALLEL_METHODS",
    "FitSpec",
    "position_trend",
    "lag_effects",
    "check_options",
    "group_rows",
    "Plan",
    "trend_plan",
    "lag_plan",
    "fit_plans",
    "fit_group",
    "fitted_rows",
    "gathered",
    "frame_or_folder",
]

METHODS = {
    "position_trend": ("aggregate", "ols", "mixed"),
    "lag_effects": ("ols", "initial_conditions", "gmm"),
}
#: Methods fitted as linear mixed models (REML), which take ``cov_type``.
MIXED_METHODS = frozenset({"mixed", "initial_conditions"})
_FORMULAS = {
    ("position_trend", "ols"): "log_norm ~ position",
    ("position_trend", "mixed"): "log_norm ~ position",
    ("lag_effects", "ols"): "log_norm ~ lag1 + lag2",
    ("lag_effects", "initial_conditions"): "log_norm ~ lag1 + lag2 + position + y1 + y2",
}
_TERMS = {
    **{
        ("position_trend", method): ["intercept", "position"]
        for method in METHODS["position_trend"]
    },
    ("lag_effects", "initial_conditions"): ["intercept", "lag1", "lag2", "position", "y1", "y2"],
    ("lag_effects", "gmm"): ["lag1", "lag2", "position"],
    ("lag_effects", "ols"): ["intercept", "lag1", "lag2"],
}
#: Instruments of the Arellano-Bond fit: the collapsed level lags and the constant.
_GMM_INSTRUMENTS = GMM_LAGS[1] - GMM_LAGS[0] + 2
#: Methods for which worker processes pay (benchmarks/fit.py measures it): an ``ols``,
#: ``aggregate`` or ``gmm`` group takes less time than handing it to a worker.
PARALLEL_METHODS = MIXED_METHODS


@dataclass(frozen=True)
class FitSpec:
    """What to fit to each group's rows.

    ``fit`` names the fit in the tables (``position_trend``, ``lag_effects``, a formula);
    ``formula`` is statsmodels' (``None`` for ``aggregate`` and ``gmm``); ``terms`` name the
    rows of a fit that fails; ``first`` is the first used position.
    """

    fit: str
    method: str
    formula: str | None
    terms: tuple[str, ...]
    conf_level: float
    random_slope: bool = False
    cov_type: str = "cluster"
    first: int = 1


def _named(fit: str, method: str, conf_level: float, **options: object) -> FitSpec:
    """The spec of ``position_trend``'s or ``lag_effects``' fit by ``method``."""
    formula = _FORMULAS.get((fit, method))
    return FitSpec(fit, method, formula, tuple(_TERMS[(fit, method)]), conf_level, **options)


def position_trend(
    frame: pd.DataFrame | str | os.PathLike,
    *,
    method: str = "ols",
    max_position: int = MAX_POSITION,
    exclude_first: bool = True,
    layers: Iterable[int] | None = None,
    random_slope: bool = False,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Fit ``log_norm ~ position`` per group; one row per group and term.

    Parameters
    ----------
    frame : pandas.DataFrame, str or os.PathLike
        The tidy frame (``sequence``, ``layer``, ``position``, ``log_norm``; ``norm`` for
        ``"aggregate"``); fitted once per layer, or per (model, site, layer, head) where
        present. Or a path: a shard folder of ``extract.write_shards``, fitted from streamed
        per-sequence sums without building the frame (``models.stream.position_trend_folder``:
        the same table; ``"mixed"`` reports the GLS values at REML's global maximum, equal to
        the frame's fit to about 1e-6), or a Parquet file, read as the frame.
    method : {"ols", "aggregate", "mixed"}
        ``"ols"`` (the default): token-level OLS, CR1 errors clustered by sequence, t on
        G - 1 df; ``"aggregate"``: the log of the mean norm per position on position, the
        notebook's fit, classical errors; ``"mixed"``: REML's global maximum of a random
        intercept per sequence (``random_slope=True`` adds a random slope on position).
    max_position : int
        The last position fitted.
    exclude_first : bool
        Start at position 1, leaving out the first token (the attention sink).
    layers : iterable of int, optional
        The layers to fit; every layer by default.
    random_slope : bool
        For ``"mixed"``: a random slope on position besides the intercept.
    cov_type : {"cluster", "model"}
        For ``"mixed"``: the fixed effects' CR1 sandwich by sequence (t on G - 1 df), or
        lme4's model-based covariance (Wald z).
    conf_level : float
        The intervals' level.
    n_jobs : int, optional
        Worker processes for the mixed fits (``None`` or -1: one per core); not used for a
        shard folder.
    progress : bool, optional
        A progress bar on stderr over the groups: True, False, or None (shown where
        someone watches, once the fits take more than a second); not used for a shard
        folder.

    Returns
    -------
    pandas.DataFrame
        The tidy table (``intercept``, ``position``); ``glance(table)`` gives each fit's
        details.

    Examples
    --------
    >>> trend = position_trend(frame, method="mixed", layers=[0, 5])  # doctest: +SKIP
    >>> glance(trend)  # doctest: +SKIP
    >>> trend = position_trend("norms/", method="mixed")  # doctest: +SKIP
    """
    check_options("position_trend", method, METHODS["position_trend"], conf_level, cov_type)
    if random_slope and method != "mixed":
        raise AttnmagError(f"random_slope needs method='mixed', not method={method!r}")
    options = {
        "method": method,
        "max_position": max_position,
        "exclude_first": exclude_first,
        "layers": layers,
        "random_slope": random_slope,
        "cov_type": cov_type,
        "conf_level": conf_level,
    }
    frame = frame_or_folder(frame)
    if isinstance(frame, Path):
        from attnmag.models.stream import position_trend_folder  # stream imports this module

        return position_trend_folder(frame, **options)
    return fit_plans([trend_plan(frame, **options)], n_jobs=n_jobs, progress=progress)[0].tidy


def lag_effects(
    frame: pd.DataFrame | str | os.PathLike,
    *,
    method: str = "initial_conditions",
    exclude_first: bool = True,
    layers: Iterable[int] | None = None,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """The lag-1 and lag-2 effects on ``log_norm`` per layer; one row per layer and term.

    The first used position is 1 (0 with ``exclude_first=False``); outcome rows are those
    two positions later and beyond, so that both lags are used positions.

    Parameters
    ----------
    frame : pandas.DataFrame, str or os.PathLike
        The tidy frame (``sequence``, ``layer``, ``position``, ``log_norm``, ``lag1``,
        ``lag2``); each text's positions must be consecutive. Or a path, as for
        ``position_trend``: a shard folder, fitted without building the frame
        (``models.stream.lag_effects_folder``), or a Parquet file.
    method : {"initial_conditions", "gmm", "ols"}
        What to estimate:

        - ``"initial_conditions"`` (the default): within-text persistence, by a random
          intercept per text with initial conditions (Wooldridge 2005), REML:
          ``log_norm ~ lag1 + lag2 + position + y1 + y2 + (1 | sequence)``, where ``y1`` and
          ``y2`` are the text's ``log_norm`` at the first two used positions. Conditioning
          on them is what makes the text's level independent of the random intercept;
        - ``"gmm"``: the same persistence by Arellano-Bond difference GMM (two-step,
          Windmeijer standard errors, collapsed instruments from the levels 2-6 positions
          back, a position trend that is a constant in differences; terms ``lag1``,
          ``lag2``, ``position``), with fewer assumptions and wider intervals; texts with
          fewer than 5 tokens (4 with ``exclude_first=False``) have no differenced equation
          and drop out. ``glance`` gives Hansen's J and the AR(2) test;
        - ``"ols"``: the notebook's pooled ``log_norm ~ lag1 + lag2`` (CR1 errors by
          sequence, t on G - 1 df): a description of how tokens' magnitudes co-vary across
          the corpus, not within-text persistence (texts that differ in level make it
          larger than that).
    exclude_first : bool
        Leave out the first token (the attention sink).
    layers : iterable of int, optional
        The layers to fit; every layer by default.
    cov_type : {"cluster", "model"}
        For ``initial_conditions``: the fixed effects' CR1 sandwich by sequence (t on
        G - 1 df), or lme4's model-based covariance (Wald z). The other methods' errors are
        fixed (``ols``: CR1; ``gmm``: Windmeijer), and take only ``"cluster"``.
    conf_level : float
        The intervals' level.
    n_jobs : int, optional
        Worker processes for the mixed fits (``None`` or -1: one per core); not used for a
        shard folder.
    progress : bool, optional
        A progress bar over the groups, as for ``position_trend``.

    Returns
    -------
    pandas.DataFrame
        The tidy table; ``glance(table)`` gives each fit's details, including the rows
        (``n_obs``) and texts (``n_groups``) it used.

    >>> lags = lag_effects(frame)  # doctest: +SKIP
    >>> check = lag_effects(frame, method="gmm")  # doctest: +SKIP
    >>> glance(check)[["layer", "n_groups", "hansen_p", "ar2_p"]]  # doctest: +SKIP
    >>> lags = lag_effects("norms/")  # doctest: +SKIP
    """
    check_options("lag_effects", method, METHODS["lag_effects"], conf_level, cov_type)
    options = {
        "method": method,
        "exclude_first": exclude_first,
        "layers": layers,
        "cov_type": cov_type,
        "conf_level": conf_level,
    }
    frame = frame_or_folder(frame)
    if isinstance(frame, Path):
        from attnmag.models.stream import lag_effects_folder  # stream imports this module

        return lag_effects_folder(frame, **options)
    return fit_plans([lag_plan(frame, **options)], n_jobs=n_jobs, progress=progress)[0].tidy


def trend_plan(
    frame: pd.DataFrame,
    *,
    method: str,
    max_position: int = MAX_POSITION,
    exclude_first: bool = True,
    layers: Iterable[int] | None = None,
    random_slope: bool = False,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
) -> Plan:
    """``position_trend``'s fit of a frame by ``method``, ready to run; its rows are
    checked here, its options by the caller (``check_options``)."""
    first = 1 if exclude_first else 0
    columns = ["sequence", "position", "log_norm"] + (["norm"] if method == "aggregate" else [])
    groups, parts = group_rows(
        frame, columns, first=first, last=max_position, layers=layers, n_terms=2, n_positions=3
    )
    spec = _named(
        "position_trend",
        method,
        conf_level,
        random_slope=random_slope,
        cov_type=cov_type,
        first=first,
    )
    return Plan(spec, groups, parts)


def lag_plan(
    frame: pd.DataFrame,
    *,
    method: str,
    exclude_first: bool = True,
    layers: Iterable[int] | None = None,
    cov_type: str = "cluster",
    conf_level: float = CONF_LEVEL,
) -> Plan:
    """``lag_effects``' fit of a frame by ``method``, ready to run; its rows are checked
    here, its options by the caller (``check_options``)."""
    first = 1 if exclude_first else 0
    columns = ["sequence", "position", "log_norm", "lag1", "lag2"]
    n_terms = len(_TERMS[("lag_effects", method)])
    groups, parts = group_rows(
        frame,
        columns,
        first=first + 2,
        last=None,
        layers=layers,
        n_terms=n_terms,
        n_positions=2 if method == "initial_conditions" else 1,
    )
    if method == "initial_conditions":
        parts = [(key, with_initial_conditions(part, first=first)) for key, part in parts]
    if method == "gmm":
        _check_gmm_texts(groups, parts, first=first)
    spec = _named("lag_effects", method, conf_level, cov_type=cov_type, first=first)
    return Plan(spec, groups, parts)


def frame_or_folder(data: object) -> pd.DataFrame | Path:
    """What a fit is given -> the frame to fit, or the shard folder to stream.

    Parameters
    ----------
    data : pandas.DataFrame, str or os.PathLike
        A tidy frame (returned as it is), a shard folder's path (returned as a ``Path``;
        ``models.stream`` checks it against its manifest), or a Parquet file's path (read
        with ``extract.read_frame``).

    Returns
    -------
    pandas.DataFrame or Path
        The frame, or the folder. Anything else, or a path to nothing, is an
        ``AttnmagError``.

    Examples
    --------
    >>> frame_or_folder("norms/")  # doctest: +SKIP
    PosixPath('norms')
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        return path if path.is_dir() else read_frame(path)
    raise AttnmagError(
        "the models stage takes the tidy frame (a pandas DataFrame) or the path of a shard "
        f"folder or Parquet file, not {type(data).__name__}"
    )


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


def _check_gmm_texts(
    groups: list[str], parts: list[tuple[Hashable, pd.DataFrame]], *, first: int
) -> None:
    """Each group needs more texts with a differenced equation than the GMM has instruments."""
    for key, part in parts:
        n_texts = part.loc[part["position"] >= first + 3, "sequence"].nunique()
        if n_texts <= _GMM_INSTRUMENTS:
            raise AttnmagError(
                f"{describe(groups, key)} has {n_texts} texts of at least {first + 4} tokens; "
                f"method 'gmm' needs at least {_GMM_INSTRUMENTS + 1} (more than its "
                f"{_GMM_INSTRUMENTS} instruments)"
            )


def group_rows(
    frame: pd.DataFrame,
    columns: list[str],
    *,
    first: int,
    last: int | None,
    layers: Iterable[int] | None,
    n_terms: int,
    n_positions: int,
    drop_missing: bool = False,
) -> tuple[list[str], list[tuple[Hashable, pd.DataFrame]]]:
    """The grouping columns, and each group's rows at positions ``first``..``last`` of the
    requested layers (``columns`` of them), checked for fitting.

    Missing values in ``columns`` are an error, or with ``drop_missing`` drop their rows;
    infinite values are an error. Each group needs ``n_terms + 2`` rows from 2 sequences
    covering ``n_positions`` positions (so that every method has a residual degree of
    freedom and two clusters); otherwise this raises ``AttnmagError`` naming the group,
    before anything is fitted.
    """
    missing = [c for c in ["layer", *columns] if c not in frame.columns]
    if missing:
        raise AttnmagError(f"the frame lacks the columns {missing} that the models stage needs")
    # pandas deep-copies a frame's attrs into every result; the fits need none of them.
    frame = frame.copy(deep=False)
    frame.attrs = {}
    groups = group_columns(frame)
    available = np.unique(frame["layer"].to_numpy())
    wanted = available if layers is None else np.unique(np.asarray(list(layers), dtype=np.int64))
    absent = np.setdiff1d(wanted, available)
    if len(wanted) == 0 or len(absent):
        raise AttnmagError(f"the frame has no layers {absent.tolist() or '(none asked for)'}")
    in_layers = frame["layer"].isin(wanted)
    expected = list(split(frame.loc[in_layers, groups].drop_duplicates(), groups))
    position = frame["position"]
    keep = (position >= first) & in_layers
    if last is not None:
        keep &= position <= last
    if drop_missing:
        keep &= frame[columns].notna().all(axis=1)
    rows = np.flatnonzero(keep.to_numpy())
    checked = [c for c in columns if c not in ("sequence", "position")]
    numeric = list(frame[checked].select_dtypes("number").columns)
    if not all(np.isfinite(frame[c].to_numpy(np.float64)[rows]).all() for c in numeric):
        raise AttnmagError(
            f"the frame has missing or infinite values in {numeric} at positions "
            f"{first} and beyond (a zero norm, or positions missing from a sequence)"
        )
    # Each group's rows copied once from the frame (not all the rows first, then each group).
    parts = split(frame, groups, rows=rows, keep=columns)
    span = f"positions {first}..{last}" if last is not None else f"positions >= {first}"
    for key in expected:
        part = parts.get(key, frame[columns].iloc[:0])
        n_sequences = part["sequence"].nunique()
        n_covered = part["position"].nunique()
        if len(part) < n_terms + 2 or n_sequences < 2 or n_covered < n_positions:
            raise AttnmagError(
                f"{describe(groups, key)} has {len(part)} rows from {n_sequences} sequences "
                f"covering {n_covered} positions at {span}; this fit needs at least "
                f"{n_terms + 2} rows from 2 sequences covering {n_positions} positions"
            )
    return groups, [(key, parts[key]) for key in expected]


@dataclass(frozen=True)
class Plan:
    """One fit, ready to run: what to fit (``spec``), the grouping columns, each group's rows."""

    spec: FitSpec
    groups: list[str]
    parts: list[tuple[Hashable, pd.DataFrame]]


def fit_plans(plans: list[Plan], *, n_jobs: int | None, progress: bool | None = None) -> list[Fits]:
    """Fit every group of every plan, in worker processes where a plan's method pays for
    them; gather each plan's fits.

    The groups of all the plans share one pool of ``n_jobs`` forked workers
    (``attnmag.workers.fork_map``), the costly methods' groups handed out first; without a
    method of ``PARALLEL_METHODS`` everything runs here. ``progress`` as
    ``extract.norms.progress_bar`` takes it; the bar counts finished groups and appears only
    once the fits take more than a second.
    """
    requested = n_workers(n_jobs)
    tasks = [(plan, index) for plan in plans for index in range(len(plan.parts))]
    tasks.sort(key=lambda task: task[0].spec.method not in PARALLEL_METHODS)  # stable
    parallel = any(plan.spec.method in PARALLEL_METHODS for plan in plans)
    results = {}
    bar = progress_bar(progress, total=len(tasks), unit="fit", desc=_label(plans), delay=1.0)
    with bar:
        workers = requested if parallel else 1
        done = fork_map(lambda at: fit_group(*tasks[at]), len(tasks), workers=workers)
        for (plan, index), result in zip(tasks, done, strict=True):
            results[id(plan), index] = result
            bar.update(1)
    return [
        gathered(plan, [results[id(plan), index] for index in range(len(plan.parts))])
        for plan in plans
    ]


def fit_group(plan: Plan, index: int) -> tuple:
    """The fit of ``plan``'s group number ``index``, as a worker hands it back: its table
    rows, glance record and ``Fit`` (``gathered`` takes them); warnings captured. A
    deferred statsmodels fit goes back without the group's rows, which ``gathered`` puts
    back from the plan (the caller's copy, not a pickled one)."""
    key, part = plan.parts[index]
    rows, record, fit = _fit_group(plan.spec, key_values(plan.groups, key), part)
    if isinstance(fit.result, DeferredFit):
        fit = replace(fit, result=fit.result.on(None))
    return rows, record, fit


def _label(plans: list[Plan]) -> str:
    """The progress bar's name of ``plans``: the fit and method of one, else how many."""
    if len(plans) != 1:
        return f"{len(plans)} fits"
    spec = plans[0].spec
    return f"{spec.fit} {spec.method}" if spec.fit in METHODS else f"{spec.method} fit"


def gathered(plan: Plan, results: list[tuple]) -> Fits:
    """One plan's ``fit_group`` results, in the order of its groups -> its ``Fits``."""
    table = build_table([rows for rows, _, _ in results], [record for _, record, _ in results])
    fitted = [
        GroupFit(
            names=(plan.spec.fit, plan.spec.method),
            groups=key_values(plan.groups, key),
            formula=plan.spec.formula,
            data=part,
            estimate=fit.estimate,
            result=_result(plan.spec, part, fit),
        )
        for (key, part), (_, _, fit) in zip(plan.parts, results, strict=True)
    ]
    return Fits(table, fitted)


def _result(spec: FitSpec, data: pd.DataFrame, fit: Fit) -> object:
    """A fit's statsmodels result: built on first use for ``ols`` (and for mixed fits that
    statsmodels confirmed at once, on ``data``), else the ``Fit``'s own."""
    if spec.method == "ols" and fit.converged:
        return partial(cluster_ols_result, data, spec.formula)
    if isinstance(fit.result, DeferredFit):
        return fit.result.on(data)
    return fit.result


def _fit_group(spec: FitSpec, groups: dict[str, object], data: pd.DataFrame) -> tuple:
    """One group's fit -> its table rows, glance record and ``Fit``; warnings captured."""
    return fitted_rows(spec, groups, partial(_run, spec, data))


def fitted_rows(spec: FitSpec, groups: dict[str, object], run: Callable[[], Fit]) -> tuple:
    """``run()``, one group's fit, timed with its warnings captured -> its table rows,
    glance record and ``Fit``."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = run()
    seconds = time.perf_counter() - start
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    names = {"fit": spec.fit, "method": spec.method}
    rows = tidy_rows(fit, conf_level=spec.conf_level, **names, **groups)
    return rows, glance_row(fit, seconds=seconds, warnings=messages, **names, **groups), fit


def _run(spec: FitSpec, data: pd.DataFrame) -> Fit:
    """Dispatch to the method; a fit whose linear algebra fails becomes a failed Fit."""
    if spec.method == "aggregate":
        return fit_aggregate(data)
    if spec.method == "gmm":
        try:
            return fit_gmm(data, first=spec.first)
        except np.linalg.LinAlgError as error:
            return _failed(spec, data, f"GMM failed: {type(error).__name__}: {error}")
    if spec.method == "ols":
        return fit_cluster_ols(data, spec.formula)
    try:
        return fit_mixed(data, spec.formula, random_slope=spec.random_slope, cov_type=spec.cov_type)
    except (np.linalg.LinAlgError, ValueError) as error:
        return _failed(spec, data, f"MixedLM failed: {type(error).__name__}: {error}")


def _failed(spec: FitSpec, data: pd.DataFrame, message: str) -> Fit:
    """A fit that produced no estimates: NaN rows, ``converged=False``, the reason noted."""
    missing = pd.Series(np.nan, index=list(spec.terms))
    if spec.method == "gmm":
        stats = gmm_stats(None)
    else:
        stats = {
            "r2": np.nan,
            "loglik": np.nan,
            "aic": np.nan,
            "bic": np.nan,
            "sigma": np.nan,
            "boundary": False,
            "var_intercept": np.nan,
            "var_position": np.nan,
            "cov_intercept_position": np.nan,
        }
    return Fit(
        estimate=missing,
        std_error=missing,
        df=np.inf,
        n_obs=len(data),
        n_groups=int(data["sequence"].nunique()),
        converged=False,
        stats=stats,
        notes=[message],
    )
