"""The progress bar every stage shows: on stderr in a terminal, one output in a notebook.

Holds:
- ``progress_bar``: a tqdm bar: text on stderr in a terminal; in a notebook, one output
  updated in place (a widget where ipywidgets is installed, else ``NotebookBar``);
- ``shows_progress``: whether bars show (asked, or someone watches).
"""

from __future__ import annotations

import sys

from attnmag.notebook_bar import NotebookBar

__all__ = ["progress_bar", "shows_progress"]


def progress_bar(progress: bool | None, **options: object) -> object:
    """A tqdm progress bar: text on stderr in a terminal; in a notebook, one output updated
    in place (a widget where ipywidgets is installed, else text, ``NotebookBar``).

    Parameters
    ----------
    progress
        True shows it, False hides it; None shows it where someone watches: a terminal
        (stderr is a TTY) or a notebook.
    **options
        Passed to tqdm (``total``, ``unit``, ``desc``, ``leave``).

    Returns
    -------
    tqdm
        The bar, a context manager.

    Examples
    --------
    >>> with progress_bar(False, total=3, unit="text") as bar:
    ...     _ = bar.update(3)
    """
    show = shows_progress(progress)
    if show and _in_notebook():
        if _has_ipywidgets():
            from tqdm.notebook import tqdm

            return tqdm(**options)
        return NotebookBar(**options)
    from tqdm.std import tqdm

    return tqdm(disable=not show, file=sys.stderr, **options)


def shows_progress(progress: bool | None) -> bool:
    """Whether progress is shown: ``progress`` itself, or for None, where someone watches
    (a notebook, or a terminal on stderr).

    Parameters
    ----------
    progress : bool, optional
        True, False or None.

    Returns
    -------
    bool
        True to show progress bars.

    Examples
    --------
    >>> shows_progress(False)
    False
    """
    return progress if progress is not None else _in_notebook() or _stderr_is_a_tty()


def _in_notebook() -> bool:
    """Whether this is a Jupyter kernel: IPython's shell there is a ``ZMQInteractiveShell``
    (or a subclass, as in Colab); a process that merely imported ipykernel is not one."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return any(kind.__name__ == "ZMQInteractiveShell" for kind in type(shell).__mro__)


def _stderr_is_a_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _has_ipywidgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
