"""Mutation score: mutmut 3 over the extraction and model modules, killed and survived per module.

Holds:
- ``MODULES``: each mutated module and the test files that exercise it;
- ``EQUIVALENT``, ``OUT_OF_REACH``, ``KILLED_BY``: survivors of earlier samples sorted:
  equivalent mutants (and why), those that show only at sizes no test can afford (and
  where), and the test written for each of the others;
- ``build_tree``: a scratch copy of the repository in the package's installed layout;
- ``mutant_names``: every mutant mutmut makes of one module, in mutmut's naming;
- ``sample``: a seeded random choice of mutants;
- ``run_mutmut``: ``mutmut run`` over some mutants, stopped cleanly at a time limit;
- ``results``: each mutant's exit code and test seconds read back from mutmut's files;
- ``verdict``, ``tally``: exit codes -> killed, survived, timeout, untested, unchecked, other;
- ``sorted_as``: a survivor's sorting (equivalent, out of reach, or not yet sorted);
- ``changed_lines``: the lines a mutant changes, as ``-``/``+`` diff lines;
- ``mutant_key``: what a mutant changes (its function and a digest of its changed lines), the
  key of the sortings, which follows a mutant when mutmut renumbers a changed function's mutants;
- ``main``: the command line; prints one row per module, each survivor with its change and
  sorting, and the verdict now of each earlier survivor that a test was written for.

Why a scratch tree: mutmut 3 writes every mutant of a file into one copy under ``mutants/``
(a trampoline picks the active one from ``MUTANT_UNDER_TEST``), names a mutant after the
file's path (``extract/norms.py`` -> ``extract.norms.x_fn__mutmut_3``), and activates it only
where the function's ``__module__`` equals that name. pyproject maps folders onto the package
(``attnmag.extract`` is the folder ``extract/``), so in the repository itself the mutated copy
is never imported (the editable install's finder resolves ``attnmag.extract`` to the
unmutated folder) and the names could not match anyway. The script therefore copies the
repository's working tree (uncommitted edits included) into a scratch folder with the
installed layout (``attnmag/extract/norms.py``), where the names are
``attnmag.extract.norms...`` and ``mutants/`` on ``PYTHONPATH`` is found before the editable
finder, in pytest and in any subprocess a test starts. The repository's own files are never
touched.

One ``mutmut run`` checks the mutants of every module asked for. Each mutant runs only the
tests that call its function (mutmut records which test calls which function in one
instrumented run of the selected test files, ``MODULES``' union), stopping at the first
failure. A sample (``--sample N``) is a seeded random choice of N mutants per module. With
``--time-limit`` mutmut is interrupted as by Ctrl-C: the verdicts reached are kept and the
rest are counted as unchecked (mutmut checks the mutants with the fastest tests first).

Usage::

    python -m benchmarks.mutation                                  # all seven modules
    python -m benchmarks.mutation --modules models/tidy.py --sample 40 --seed 1
    python -m benchmarks.mutation --sample 40 --seed 14 --max-children 2 --time-limit 2400 \
        --results docs/results/mutation.md   # also writes the table, for the validation page
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import markdown_table, table, write_results

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"attnmag": "attnmag", "extract": "attnmag/extract", "models": "attnmag/models"}
PACKAGE_DIRS["reports"] = "attnmag/reports"
KILL_TESTS = "tests/test_mutants_killed.py"
#: Each module's test files: those whose tests reach its functions and check what they return
#: against R, statsmodels, an independent computation or a stated property.
MODULES = {
    "extract/norms.py": [
        "tests/test_extract_norms.py",
        "tests/test_extract_sites.py",
        "tests/test_precision.py",
        "tests/test_extract_tokens.py",
    ],
    "extract/batching.py": ["tests/test_extract_norms.py", "tests/test_long_contexts.py"],
    "extract/frame.py": [
        "tests/test_extract_norms.py",
        "tests/test_frame_properties.py",
        "tests/test_extract_sites.py",
        "tests/test_shards.py",
    ],
    "extract/shards.py": [
        "tests/test_shards.py",
        "tests/test_safety.py",
        "tests/test_manifest.py",
        "tests/test_reruns.py",
    ],
    "models/ols.py": [
        "tests/test_models_fits.py",
        "tests/test_models_ols_r.py",
        "tests/test_models_r.py",
        "tests/test_models_leading.py",
    ],
    "models/mixed.py": [
        "tests/test_models_mixed.py",
        "tests/test_models_reml.py",
        "tests/test_models_fits.py",
        "tests/test_models_r.py",
        "tests/test_models_lags.py",
    ],
    "models/tidy.py": [
        "tests/test_models_fits.py",
        "tests/test_models_mixed.py",
        "tests/test_groups_models.py",
    ],
}
#: Mutants that survive because they change nothing a caller can observe, each with why; keyed
#: by ``mutant_key``, as are the two sortings after it.
EQUIVALENT = {
    "attnmag.extract.frame.x_tidy_frame:5264b61790": "corpus indices are distinct, so the order "
    "of equal ones a sort need not keep never arises",
    "attnmag.extract.frame.x_tidy_frame:ccad396410": "numpy reads any negative size of a "
    "one-dimensional reshape as -1",
    "attnmag.extract.frame.x_tidy_frame:35e17e5f71": "frame_from_columns casts the sequences to "
    "the frame's dtype",
    "attnmag.extract.frame.x_tidy_frame:7588c7c444": "astype's copy=None is copy=False",
    "attnmag.extract.frame.x__token_codes:b26b28b78b": "np.unique and the lookup by Python int "
    "work on the ids in any integer dtype",
    "attnmag.extract.frame.x__token_codes:f8accc846b": "every caller passes one-dimensional ids "
    "(a frame column, or the texts' ids concatenated), which reshape(None) leaves as they are",
    "attnmag.extract.frame.x_frame_from_columns:6d34782b68": "the codes come from _token_codes, "
    "within the categories: the check finds nothing",
    "attnmag.extract.frame.x_frame_from_columns:8e171910f1": "from_codes casts integral float "
    "codes to its own code dtype: the same column, only the scratch array is wider",
    "attnmag.extract.frame.x_frame_from_columns:672f6791dd": "derived_columns finds the rows "
    "at position 0 from the positions when not given them: the same columns",
    "attnmag.extract.frame.x_frame_from_columns:6e5d76a10f": "from_codes reads validate=None as "
    "validate=False (it tests the flag's truth)",
    "attnmag.extract.shards.x_read_shards:86ccb8a101": "the ids and the tokens are both taken "
    "at each id's first row, so zip's lengths are equal by construction",
    "attnmag.extract.norms.x_measure:07cd4725a1": "measure takes a transformers model, and "
    "every one has .device: the fallback to its parameters' device is never reached",
    **dict.fromkeys(
        [
            "attnmag.extract.norms.x_measure:86393b07fc",
            "attnmag.extract.norms.x_measure:f036aa2a84",
            "attnmag.extract.norms.x_norms_frame:181db2aadc",
        ],
        "with right padding every pad follows the real tokens, which causal attention never "
        "lets them attend to: the mask of ones changes no real token's value",
    ),
    "attnmag.extract.batching.x_pad_batch:1fe4614570": "torch.full infers int64 from an int pad id",
    "attnmag.extract.batching.x_pad_batch:6a99282c6e": "slice(None, n) is slice(0, n)",
    "attnmag.extract.batching.x_pad_batch:1aca6bb608": "slice(n) is slice(0, n)",
    "attnmag.extract.batching.x_pad_batch:1b4b7bc800": "assigning into the int64 input_ids "
    "casts the ids whatever their integer dtype",
    "attnmag.extract.batching.x_pad_batch:8893eb16ee": "the mask is two-dimensional: its "
    "dimension 1 is its last",
    "attnmag.extract.shards.x__claim_folder:c3ee13c678": "the folder's parent exists: "
    "folder_lock, which every caller holds, creates it",
    "attnmag.models.ols.x_cluster_ols_result:6abd0b9e79": "statsmodels ignores the unknown key, "
    "and use_correction is True by default",
    "attnmag.models.mixed.x__two_effects:584318abb8": "outer's one use reshapes it to "
    "(-1, (p + 1) ** 2): the same array either way",
    "attnmag.models.mixed.x__two_effects:a03dbb45e2": "numpy reads any negative size of a "
    "one-dimensional reshape as -1",
    "attnmag.models.mixed.x__two_effects:1a7d8cc2af": "numpy reads a negative size as the one it "
    "infers",
    "attnmag.models.mixed.x__climb:a07088b4e2": "scipy's minimize reads a method's name in "
    "either case",
    "attnmag.models.mixed.x_mixed_result:f52a9bbb36": "started at REML's maximum, statsmodels' "
    "optimisers stop at the start in either order (params, llf and errors identical on three "
    "seeds)",
    "attnmag.models.tidy.x_glance:e07a0c24bd": "present holds only the key columns, which the "
    "glance records all have: merge's common columns are the keys",
    "attnmag.models.ols.x_ols_fit:668257c0ff": "the residual of 1 on X equals the tolerance "
    "exactly only by chance; an exact zero is below it either way (n > 0)",
    "attnmag.models.mixed.x__intercept_maximum:aa4a47e701": "within the search's tolerance: "
    "the grid extends by other steps and the zoom lands on the same maximum (REML within 3e-7 "
    "on three seeds with a text sd 500 times the residual's)",
    "attnmag.models.tidy.x_holm:ce9f1b73dd": "numpy reads a sort kind by its first letter, in "
    "either case",
}
#: Mutants that change results only at sizes no test can afford, each with where.
OUT_OF_REACH: dict[str, str] = {}
#: Survivors of an earlier sample and the test that kills each now.
KILLED_BY = {
    **dict.fromkeys(
        [
            "attnmag.models.ols.x_ols_fit:c01c1e296a",
            "attnmag.models.ols.x_ols_fit:2235369d37",
            "attnmag.models.ols.x_ols_fit:c2ce33b863",
            "attnmag.models.ols.x_ols_fit:207fb3febf",
            "attnmag.models.ols.x_ols_fit:13ffaac899",
            "attnmag.models.ols.x_ols_fit:cc589360d2",
        ],
        f"{KILL_TESTS}::test_ols_glance_is_statsmodels",
    ),
    **dict.fromkeys(
        [
            "attnmag.models.ols.x_ols_fit:64af54b7f7",
            "attnmag.models.ols.x_ols_fit:f09f091d7d",
            "attnmag.models.ols.x_ols_fit:501e994e8d",
        ],
        f"{KILL_TESTS}::test_ols_results_refit_the_rows_by_default_and_only_under_cr1",
    ),
    "attnmag.models.mixed.x_reml_maximum:a60dd802d9": f"{KILL_TESTS}::"
    "test_a_zero_variance_note_names_the_criterion_maximised",
    "attnmag.models.mixed.x_slope_test:05496a0e1f": "tests/test_models_lags.py::"
    "test_initial_conditions_match_lmer_ml_and_its_slope_test_anova",
    "attnmag.models.mixed.x_slope_test:ed8fa63186": f"{KILL_TESTS}::"
    "test_the_slope_test_refuses_a_design_it_cannot_test",
    **dict.fromkeys(
        [
            "attnmag.models.tidy.x_tidy_rows:113fab4145",
            "attnmag.models.tidy.x_tidy_rows:22131be9df",
            "attnmag.models.tidy.x_tidy_rows:631d36045f",
        ],
        f"{KILL_TESTS}::test_tidy_rows_align_df_by_term_and_store_it_as_float64",
    ),
    "attnmag.extract.frame.x_frame_from_columns:5088391360": f"{KILL_TESTS}::"
    "test_frame_from_columns_keeps_the_norm_array_as_its_column",
    "attnmag.extract.frame.x_frame_from_columns:6c6712c882": f"{KILL_TESTS}::"
    "test_frame_from_columns_refuses_lengths_of_more_texts_than_sequences",
    "attnmag.models.ols.x_cluster_ols_result:94c35f9c7e": f"{KILL_TESTS}::"
    "test_cluster_ols_result_tests_on_t_with_groups_minus_one_df",
    "attnmag.models.mixed.x_mixed_fit:06ee272f1f": f"{KILL_TESTS}::"
    "test_a_mixed_fit_whose_search_did_not_converge_says_so",
    "attnmag.models.tidy.x_failed_fit:9c55a985f7": f"{KILL_TESTS}::"
    "test_a_failed_fit_is_not_converged_in_a_boolean_column",
    "attnmag.models.tidy.x_glance:117e549e98": f"{KILL_TESTS}::"
    "test_glance_of_rows_without_glance_says_where_glance_rows_are",
    "attnmag.models.ols.x_ols_fit:678210134d": f"{KILL_TESTS}::"
    "test_ols_r2_is_centred_where_the_terms_span_the_intercept_unnamed",
    **dict.fromkeys(
        [
            "attnmag.models.mixed.x_reml_maximum:b44f543a10",
            "attnmag.models.mixed.x_reml_maximum:0fdf0d576b",
        ],
        f"{KILL_TESTS}::test_a_noisy_outcome_far_from_zero_or_steep_is_no_exact_fit",
    ),
    **dict.fromkeys(
        [
            "attnmag.extract.norms.x_measure:00e6740a0d",
            "attnmag.extract.norms.x_measure:0b1293a1fd",
            "attnmag.extract.norms.x_norms_frame:13dc136241",
            "attnmag.extract.norms.x__add_token_columns:07b43172cb",
            "attnmag.extract.norms.x__add_token_columns:3ec33048e1",
        ],
        "tests/test_extract_tokens.py::test_surprisal_and_sink_equal_their_references",
    ),
    **dict.fromkeys(
        [
            "attnmag.extract.norms.x__add_token_columns:9165747391",
            "attnmag.extract.norms.x__add_token_columns:3f52221f85",
        ],
        "tests/test_extract_tokens.py::test_vocabulary_columns",
    ),
    "attnmag.extract.shards.x__check_plain_file:47d0d139d0": f"{KILL_TESTS}::"
    "test_a_shard_that_is_a_link_is_refused",
    "attnmag.extract.shards.x__claim_folder:55be7d9124": "tests/test_reruns.py::"
    "test_a_claim_that_finished_no_shard_is_taken_over",
    "attnmag.extract.shards.x_merged_provenance:0c5144949d": f"{KILL_TESTS}::"
    "test_merged_provenance_lists_the_values_shards_disagree_on",
    "attnmag.extract.shards.x_run_columns:37cbbb4337": f"{KILL_TESTS}::"
    "test_write_frames_keeps_the_sink_columns",
    "attnmag.extract.shards.x__measuring:be6f0ef5b2": f"{KILL_TESTS}::"
    "test_a_claim_is_not_taken_over_while_a_shard_is_being_measured",
    "attnmag.extract.shards.x__read_shard:670a314839": f"{KILL_TESTS}::"
    "test_a_shard_holding_a_text_past_its_range_is_refused",
    "attnmag.extract.shards.x__store_shard:37fbaf11f2": f"{KILL_TESTS}::"
    "test_write_frames_passes_the_row_group_size_on",
    "attnmag.extract.shards.x__footer:db378bc9d5": f"{KILL_TESTS}::"
    "test_an_unreadable_shard_with_its_recorded_checksum_says_what_to_do",
}
KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152}
UNTESTED = {5, 33}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def installed_path(module: str) -> str:
    """``extract/norms.py`` -> ``attnmag/extract/norms.py``, the module's place once installed."""
    folder, _, name = module.partition("/")
    return f"{PACKAGE_DIRS[folder]}/{name}"


def test_files(modules: list[str]) -> list[str]:
    """The test files (those present) the modules' mutants are checked against, in order."""
    files = [f for module in modules for f in MODULES[module]] + [KILL_TESTS]
    return [f for f in dict.fromkeys(files) if (ROOT / f).exists()]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def build_tree(work: Path, modules: list[str], timeout_multiplier: float = 15.0) -> None:
    """Copy the package, tests and pytest settings into ``work`` in the installed layout.

    Parameters
    ----------
    work : Path
        An empty or absent folder.
    modules : list of str
        Repository paths of the modules to mutate (keys of ``MODULES``).
    timeout_multiplier : float
        mutmut's: a mutant's tests time out after this many times their duration in its
        instrumented run (wall-clock; twice that in CPU time).

    Example
    -------
    >>> build_tree(Path("/tmp/mut/work"), ["models/tidy.py"])  # doctest: +SKIP
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, target in PACKAGE_DIRS.items():
        shutil.copytree(ROOT / source, work / target, ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore, dirs_exist_ok=True)
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    addopts = pytest_options["ini_options"].get("addopts", "")
    (work / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        f"addopts = {json.dumps(addopts)}\n\n"
        "[tool.mutmut]\n"
        'source_paths = ["attnmag"]\n'
        f"only_mutate = {_toml_list([installed_path(m) for m in modules])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(test_files(modules))}\n"
        f"timeout_multiplier = {timeout_multiplier}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
    )


@contextmanager
def _inside(folder: Path):
    """Run the block with ``folder`` as the working directory and mutmut's config read there."""
    from mutmut.configuration import reset_config

    before = Path.cwd()
    os.chdir(folder)
    reset_config()
    try:
        yield
    finally:
        os.chdir(before)
        reset_config()


def mutant_names(work: Path, module: str) -> list[str]:
    """Every mutant mutmut makes of ``module`` in the tree at ``work``, by its mutmut name.

    >>> mutant_names(Path("/tmp/mut/work"), "models/tidy.py")[:1]  # doctest: +SKIP
    ['attnmag.models.tidy.x_holm__mutmut_1']
    """
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    path = Path(installed_path(module))
    with _inside(work):
        mutated = mutate_file_contents(str(path), path.read_text())
    return [get_mutant_name(path, name) for name in mutated.mutant_names]


def sample(names: list[str], size: int | None, seed: int) -> list[str]:
    """A seeded random choice of ``size`` of ``names`` (all of them where ``size`` is None)."""
    if size is None or size >= len(names):
        return names
    return sorted(random.Random(seed).sample(names, size))


def _environment(work: Path) -> dict[str, str]:
    """mutmut's environment: ``mutants/`` first on the path, one thread per numeric library.

    ``mutants/`` must exist before Python starts: a path entry missing at start-up is cached as
    unimportable and never searched again."""
    (work / "mutants").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(work / "mutants"))
    env.update({var: "1" for var in THREAD_VARS})
    return env


def run_mutmut(work: Path, names: list[str], max_children: int, limit: float | None) -> bool:
    """``mutmut run`` over ``names`` in ``work``; interrupted (as Ctrl-C) after ``limit`` seconds.

    Returns whether it finished. mutmut saves each verdict as it comes, so an interrupted run
    keeps the verdicts it reached; the rest read as not checked.
    """
    command = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()", "run"]
    command += ["--max-children", str(max_children), *names]
    log = (work / "mutmut.log").open("a")
    process = subprocess.Popen(command, cwd=work, env=_environment(work), stdout=log, stderr=log)
    try:
        process.wait(timeout=limit)
        return True
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return False
    finally:
        log.close()


def results(work: Path, module: str) -> tuple[dict[str, int | None], dict[str, float]]:
    """mutmut's exit code (None: not checked) and test seconds for each mutant of ``module``."""
    meta = work / "mutants" / (installed_path(module) + ".meta")
    if not meta.exists():
        return {}, {}
    data = json.loads(meta.read_text())
    return data["exit_code_by_key"], data["durations_by_key"]


def changed_lines(work: Path, module: str, name: str) -> list[str]:
    """The ``-`` and ``+`` lines of mutant ``name``'s diff against the unmutated function."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    with _inside(work):
        diff = get_diff_for_mutant(name, path=installed_path(module))
    return [
        line
        for line in diff.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]


def mutant_key(name: str, lines: list[str]) -> str:
    """What mutant ``name`` changes: its function and a digest of its ``-``/``+`` ``lines``.

    The key of ``EQUIVALENT``, ``OUT_OF_REACH`` and ``KILLED_BY``. mutmut numbers a function's
    mutants in order, so a change to the function renumbers them; the key leaves the number
    (and each line's indentation) out, so a sorting stays with its mutant, and a mutant whose
    line has changed is a new one, not yet sorted.

    >>> mutant_key("attnmag.models.tidy.x_holm__mutmut_7", ["-    a = 1", "+    a = 2"])
    'attnmag.models.tidy.x_holm:ae4e1dce8f'
    """
    change = "\n".join(line[0] + line[1:].strip() for line in lines)
    digest = hashlib.sha256(change.encode()).hexdigest()[:10]
    return f"{name.partition('__mutmut_')[0]}:{digest}"


def verdict(code: int | None) -> str:
    """A mutmut exit code as a verdict: killed, survived, timeout, untested (no selected test
    calls the mutated function), unchecked (the run was stopped first) or other (suspicious)."""
    for word, codes in (("killed", KILLED), ("survived", SURVIVED), ("timeout", TIMEOUT)):
        if code in codes:
            return word
    if code in UNTESTED:
        return "untested"
    return "unchecked" if code is None else "other"


def tally(codes: list[int | None]) -> dict[str, int]:
    """Counts of each ``verdict`` of ``codes``, every verdict present."""
    counts = dict.fromkeys(["killed", "survived", "timeout", "untested", "unchecked", "other"], 0)
    for code in codes:
        counts[verdict(code)] += 1
    return counts


def sorted_as(key: str) -> str:
    """What the surviving mutant of ``key`` (``mutant_key``) was found to be: equivalent (and
    why), out of the tests' reach (and where), or not yet sorted."""
    if key in EQUIVALENT:
        return f"equivalent: {EQUIVALENT[key]}"
    return f"out of reach: {OUT_OF_REACH[key]}" if key in OUT_OF_REACH else "not yet sorted"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    parser.add_argument("--sample", type=int, help="mutants per module (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--max-children", type=int, default=1, help="mutants checked at once")
    parser.add_argument("--time-limit", type=float, help="stop mutmut after this many seconds")
    parser.add_argument(
        "--timeout-multiplier",
        type=float,
        default=15.0,
        help="a mutant times out after this many times its tests' duration (mutmut's default 15)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="new or empty scratch folder (default: a new temp one)"
    )
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Mutate each module, run its tests against each mutant, print the counts per module."""
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="attnmag-mutation-"))
    if work.resolve().is_relative_to(ROOT):
        raise SystemExit("mutation: --workdir must lie outside the repository")
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"mutation: {work} is not empty (an earlier run's verdicts would mix in)")
    build_tree(work, args.modules, args.timeout_multiplier)
    print(f"scratch tree: {work}; tests: {' '.join(test_files(args.modules))}", flush=True)
    chosen: dict[str, tuple[list[str], int]] = {}
    for module in args.modules:
        names = mutant_names(work, module)
        chosen[module] = (sample(names, args.sample, args.seed), len(names))
    start = time.monotonic()
    every = [name for names, _ in chosen.values() for name in names]
    finished = run_mutmut(work, every, args.max_children, args.time_limit)
    wall = time.monotonic() - start
    rows, survivors, earlier = [], [], []
    for module, (names, total) in chosen.items():
        codes, seconds = results(work, module)
        for name in names:
            code = codes.get(name)
            lines = changed_lines(work, module, name)
            key = mutant_key(name, lines)
            if code in SURVIVED | UNTESTED:
                survivors.append((name, key, lines))
            if key in KILLED_BY:
                test = f"`{KILLED_BY[key]}`"
                earlier.append({"mutant": f"`{name}`", "now": verdict(code), "test": test})
        rows.append(
            {
                "module": module,
                "mutants": f"{len(names)}/{total}",
                **tally([codes.get(name) for name in names]),
                "seconds": round(sum(seconds.get(name, 0.0) for name in names)),
            }
        )
    state = "finished" if finished else f"stopped at the time limit ({args.time_limit:.0f} s)"
    notes = [
        f"mutmut {state} after {wall:.0f} s wall-clock, with --max-children {args.max_children}"
        f" and --timeout-multiplier {args.timeout_multiplier:g}",
        "seconds: test time spent on the module's mutants (mutmut's durations, summed)",
    ]
    print(
        table(rows), "", *notes, f"\nsurvivors and untested mutants ({len(survivors)}):", sep="\n"
    )
    listed = []
    for name, key, lines in survivors:
        lines = [f"{line[0]} {line[1:].strip()}" for line in lines]
        print(name, f"    ({sorted_as(key)})", *(f"    {line}" for line in lines), sep="\n")
        listed += [f"- `{name}` ({sorted_as(key)})", *(f"  `{line}`" for line in lines)]
    heading = f"earlier survivors in this sample, and the test written for each ({len(earlier)})"
    print(f"\n{heading}:", table(earlier) if earlier else "none", sep="\n")
    if args.results:
        notes = [f"{line}." for line in notes]
        notes += ["", f"Survivors and untested mutants ({len(survivors)}):", "", *listed]
        notes += [
            "",
            f"{heading.capitalize()}:",
            "",
            markdown_table(earlier) if earlier else "None.",
        ]
        write_results(args.results, "python -m benchmarks.mutation", argv, rows, notes)


if __name__ == "__main__":
    main()
