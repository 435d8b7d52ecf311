"""The groups a fit runs once per: the frame's grouping columns that are present.

Holds:
- ``GROUP_COLUMNS``: every grouping column a frame may have, in the tables' order (the
  frame's schema, ``attnmag.extract.frame``, is its one source);
- ``key_of``: a group's values -> its key;
- ``key_values`` / ``describe``: a group's key -> ``{column: value}`` / words for messages.

A key is the group's value where one column groups (the layer), else the tuple of the
values in ``GROUP_COLUMNS`` order, e.g. ``("attn", 5, 3)`` for site, layer and head, or
``("gpt2", "attn", 5)`` for model, site and layer. A ``model`` column names the language
models of a combined frame (``extract.combine``); the tidy tables' ``fit`` column names the
fit (``position_trend``, ``lag_effects``, a formula).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

from attnmag.extract.frame import GROUP_COLUMNS

__all__ = ["GROUP_COLUMNS", "key_of", "key_values", "describe"]


def key_of(values: Iterable[object]) -> Hashable:
    """A group's values, in ``GROUP_COLUMNS`` order -> its key, as Python values.

    >>> key_of([np.int64(3)]), key_of(["mlp", np.int64(2)])
    (3, ('mlp', 2))
    """
    plain = tuple(value.item() if isinstance(value, np.generic) else value for value in values)
    return plain[0] if len(plain) == 1 else plain


def key_values(columns: list[str], key: Hashable) -> dict[str, object]:
    """A group's key -> ``{column: value}``.

    >>> key_values(["site", "layer"], ("mlp", 2))
    {'site': 'mlp', 'layer': 2}
    """
    values = (key,) if len(columns) == 1 else key
    return dict(zip(columns, values, strict=True))


def describe(columns: list[str], key: Hashable) -> str:
    """A group in words, for messages.

    >>> describe(["site", "layer", "head"], ("mlp", 2, 0))
    "site 'mlp', layer 2, head 0"
    """
    return ", ".join(
        f"{column} {value!r}" if isinstance(value, str) else f"{column} {value}"
        for column, value in key_values(columns, key).items()
    )
