"""The models stage's defaults, for every signature, caption and CLI option: ``MAX_POSITION``
(the trend's last position, the notebook's 30) and ``CONF_LEVEL`` (every interval's level).
"""

__all__ = ["CONF_LEVEL", "MAX_POSITION"]

MAX_POSITION = 30
CONF_LEVEL = 0.95
