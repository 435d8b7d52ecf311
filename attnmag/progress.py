"""The progress bar every stage shows: on stderr, in a terminal and in a notebook.

Holds ``progress_bar``, a tqdm bar: text in a terminal, and in a notebook that lacks
ipywidgets; a widget in a notebook that has them.
"""

from __future__ import annotations

import sys

__all__ = ["progress_bar"]


def progress_bar(progress: bool | None, **options: object) -> object:
    """A tqdm progress bar on stderr: text in a terminal, and in a notebook that lacks
    ipywidgets; a widget in a notebook that has them.

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
    in_notebook = "ipykernel" in sys.modules
    show = progress if progress is not None else in_notebook or _stderr_is_a_tty()
    if in_notebook and show and _has_ipywidgets():
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(disable=not show, file=sys.stderr, **options)


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
