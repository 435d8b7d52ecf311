"""The models stage's defaults, in one place for every signature, caption and CLI option.

Holds:
- ``MAX_POSITION``: the last position of the position-trend fits (the notebook's 30);
- ``CONF_LEVEL``: the level of every interval the fits and reports give (0.95).
"""

__all__ = ["CONF_LEVEL", "MAX_POSITION"]

MAX_POSITION = 30
CONF_LEVEL = 0.95
