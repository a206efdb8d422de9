"""The table that notebook 14 moves: readings with an ``id`` (int64) and a ``value`` (float64).

Two columns of 8-byte numbers, so 2,000,000 rows hold 32,000,000 bytes of data; every way of
moving the table is measured by how fast those bytes arrive (``nbytes``), whatever extra bytes
its encoding puts on the wire::

    table = make_table(2_000_000)
    same_rows(table, received)      # -> None, or AssertionError saying where they differ
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["SCHEMA", "MAX_ROWS", "make_table", "nbytes", "same_rows", "check_rows"]

SCHEMA = pa.schema([("id", pa.int64()), ("value", pa.float64())])
MAX_ROWS = 50_000_000  # the most rows any server of this package holds or sends (800 MB)


def check_rows(rows: object, what: str = "rows") -> int:
    """``rows`` as an int between 0 and MAX_ROWS, or a ValueError/TypeError saying what is wrong."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)):
        raise TypeError(f"{what} must be an int, not {type(rows).__name__}")
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"{what} must be between 0 and {MAX_ROWS:,}, not {rows:,}")
    return int(rows)


def make_table(rows: int = 2_000_000, *, seed: int = 14) -> pa.Table:
    """``rows`` readings: ids 0, 1, 2, ... and values drawn uniformly from [0, 1), seeded."""
    rows = check_rows(rows)
    values = np.random.default_rng(seed).random(rows)
    return pa.table([pa.array(np.arange(rows, dtype=np.int64)), pa.array(values)], schema=SCHEMA)


def nbytes(table: pa.Table) -> int:
    """The bytes of data in ``table``'s columns (16 a row here), the yardstick for every way."""
    return int(table.nbytes)


def same_rows(expected: pa.Table, received: pa.Table) -> None:
    """Raise AssertionError, saying what differs, unless ``received`` holds ``expected``'s rows."""
    if received.schema != expected.schema:
        raise AssertionError(f"schema {received.schema} is not {expected.schema}")
    if received.num_rows != expected.num_rows:
        raise AssertionError(f"{received.num_rows:,} rows arrived, not {expected.num_rows:,}")
    if not received.equals(expected):
        raise AssertionError("the rows arrived with different values")
