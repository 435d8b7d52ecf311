"""Sphinx configuration of attnmag's documentation (built by ``make docs``, warnings as errors)."""

import os

from attnmag import __version__

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

project = "attnmag"
author = "attnmag developers"
copyright = "2026, attnmag developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
# results/: the benchmarks' results files, included by the benchmark pages.
exclude_patterns = ["_build", "results", "conftest.py", "Thumbs.db", ".DS_Store"]

# MyST: $...$ maths, and anchors for headings down to level 4 so pages can link to sections.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 4

# The tutorial is executed at every build; an error in it fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True

# The API reference: autodoc follows each module's __all__; numpydoc renders the docstrings.
autosummary_generate = False
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"attnmag {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []


def _drop_module_docstring(app, what, name, obj, options, lines) -> None:
    """The API page introduces each stage itself; the modules' docstrings describe the code."""
    if what == "module" and name.startswith("attnmag"):
        lines.clear()


def _skip_matplotlib_members(app, what, name, obj, skip, options) -> bool | None:
    """``NotebookFigure`` is a matplotlib ``Figure``: document attnmag's own members only."""
    if what == "class" and getattr(obj, "__module__", "").startswith("matplotlib"):
        return True
    return None


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _drop_module_docstring)
    app.connect("autodoc-skip-member", _skip_matplotlib_members)
