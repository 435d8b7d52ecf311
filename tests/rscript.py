"""Runs an R comparison: the ``Rscript`` found on PATH, the skip marker for where there is
none, and ``run_r``, which runs a script on one input file and reads back its CSV output."""

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

RSCRIPT = shutil.which("Rscript")
needs_r = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not installed (R comparison)")


def run_r(code: str, data: Path, *, timeout: int = 300, **read_csv) -> pd.DataFrame:
    """``code`` written beside ``data`` and run as ``Rscript fit.R <data> <r.csv>`` (for at
    most ``timeout`` seconds); the output ``r.csv`` read with ``read_csv``'s options. A
    failing script fails the test with R's error output."""
    folder = data.parent
    (folder / "fit.R").write_text(code)
    run = subprocess.run(
        [RSCRIPT, folder / "fit.R", data, folder / "r.csv"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr
    return pd.read_csv(folder / "r.csv", **read_csv)
