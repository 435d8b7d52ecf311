"""The printed report does not depend on how many threads DuckDB sums with.

A folder whose shards hold many small Parquet row groups, which DuckDB reads in parallel,
is fitted and reported with one thread and with four. The report's own sums (its means
and their intervals) are summed in a fixed order, so they are equal to the last bit; the
fits' sums are per text, so their tables agree to rounding (1e-12); and the printed
report, Markdown and HTML, is the same bytes (the wall time aside).
"""

from pathlib import Path

import pandas as pd
import pytest
from simulate import simulated_frame, write_folder
from test_reports_folder import FAST_FITS, documents

from attnmag import database, models, reports
from attnmag.reports.folder import open_folder


@pytest.fixture(scope="module")
def fine(tmp_path_factory) -> Path:
    """40 texts of 60 to 300 tokens at 3 layers, in 2 shards of 50-row row groups."""
    frame = simulated_frame(40, 3, length=(60, 300), seed=11)
    return write_folder(frame, tmp_path_factory.mktemp("fine") / "norms", 20, row_group_size=50)


def printed(paths: dict[str, Path]) -> dict[str, bytes]:
    """The Markdown and HTML reports' bytes, the wall time taken out (``documents``)."""
    return documents({name: paths[name] for name in ("report.md", "index.html")})


def test_the_report_is_the_same_whatever_duckdbs_threads(fine, tmp_path, monkeypatch):
    runs = {}
    for threads in (1, 4):
        monkeypatch.setattr(database, "n_threads", lambda n_jobs, threads=threads: threads)
        folder = open_folder(fine)
        cells = folder.cluster_sums("log_norm", ["layer", "position"])
        bins = folder.cluster_sums("log_norm", ["layer", "position"], bin_width=7)
        tables = models.fit_all(fine, **FAST_FITS)
        runs[threads] = cells, bins, tables
    (cells, bins, tables), (cells4, bins4, tables4) = runs[1], runs[4]
    pd.testing.assert_frame_equal(cells, cells4, check_exact=True)
    pd.testing.assert_frame_equal(bins, bins4, check_exact=True)
    for name in ("position_trend", "lag_effects"):
        for part in ("tidy", "glance"):
            one, four = getattr(tables[name], part), getattr(tables4[name], part)
            kept = [c for c in one.columns if c != "seconds"]  # a fit's own time
            pd.testing.assert_frame_equal(one[kept], four[kept], rtol=1e-12)
    reported = {}
    for threads in (1, 4):  # the same tables (their fit times included), the report's sums
        monkeypatch.setattr(database, "n_threads", lambda n_jobs, threads=threads: threads)
        paths = reports.write_report(fine, tmp_path / f"threads{threads}", tables=tables)
        reported[threads] = printed(paths)
    assert reported[1] == reported[4]
