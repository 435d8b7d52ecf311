"""The one exception type attnmag raises for bad input.

Its message is a single sentence that says what was given and what was
expected; the command line prints it as one line and exits non-zero.
"""

__all__ = ["AttnmagError"]


class AttnmagError(ValueError):
    """Bad input: an unknown model or corpus, a missing column, an empty corpus, …"""
