"""The one exception type attnmag raises for bad input.

Its message is a single sentence that says what was given and what was
expected; the command line prints it as one line and exits non-zero.
"""

__all__ = ["AttnmagError"]


class AttnmagError(ValueError):
    """Bad input: an unknown model or corpus, a missing column, an empty corpus, …

    Examples
    --------
    >>> from attnmag import AttnmagError, extract
    >>> try:
    ...     extract.read_frame("/nonexistent.parquet")
    ... except AttnmagError as error:
    ...     print(error)
    no frame at /nonexistent.parquet: expected a Parquet file or a folder of shards
    """
