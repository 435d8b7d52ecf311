"""attnmag: how strongly each attention sub-layer adjusts the residual stream, token by token.

The three stages import as one namespace::

    from attnmag import extract, models, reports

- ``extract``: texts + model -> tidy long DataFrame of per-token attention norms;
- ``models``: tidy frame -> tidy coefficient tables (statsmodels);
- ``reports``: frame + tables -> seaborn figures, HTML and Markdown reports.

This package root holds only what the stages share (errors, the version) and
the command line (``attnmag.cli``).
"""

from importlib.metadata import PackageNotFoundError, version

from attnmag.errors import AttnmagError

try:
    __version__ = version("attnmag")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["AttnmagError", "__version__"]
