"""A text progress bar for a notebook without ipywidgets: one output, replaced in place.

tqdm's text bar writes every refresh to stderr, and a notebook (nbclient too, when it saves
one) keeps each write as its own output, so a long loop leaves hundreds. This bar draws the
same text into one display output instead (an IPython display handle) and updates it.

Holds ``NotebookBar``, a ``tqdm`` drawn that way.

Usage::

    with NotebookBar(total=3, unit="fit") as bar:
        bar.update(3)
"""

from __future__ import annotations

import io

from tqdm.std import tqdm

__all__ = ["NotebookBar"]


class NotebookBar(tqdm):
    """A ``tqdm`` text bar drawn as one notebook output that each refresh replaces.

    Examples
    --------
    >>> with NotebookBar(total=3, desc="texts") as bar:  # outside a notebook: printed lines
    ...     bar.update(3)
    {'text/plain': 'texts:   0%|          | 0/3 [00:00<?, ?it/s]'}
    {'text/plain': 'texts: 100%|##########| 3/3 ...'}
    >>> bar.n, bar.total
    (3, 3)
    """

    def __init__(self, *args: object, **options: object) -> None:
        self._handle = None
        options.pop("file", None)
        super().__init__(*args, file=io.StringIO(), **options)  # tqdm's own writes go nowhere

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Draw the bar (or ``msg``) into this bar's output, made on the first call."""
        from IPython.display import display

        data = {"text/plain": str(self) if msg is None else msg}
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)
        return True
