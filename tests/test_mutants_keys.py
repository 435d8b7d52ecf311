"""``benchmarks.mutation`` keys its sortings by what a mutant changes, not by mutmut's number.

mutmut numbers a function's mutants in order, so an edit to the function renumbers them; a
sorting keyed by the number would then name another mutant. These tests build made-up diffs.
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

#: ``benchmarks`` is run from the repository root, not installed: import it from its folder
#: (putting the root itself on the path would let the package's folders import unmapped).
BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SPEC = importlib.util.spec_from_file_location(
    "benchmarks", BENCHMARKS / "__init__.py", submodule_search_locations=[str(BENCHMARKS)]
)
sys.modules.setdefault("benchmarks", importlib.util.module_from_spec(SPEC))

from benchmarks.mutation import (  # noqa: E402
    EQUIVALENT,
    KILLED_BY,
    OUT_OF_REACH,
    mutant_key,
    sorted_as,
)

HOLM = "attnmag.models.tidy.x_holm__mutmut_"
CHANGE = ['-    order = np.argsort(p_values, kind="stable")', "+    order = np.argsort(p_values, )"]


def test_a_renumbered_or_reindented_mutant_keeps_its_key() -> None:
    """The same change, numbered 7 before an edit and 9 after, indented deeper after."""
    deeper = [line[0] + "    " + line[1:] for line in CHANGE]
    assert mutant_key(f"{HOLM}7", CHANGE) == mutant_key(f"{HOLM}9", deeper)


def test_another_change_or_function_is_another_key() -> None:
    """A mutant of another line, of the same line another way, or of another function differs."""
    keys = {
        mutant_key(f"{HOLM}7", CHANGE),
        mutant_key(f"{HOLM}7", [CHANGE[0], '+    order = np.argsort(p_values, kind="STABLE")']),
        mutant_key(f"{HOLM}7", ["-    adjusted = p * m", "+    adjusted = p / m"]),
        mutant_key("attnmag.models.tidy.x_tidy_rows__mutmut_7", CHANGE),
    }
    assert len(keys) == 4
    assert all(
        key.startswith(("attnmag.models.tidy.x_holm:", "attnmag.models.tidy.x_tidy_rows:"))
        for key in keys
    )


def test_a_sorting_follows_its_mutant_when_renumbered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant 7, sorted, is numbered 9 after an edit above it, and a new mutant takes number 7:
    the sorting goes with the change to number 9, and number 7 is not yet sorted."""
    monkeypatch.setitem(EQUIVALENT, mutant_key(f"{HOLM}7", CHANGE), "why")
    other = ["-    adjusted = p * m", "+    adjusted = p / m"]
    assert sorted_as(mutant_key(f"{HOLM}9", CHANGE)) == "equivalent: why"
    assert sorted_as(mutant_key(f"{HOLM}7", other)) == "not yet sorted"


def test_every_sorting_is_keyed_by_function_and_digest() -> None:
    """No sorting is keyed by a mutmut name (``..._mutmut_N``), which renumbering would move."""
    keys = [*EQUIVALENT, *OUT_OF_REACH, *KILLED_BY]
    assert keys and all(re.fullmatch(r"attnmag(\.\w+)+\.x_\w+:[0-9a-f]{10}", key) for key in keys)
    assert not any("__mutmut_" in key for key in keys)
