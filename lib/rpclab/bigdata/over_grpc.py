"""The table as protobuf messages over plain gRPC (protos/table.proto), the two ways protobuf can
say it: column chunks with repeated fields, or one message per row.

Notebook 14 measures both against Arrow Flight::

    server = over_grpc.serve(table)                       # the Table service, in the background
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        copy = over_grpc.fetch_columns(channel, table.num_rows)
        first = over_grpc.fetch_rows(channel, 10_000)
    server.stop()

Every value passes through Python on both sides: the server turns each slice of the columns
into Python numbers and then into a message, the client turns each message back into arrays.
That per-value work, not the network, is what the measurements find.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pyarrow as pa

from rpclab.bigdata.table import SCHEMA, check_rows
from rpclab.grpcstack import protos
from rpclab.runtime import background

__all__ = [
    "table_pb2",
    "table_pb2_grpc",
    "TableServicer",
    "serve",
    "fetch_columns",
    "fetch_rows",
    "CHUNK_ROWS",
    "MAX_CHUNK_ROWS",
    "CALL_TIMEOUT",
]

table_pb2, table_pb2_grpc = protos.load("table")

CHUNK_ROWS = 65_536  # rows in one ColumnChunk: about 1.1 MB, under gRPC's 4 MiB message limit
MAX_CHUNK_ROWS = 131_072  # about 2.3 MB at worst (10-byte varints): still under the limit
CALL_TIMEOUT = 60.0  # seconds: the deadline of each fetch here


class TableServicer(table_pb2_grpc.TableServicer):
    """Serves slices of one table (columns ``id`` int64 and ``value`` float64)."""

    def __init__(self, table: pa.Table) -> None:
        if table.schema != SCHEMA:
            raise ValueError(f"the Table service serves tables of schema {SCHEMA}")
        self.table = table.combine_chunks()

    def _slice(self, request: table_pb2.Slice, context: grpc.ServicerContext) -> tuple[int, int]:
        rows = self.table.num_rows
        if request.offset > rows or request.count > rows - request.offset:
            context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"rows {request.offset:,}..{request.offset + request.count:,} are past the "
                f"end of the table ({rows:,} rows)",
            )
        return request.offset, request.count

    def Columns(  # noqa: N802 (gRPC's method name)
        self, request: table_pb2.Slice, context: grpc.ServicerContext
    ) -> Iterator[table_pb2.ColumnChunk]:
        offset, count = self._slice(request, context)
        step = request.chunk_rows or CHUNK_ROWS
        if step > MAX_CHUNK_ROWS:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"chunk_rows is at most {MAX_CHUNK_ROWS:,}"
            )
        for start in range(offset, offset + count, step):
            part = self.table.slice(start, min(step, offset + count - start))
            yield table_pb2.ColumnChunk(
                id=part.column("id").to_numpy().tolist(),
                value=part.column("value").to_numpy().tolist(),
            )

    def Rows(  # noqa: N802 (gRPC's method name)
        self, request: table_pb2.Slice, context: grpc.ServicerContext
    ) -> Iterator[table_pb2.Row]:
        offset, count = self._slice(request, context)
        part = self.table.slice(offset, count)
        ids = part.column("id").to_numpy().tolist()
        values = part.column("value").to_numpy().tolist()
        for row_id, value in zip(ids, values, strict=True):
            yield table_pb2.Row(id=row_id, value=value)


def serve(
    table: pa.Table,
    name: str = "table-grpc",
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
) -> background.ServerHandle:
    """Serve ``table`` with the Table service in the background, under ``name``."""
    servicer = TableServicer(table)

    def register(server: grpc.Server) -> None:
        table_pb2_grpc.add_TableServicer_to_server(servicer, server)

    return background.serve_grpc(name, register, host=host, port=port, max_workers=4)


def fetch_columns(
    channel: grpc.Channel,
    count: int,
    *,
    offset: int = 0,
    chunk_rows: int = CHUNK_ROWS,
    timeout: float = CALL_TIMEOUT,
) -> pa.Table:
    """``count`` rows from ``offset`` as a stream of column chunks, put together as a table."""
    count, offset = check_rows(count, "count"), check_rows(offset, "offset")
    stub = table_pb2_grpc.TableStub(channel)
    request = table_pb2.Slice(offset=offset, count=count, chunk_rows=chunk_rows)
    ids, values = [], []
    for chunk in stub.Columns(request, timeout=timeout):
        # A repeated number field hands its values over as one block (no loop over them).
        ids.append(np.array(chunk.id, dtype=np.int64))
        values.append(np.array(chunk.value, dtype=np.float64))
    return _table(ids, values)


def fetch_rows(
    channel: grpc.Channel, count: int, *, offset: int = 0, timeout: float = CALL_TIMEOUT
) -> pa.Table:
    """``count`` rows from ``offset``, one message each, put together as a table."""
    count, offset = check_rows(count, "count"), check_rows(offset, "offset")
    stub = table_pb2_grpc.TableStub(channel)
    ids, values = [], []
    for row in stub.Rows(table_pb2.Slice(offset=offset, count=count), timeout=timeout):
        ids.append(row.id)
        values.append(row.value)
    return _table([np.array(ids, dtype=np.int64)], [np.array(values, dtype=np.float64)])


def _table(ids: list[np.ndarray], values: list[np.ndarray]) -> pa.Table:
    if not ids:
        return SCHEMA.empty_table()
    return pa.table(
        [pa.array(np.concatenate(ids)), pa.array(np.concatenate(values))], schema=SCHEMA
    )
