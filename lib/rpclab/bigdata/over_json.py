"""The table as JSON over the course's own socket RPC (rpclab.byhand.socketrpc), slice by slice.

A socket RPC reply is one frame, and a frame is at most 1 MiB (rpclab.byhand.framing): the
whole table as JSON is about 50 MB, so the client asks for it in slices that fit, one call
each. Notebook 14 shows the one-call attempt refused, then measures the slices::

    server = over_json.serve(table)
    client = socketrpc.connect(server.address, timeout=10)
    copy = over_json.fetch(client, table.num_rows)         # slices of SLICE_ROWS rows
    client.close(); server.stop()

Each slice is JSON text: ``{"id": [0, 1, ...], "value": [0.83, 0.36, ...]}``, every number
written out in decimal and read back, on both sides, through Python objects.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rpclab.bigdata.table import SCHEMA, check_rows
from rpclab.byhand import socketrpc
from rpclab.runtime import background

__all__ = ["TableHandlers", "serve", "fetch", "SLICE_ROWS"]

# About 26 bytes of JSON a row (an id, a float with up to 17 digits, separators): 32,768 rows
# make a reply of about 850 KB, under the 1 MiB frame limit.
SLICE_ROWS = 32_768


class TableHandlers:
    """The socket RPC methods: ``rows(offset, count)`` and ``size()``."""

    def __init__(self, table: pa.Table) -> None:
        if table.schema != SCHEMA:
            raise ValueError(f"these handlers serve tables of schema {SCHEMA}")
        self.table = table.combine_chunks()

    def size(self) -> int:
        """How many rows the table has."""
        return self.table.num_rows

    def rows(self, offset: int, count: int) -> dict[str, list]:
        """``count`` rows from ``offset``, column by column."""
        offset, count = check_rows(offset, "offset"), check_rows(count, "count")
        if offset + count > self.table.num_rows:
            raise ValueError(f"rows {offset:,}..{offset + count:,} are past the table's end")
        part = self.table.slice(offset, count)
        return {
            "id": part.column("id").to_numpy().tolist(),
            "value": part.column("value").to_numpy().tolist(),
        }


def serve(
    table: pa.Table,
    name: str = "table-json",
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
) -> socketrpc.Server:
    """Serve ``table`` over socket RPC in the background, under ``name``."""
    return socketrpc.serve(TableHandlers(table), host=host, port=port, name=name)


def fetch(
    client: socketrpc.Client, count: int, *, offset: int = 0, slice_rows: int = SLICE_ROWS
) -> pa.Table:
    """``count`` rows from ``offset``, one call per ``slice_rows`` rows, put together as a table."""
    count, offset = check_rows(count, "count"), check_rows(offset, "offset")
    slice_rows = max(1, check_rows(slice_rows, "slice_rows"))
    ids, values = [], []
    for start in range(offset, offset + count, slice_rows):
        part = client.rows(start, min(slice_rows, offset + count - start))
        ids.append(np.array(part["id"], dtype=np.int64))
        values.append(np.array(part["value"], dtype=np.float64))
    if not ids:
        return SCHEMA.empty_table()
    return pa.table(
        [pa.array(np.concatenate(ids)), pa.array(np.concatenate(values))], schema=SCHEMA
    )
