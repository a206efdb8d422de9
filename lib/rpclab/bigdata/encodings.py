"""The table's rows as bytes, four ways, without any network: what each way of notebook 14 puts
in its messages, and what turning rows into those bytes and back costs.

* ``JSON``: one object of two lists, as the socket RPC's replies carry (orjson);
* ``protobuf, repeated fields``: a ColumnChunk of protos/table.proto;
* ``protobuf, a message per row``: a Row each, with gRPC's 5-byte prefix per message;
* ``Arrow IPC``: a record batch as Flight sends it -- a short header, then the columns' buffers.

::

    for e in encodings.compare(table.slice(0, 65_536)):
        print(e)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from rpclab.bigdata.over_grpc import table_pb2
from rpclab.bigdata.table import SCHEMA, check_rows

__all__ = ["Encoding", "compare", "ENCODERS", "MAX_COMPARE_ROWS"]

MAX_COMPARE_ROWS = 200_000  # compare() encodes in Python, row by row for some: keep it quick
GRPC_PREFIX = 5  # bytes gRPC puts before every message: a flag and a 4-byte length


@dataclass(frozen=True)
class Encoding:
    """One way's bytes per row, and its time to encode and to decode, per row."""

    name: str
    rows: int
    nbytes: int
    encode_s: float
    decode_s: float

    @property
    def bytes_per_row(self) -> float:
        return self.nbytes / self.rows

    def __str__(self) -> str:
        return (
            f"{self.name:<30}{self.bytes_per_row:>6.1f} bytes a row   encode "
            f"{self.encode_s / self.rows * 1e9:>7.1f} ns a row   decode "
            f"{self.decode_s / self.rows * 1e9:>7.1f} ns a row"
        )


def _json_encode(table: pa.Table) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "id": table.column("id").to_numpy().tolist(),
                "value": table.column("value").to_numpy().tolist(),
            }
        )
    ]


def _json_decode(messages: list[bytes]) -> pa.Table:
    data = orjson.loads(messages[0])
    return pa.table(
        [pa.array(np.array(data["id"], np.int64)), pa.array(np.array(data["value"]))],
        schema=SCHEMA,
    )


def _columns_encode(table: pa.Table) -> list[bytes]:
    chunk = table_pb2.ColumnChunk(
        id=table.column("id").to_numpy().tolist(), value=table.column("value").to_numpy().tolist()
    )
    return [chunk.SerializeToString()]


def _columns_decode(messages: list[bytes]) -> pa.Table:
    chunk = table_pb2.ColumnChunk.FromString(messages[0])
    return pa.table(
        [pa.array(np.array(chunk.id, np.int64)), pa.array(np.array(chunk.value))], schema=SCHEMA
    )


def _rows_encode(table: pa.Table) -> list[bytes]:
    ids = table.column("id").to_numpy().tolist()
    values = table.column("value").to_numpy().tolist()
    return [
        table_pb2.Row(id=i, value=v).SerializeToString() for i, v in zip(ids, values, strict=True)
    ]


def _rows_decode(messages: list[bytes]) -> pa.Table:
    rows = [table_pb2.Row.FromString(m) for m in messages]
    return pa.table(
        [
            pa.array(np.array([r.id for r in rows], np.int64)),
            pa.array(np.array([r.value for r in rows])),
        ],
        schema=SCHEMA,
    )


def _arrow_encode(table: pa.Table) -> list[bytes]:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return [sink.getvalue()]


def _arrow_decode(messages: list[bytes]) -> pa.Table:
    return pa.ipc.open_stream(messages[0]).read_all()


Codec = tuple[Callable[[pa.Table], list], Callable[[list], pa.Table], int]
ENCODERS: dict[str, Codec] = {
    "JSON": (_json_encode, _json_decode, 0),
    "protobuf, repeated fields": (_columns_encode, _columns_decode, GRPC_PREFIX),
    "protobuf, a message per row": (_rows_encode, _rows_decode, GRPC_PREFIX),
    "Arrow IPC (Flight)": (_arrow_encode, _arrow_decode, 0),
}


def compare(table: pa.Table, repeat: int = 5) -> list[Encoding]:
    """Encode and decode ``table`` every way, ``repeat`` times each: the sizes, and the fastest
    time of each direction (the run least disturbed by whatever else the machine was doing).

    Each decoded table is checked against ``table``.
    """
    rows = check_rows(table.num_rows, "rows")
    if not 0 < rows <= MAX_COMPARE_ROWS:
        raise ValueError(f"compare takes 1 to {MAX_COMPARE_ROWS:,} rows, not {rows:,}")
    table = table.combine_chunks()
    found = []
    for name, (encode, decode, prefix) in ENCODERS.items():
        encode_times, decode_times = [], []
        for _ in range(max(1, repeat)):
            start = time.perf_counter()
            messages = encode(table)
            encode_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            back = decode(messages)
            decode_times.append(time.perf_counter() - start)
        if not back.equals(table):
            raise AssertionError(f"{name} did not give the same rows back")
        size = sum(len(m) + prefix for m in messages)
        found.append(
            Encoding(
                name,
                rows,
                size,
                min(encode_times),
                min(decode_times),
            )
        )
    return found
