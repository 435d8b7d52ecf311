"""Hints for mistyped names ("did you mean …?"): options, sub-commands, methods, models.

Holds ``did_you_mean``: the closest of a few known names to what was typed (difflib's
ratio, with ``-`` and ``_`` ignored so ``--batchsize`` finds ``--batch-size``), as the
end of an error message.

Usage::

    raise AttnmagError(f"unrecognized arguments: --batchsize{did_you_mean('--batchsize', options)}")
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def _plain(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def did_you_mean(typed: str, known: Iterable[str]) -> str:
    """``"; did you mean NAME?"`` for the known name closest to ``typed``, else ``""``.

    Parameters
    ----------
    typed : str
        What the user gave.
    known : iterable of str
        The names it could have meant.

    Returns
    -------
    str
        The hint, to append to an error message; empty when nothing is close.

    Examples
    --------
    >>> did_you_mean("--batchsize", ["--batch-size", "--max-length"])
    '; did you mean --batch-size?'
    >>> did_you_mean("rnu", ["run", "extract", "fit", "report"])
    '; did you mean run?'
    >>> did_you_mean("zzz", ["run", "fit"])
    ''
    """
    names = {_plain(name): name for name in known}
    close = difflib.get_close_matches(_plain(typed), list(names), n=1, cutoff=0.6)
    return f"; did you mean {names[close[0]]}?" if close else ""
