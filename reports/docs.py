"""Parameter descriptions the reports' docstrings share, written once.

Holds:
- ``PARAMETERS``: numpydoc entries by key (``layers``, ``ax``, ``data``, ...);
- ``shared_docs``: a decorator that fills ``{key}`` in a function's docstring with
  ``PARAMETERS[key]``, as seaborn fills its functions' docstrings from shared pieces.

Usage::

    @shared_docs
    def plot_x(data, *, layers=None, ax=None):
        \"\"\"...

        Parameters
        ----------
        {data}
        {layers}
        {ax}
        \"\"\"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["PARAMETERS", "shared_docs"]

Function = TypeVar("Function", bound=Callable)

#: Each entry as it stands in a docstring indented by four spaces: the name and type, then
#: the description indented by eight.
PARAMETERS = {
    "data": "data : pandas.DataFrame or Folder\n        The tidy frame, or a shard folder "
    "(``reports.open_folder``: aggregated by DuckDB, rows\n        read only of a seeded sample).",
    "frame": "frame : pandas.DataFrame or Folder\n        The tidy frame, or a shard folder "
    "(``reports.open_folder``: aggregated by DuckDB, rows\n        read only of a seeded sample).",
    "layers": "layers : int, iterable of int or None\n"
    "        The layers drawn; None draws every layer.",
    "layers_read": "layers : int, iterable of int or None\n"
    "        The layers read (every layer holds the same tokens); None reads every layer.",
    "layers_kept": "layers : int, iterable of int or None\n"
    "        The layers to keep; None keeps every layer.",
    "max_position": "max_position : int\n        The last position drawn.",
    "max_position_averaged": "max_position : int\n        The last position averaged.",
    "first_position": "first_position : int\n"
    "        The first position used (1: the attention sink, position 0, is left out).",
    "conf_level_means": "conf_level : float\n"
    "        The level of the intervals, cluster-robust by text (see ``mean_ci``).",
    "trend": "trend : pandas.DataFrame\n"
    "        A ``models.position_trend`` table (any mix of methods).",
    "ax": "ax : matplotlib.axes.Axes, optional\n"
    "        Where to draw; pyplot's current Axes when None.",
    "depth": "depth : bool\n"
    "        Place each layer at its relative depth, layer / deepest layer of its model, so\n"
    "        that models of different depths line up.",
    "returns_ax": "Returns\n    -------\n    matplotlib.axes.Axes\n        ``ax``.",
    "returns_finding": "Returns\n    -------\n    Finding\n"
    "        ``numbers`` and the ``sentences`` made from them",
}


def shared_docs(function: Function) -> Function:
    """Fill the ``{key}`` placeholders of ``function``'s docstring from ``PARAMETERS``.

    Parameters
    ----------
    function : callable
        A function whose docstring names entries of ``PARAMETERS`` in braces.

    Returns
    -------
    callable
        ``function``, its docstring filled in.

    Examples
    --------
    >>> @shared_docs
    ... def f(ax=None):
    ...     '''Draw.
    ...
    ...     Parameters
    ...     ----------
    ...     {ax}
    ...     '''
    >>> "pyplot's current Axes" in f.__doc__
    True
    """
    doc = function.__doc__ or ""
    for key, text in PARAMETERS.items():
        doc = doc.replace("{" + key + "}", text)
    function.__doc__ = doc
    return function
