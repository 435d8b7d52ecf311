"""attnmag: how strongly each attention sub-layer adjusts the residual stream, token by token.

The three stages import as one namespace::

    from attnmag import extract, models, reports

- ``extract``: texts + model -> tidy long DataFrame of per-token attention norms;
- ``models``: tidy frame -> tidy coefficient tables (statsmodels);
- ``reports``: frame + tables -> seaborn figures, HTML and Markdown reports.

This package root holds what the stages share and the command line:

- ``errors``: ``AttnmagError``, the one exception a user is shown;
- ``database``: the process's DuckDB connection and its settings;
- ``progress``, ``notebook_bar``: progress bars (a terminal's, or a notebook's one output);
- ``outputs``: writing output folders safely (never deleting what attnmag did not write);
- ``cache``: the converted-model cache (``attnmag cache list|clear``);
- ``suggest``: "did you mean" for names a user types;
- ``cli``: the ``attnmag`` command.
"""

from importlib.metadata import PackageNotFoundError, version

from attnmag.errors import AttnmagError

try:
    __version__ = version("attnmag")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["AttnmagError", "__version__"]
