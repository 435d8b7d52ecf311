"""A frame in one Parquet file (``norms.parquet``): written with page checksums, read back
verified.

Holds:
- ``write_frame``: a frame -> a Parquet file whose every page carries a CRC checksum;
- ``read_frame_file``: such a file (or any Parquet file of the frame's columns) -> the frame,
  refused in one line when it is not Parquet, a page checksum fails, the sha256 that the
  attnmag marker beside it lists differs, or a column lacks the frame's type.

Usage::

    write_frame(frame, "out/norms.parquet")
    frame = read_frame_file(Path("out/norms.parquet"))
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow

from attnmag.errors import AttnmagError
from attnmag.extract.frame import COLUMNS
from attnmag.outputs import MARKER, file_record, read_marker

__all__ = ["read_frame_file", "write_frame"]

#: The frame's numeric columns and the kind of number each holds.
NUMERIC = {
    "sequence": "integer",
    "layer": "integer",
    "position": "integer",
    "token_id": "integer",
    "norm": "floating",
    "log_norm": "floating",
    "lag1": "floating",
    "lag2": "floating",
}


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` (its provenance too) as Parquet with a checksum on every page.

    Parameters
    ----------
    frame : pandas.DataFrame
        A tidy frame.
    path : str or Path
        The file.

    Examples
    --------
    >>> write_frame(frame, "norms.parquet")
    >>> read_frame_file(Path("norms.parquet")).attrs == frame.attrs
    True
    """
    frame.to_parquet(path, write_page_checksum=True)


def _check_listed_sha256(path: Path) -> None:
    """Where the folder holding ``path`` is an attnmag output whose marker lists it, its size
    and sha256 must be the listed ones."""
    record = read_marker(path.parent)
    listed = record["files"].get(path.name) if record else None
    if listed is not None and file_record(path) != listed:
        raise AttnmagError(
            f"{path} is damaged: its sha256 differs from the one {path.parent / MARKER} lists "
            "(or it was changed since attnmag wrote it); write it again (`attnmag run`)"
        )


def read_frame_file(path: Path) -> pd.DataFrame:
    """A frame saved in one Parquet file, verified.

    Parameters
    ----------
    path : Path
        An existing file.

    Returns
    -------
    pandas.DataFrame
        The frame, with its provenance. Raises ``AttnmagError`` (one line) for a file that is
        not Parquet, a page whose checksum fails, a sha256 other than the marker's, missing
        columns, or a column of another type.

    Examples
    --------
    >>> frame.to_parquet("norms.parquet")
    >>> read_frame_file(Path("norms.parquet")).shape == frame.shape
    True
    """
    with path.open("rb") as handle:
        if handle.read(4) != b"PAR1":
            raise AttnmagError(f"{path} is not a Parquet file: expected a frame's norms.parquet")
    _check_listed_sha256(path)
    try:
        frame = pd.read_parquet(path, page_checksum_verification=True)
    except (OSError, pyarrow.ArrowException) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise AttnmagError(f"{path} is damaged or not a frame ({reason})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise AttnmagError(f"{path} is not an attnmag frame: it lacks the columns {missing}")
    wrong = [
        f"{column} holds {frame[column].dtype}"
        for column, kind in NUMERIC.items()
        if not _is_kind(frame[column], kind)
    ]
    if wrong:
        raise AttnmagError(
            f"{path} is not an attnmag frame: {', '.join(wrong)} (sequence, layer, position "
            "and token_id are whole numbers; norm, log_norm, lag1 and lag2 floats)"
        )
    return frame


def _is_kind(column: pd.Series, kind: str) -> bool:
    """Whether ``column``'s dtype holds ``kind`` numbers (integer or floating)."""
    if kind == "integer":
        return pd.api.types.is_integer_dtype(column.dtype)
    return pd.api.types.is_float_dtype(column.dtype)
