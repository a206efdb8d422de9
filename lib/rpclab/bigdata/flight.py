"""Arrow Flight in a background thread of the kernel: a server of named tables, and its client.

Arrow Flight (part of ``pyarrow``) is an RPC for columnar data built on gRPC. Its methods are
fixed by the Flight protocol: a client asks ``GetFlightInfo`` where a dataset is, and gets a
schema and one or more *endpoints*, each with a *ticket*; ``DoGet(ticket)`` streams that part
as Arrow record batches; ``DoPut`` streams record batches the other way. A batch travels as
Arrow's own IPC format: the columns' buffers as they lie in memory, with no per-row encoding.
Notebook 14 builds on this module::

    server = flight.serve("flight", {"readings": table}, streams=4)   # running in the background
    with flight.connect(server) as client:
        same = flight.get_table(client, "readings")   # 4 endpoints, read by 4 threads at once
        flight.put_table(client, "copy", same)         # DoPut: the server now holds "copy"
    server.stop()

:class:`TableServer` is the service; a subclass may override ``do_get``, ``do_put`` and the
other Flight methods (notebook 14's exercise does), using :meth:`TableServer.read_upload` and
:meth:`TableServer.parse_ticket`, which bound what a client can make the server hold or do.
:func:`serve` runs any such class through rpclab.runtime.background, so serving again under
the same name replaces the old server and ``background.stop_all()`` stops it.

Limits: Flight switches gRPC's message size limit off, and pyarrow's Python API gives no way
to set one, so one huge record batch is read whole before any Python code sees it; the server
binds 127.0.0.1 only, and bounds the rows it holds (``max_rows``) and the tickets it reads.
``FlightServerBase.shutdown`` waits for the calls in flight, and a client that stops reading a
stream holds its call open: every client call here has a deadline (``timeout``), and
:func:`serve`'s ``stop()`` gives up with an error naming the cause after ``STOP_TIMEOUT``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from rpclab import checks
from rpclab.bigdata.table import MAX_ROWS, check_rows
from rpclab.runtime import background

__all__ = [
    "TableServer",
    "FlightServer",
    "serve",
    "connect",
    "call_options",
    "ticket",
    "get_table",
    "read_ticket",
    "put_table",
    "CALL_TIMEOUT",
    "MAX_STREAMS",
    "MAX_TICKET_BYTES",
    "BATCH_ROWS",
]

CALL_TIMEOUT = 10.0  # seconds: the deadline of every client call made here
STOP_TIMEOUT = 15.0  # seconds stop() waits for calls in flight (longer than CALL_TIMEOUT)
MAX_STREAMS = 16  # the most endpoints one FlightInfo offers, and threads a client reads with
MAX_TICKET_BYTES = 1024
BATCH_ROWS = 65_536  # rows in one record batch on the wire (1 MiB of this table's columns)


class TableServer(fl.FlightServerBase):
    """A Flight service that holds tables by name, serves them, and takes uploads.

    * ``GetFlightInfo(path=[name])``: the table's schema, size, and ``streams`` endpoints, each
      a ticket for one slice of its rows (one stream each, which a client may read at once);
    * ``DoGet(ticket)``: the rows a ticket names, as record batches of ``batch_rows`` rows;
      a ticket is JSON, ``{"table": name, "offset": 0, "count": 1000}``;
    * ``DoPut(path=[name])``: the uploaded rows replace the table ``name``;
    * ``ListFlights``: one FlightInfo per table.

    ``self.tables`` maps names to tables; hold ``self.lock`` to change it.
    """

    def __init__(
        self,
        location: str,
        tables: Mapping[str, pa.Table] | None = None,
        *,
        streams: int = 1,
        batch_rows: int = BATCH_ROWS,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self.streams = checks.integer("streams", streams, low=1, high=MAX_STREAMS)
        self.batch_rows = max(1, check_rows(batch_rows, "batch_rows"))
        self.max_rows = check_rows(max_rows, "max_rows")
        self.lock = threading.RLock()
        self.tables: dict[str, pa.Table] = {}
        self._arriving: dict[int, int] = {}  # rows of each upload being read, by its thread
        for name, table in (tables or {}).items():
            if not isinstance(table, pa.Table):
                raise TypeError(f"tables[{name!r}] must be a pyarrow.Table")
            self.tables[str(name)] = table
        if self._rows_held() > self.max_rows:
            raise ValueError(f"the tables hold more than max_rows={self.max_rows:,} rows")
        super().__init__(location)
        self.do_put = self._ending_uploads(self.do_put)  # whichever class wrote do_put

    def _ending_uploads(self, do_put: Callable[..., None]) -> Callable[..., None]:
        """``do_put``, after which the rows its upload reserved (read_upload) count no more: by
        then they are stored, or refused."""

        def handler(*args: Any) -> None:
            try:
                do_put(*args)
            finally:
                with self.lock:
                    self._arriving.pop(threading.get_ident(), None)

        return handler

    # ------------------------------------------------------------------ helpers for subclasses

    def table(self, name: str) -> pa.Table:
        """The table called ``name``; KeyError (NOT_FOUND for the client) if there is none."""
        with self.lock:
            if name not in self.tables:
                raise KeyError(f"no table named {name!r} (there are: {sorted(self.tables)})")
            return self.tables[name]

    def parse_ticket(self, ticket: fl.Ticket) -> dict[str, Any]:
        """A ticket's JSON object, or ValueError (INVALID_ARGUMENT) if it is not one."""
        raw = ticket.ticket
        if len(raw) > MAX_TICKET_BYTES:
            raise ValueError(f"a ticket is at most {MAX_TICKET_BYTES} bytes, not {len(raw)}")
        try:
            fields = json.loads(raw)
        except ValueError:
            raise ValueError(f"a ticket must be a JSON object, not {raw[:80]!r}") from None
        if not isinstance(fields, dict) or not isinstance(fields.get("table"), str):
            raise ValueError('a ticket must be a JSON object with a "table" name')
        return fields

    def read_upload(self, reader: fl.MetadataRecordBatchReader, *, already: int = 0) -> pa.Table:
        """Read a DoPut's batches, refusing (ValueError) as soon as the server would hold more than
        ``max_rows`` rows (``already`` of them are in the table the upload replaces).

        An upload's rows count as held from the moment they arrive until its ``do_put`` returns,
        so uploads that arrive at the same moment cannot pass the bound together (just after an
        upload is stored, its rows count twice for an instant: on the safe side).
        """
        me = threading.get_ident()
        batches = []
        read = 0
        for chunk in reader:
            read += chunk.data.num_rows
            with self.lock:
                others = sum(n for thread, n in self._arriving.items() if thread != me)
                held = self._rows_held() + others - already + read
                if held > self.max_rows:
                    self._arriving.pop(me, None)
                    raise ValueError(
                        f"this upload would make the server hold over {self.max_rows:,} rows "
                        f"(refused after reading {read:,} of its rows)"
                    )
                self._arriving[me] = read
            batches.append(chunk.data)
        return pa.Table.from_batches(batches, schema=reader.schema)

    def batches(self, table: pa.Table) -> fl.RecordBatchStream:
        """``table`` as a DoGet stream of record batches of at most ``batch_rows`` rows.

        Slicing copies nothing: each batch points into the table's own column buffers.
        """
        return fl.RecordBatchStream(
            pa.Table.from_batches(table.to_batches(max_chunksize=self.batch_rows), table.schema)
        )

    def _rows_held(self) -> int:
        with self.lock:
            return sum(t.num_rows for t in self.tables.values())

    def _info(self, name: str, table: pa.Table) -> fl.FlightInfo:
        rows, parts = table.num_rows, self.streams
        cuts = [rows * i // parts for i in range(parts + 1)]
        endpoints = [
            fl.FlightEndpoint(ticket(name, cuts[i], cuts[i + 1] - cuts[i]), [])
            for i in range(parts)
        ]
        descriptor = fl.FlightDescriptor.for_path(name)
        return fl.FlightInfo(table.schema, descriptor, endpoints, rows, table.nbytes, ordered=True)

    @staticmethod
    def table_name(descriptor: fl.FlightDescriptor) -> str:
        """The table a descriptor names (a one-part path), or ValueError (INVALID_ARGUMENT)."""
        if descriptor.descriptor_type != fl.DescriptorType.PATH or len(descriptor.path) != 1:
            raise ValueError("name a table with a one-part path: FlightDescriptor.for_path(name)")
        return descriptor.path[0].decode("utf-8", "replace")

    # ------------------------------------------------------------------ the Flight methods

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes):  # type: ignore[no-untyped-def]
        with self.lock:
            tables = list(self.tables.items())
        for name, table in tables:
            yield self._info(name, table)

    def get_flight_info(
        self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor
    ) -> fl.FlightInfo:
        name = self.table_name(descriptor)
        return self._info(name, self.table(name))

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        fields = self.parse_ticket(ticket)
        table = self.table(fields["table"])
        offset, count = fields.get("offset", 0), fields.get("count", table.num_rows)
        offset, count = check_rows(offset, "offset"), check_rows(count, "count")
        if offset + count > table.num_rows:
            raise ValueError(f"rows {offset:,}..{offset + count:,} are past the table's end")
        return self.batches(table.slice(offset, count))

    def do_put(
        self,
        context: fl.ServerCallContext,
        descriptor: fl.FlightDescriptor,
        reader: fl.MetadataRecordBatchReader,
        writer: fl.FlightMetadataWriter,
    ) -> None:
        name = self.table_name(descriptor)
        with self.lock:
            old = self.tables.get(name)
        upload = self.read_upload(reader, already=old.num_rows if old is not None else 0)
        with self.lock:
            self.tables[name] = upload


def ticket(table: str, offset: int | None = None, count: int | None = None) -> fl.Ticket:
    """A ticket for :class:`TableServer`: a JSON object naming the table and, if given, the rows."""
    fields: dict[str, Any] = {"table": table}
    if offset is not None:
        fields["offset"] = offset
    if count is not None:
        fields["count"] = count
    return fl.Ticket(json.dumps(fields).encode())


# ---------------------------------------------------------------------- serving


class _Served:
    """A Flight server made to look like a socketserver, for rpclab.runtime.background."""

    def __init__(self, server: fl.FlightServerBase, host: str, name: str) -> None:
        self.flight = server
        self.server_address = (host, server.port)
        self.name = name

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.flight.serve()  # already accepting calls; returns when shutdown() is done

    def shutdown(self) -> None:
        done = threading.Event()

        def shut() -> None:
            self.flight.shutdown()
            done.set()

        threading.Thread(target=shut, name=f"rpclab-flight-stop:{self.name}", daemon=True).start()
        if not done.wait(STOP_TIMEOUT):
            raise background.BackgroundServerError(
                f"stopping {self.name!r}: a Flight call is still open after {STOP_TIMEOUT:.0f}s "
                "(a client that stopped reading a stream holds it: close the stream, or wait "
                "for its call's deadline)"
            )

    def server_close(self) -> None:
        pass  # shutdown() has closed the port


class FlightServer(background.RunningServer):
    """A Flight server in the background: ``address``, ``location``, ``service``, ``stop()``."""

    def __init__(self, handle: background.ServerHandle, service: TableServer) -> None:
        super().__init__(handle)
        self.service = service

    @property
    def location(self) -> str:
        """The server's Flight location, such as ``grpc://127.0.0.1:40123``."""
        return f"grpc://{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Flight server {self.name!r} at {self.location}, {state}>"


def serve(
    name: str = "flight",
    tables: Mapping[str, pa.Table] | None = None,
    *,
    server_class: type[TableServer] = TableServer,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    **options: Any,
) -> FlightServer:
    """Start ``server_class`` holding ``tables`` in a background thread, under ``name``.

    A server already running under ``name`` is stopped first. ``options`` go to the class
    (``streams=4`` offers four endpoints per table; ``max_rows``, ``batch_rows``).
    """
    if not (isinstance(server_class, type) and issubclass(server_class, TableServer)):
        raise TypeError(f"server_class must be TableServer or a subclass, not {server_class!r}")
    made: list[TableServer] = []

    def make_server(address: tuple[str, int]) -> _Served:
        bound_host, bound_port = address
        service = server_class(f"grpc://{bound_host}:{bound_port}", tables, **options)
        made.append(service)
        return _Served(service, bound_host, name)

    handle = background.serve(name, make_server, host=host, port=port)
    return FlightServer(handle, made[0])


# ---------------------------------------------------------------------- the client side


def connect(server: FlightServer | tuple[str, int] | str) -> fl.FlightClient:
    """A Flight client for a server (a FlightServer, a (host, port) pair, or a location)."""
    if isinstance(server, FlightServer):
        return fl.FlightClient(server.location)
    if isinstance(server, tuple):
        return fl.FlightClient(f"grpc://{server[0]}:{server[1]}")
    return fl.FlightClient(server)


def call_options(timeout: float = CALL_TIMEOUT) -> fl.FlightCallOptions:
    """Options for one call: its deadline, ``timeout`` seconds from when it starts."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return fl.FlightCallOptions(timeout=timeout)


def read_ticket(
    client: fl.FlightClient, ticket: fl.Ticket, *, timeout: float = CALL_TIMEOUT
) -> pa.Table:
    """DoGet: the rows ``ticket`` names, read to the end of the stream."""
    return client.do_get(ticket, call_options(timeout)).read_all()


def get_table(
    client: fl.FlightClient,
    name: str,
    *,
    timeout: float = CALL_TIMEOUT,
    pool: futures.Executor | None = None,
) -> pa.Table:
    """GetFlightInfo, then every endpoint's DoGet -- at once, a thread each, when there are several.

    The parts are put together in the endpoints' order. ``pool`` lends threads to read with
    (else a pool lives for this call).
    """
    options = call_options(timeout)
    info = client.get_flight_info(fl.FlightDescriptor.for_path(name), options)
    endpoints = list(info.endpoints)
    if not 1 <= len(endpoints) <= MAX_STREAMS:
        raise ValueError(f"the server offered {len(endpoints)} endpoints (at most {MAX_STREAMS})")
    if len(endpoints) == 1:
        return read_ticket(client, endpoints[0].ticket, timeout=timeout)

    def read(endpoint: fl.FlightEndpoint) -> pa.Table:
        return read_ticket(client, endpoint.ticket, timeout=timeout)

    if pool is not None:
        parts = list(pool.map(read, endpoints))
    else:
        with futures.ThreadPoolExecutor(len(endpoints), "rpclab-flight-get") as own:
            parts = list(own.map(read, endpoints))
    return pa.concat_tables(parts)


def put_table(
    client: fl.FlightClient,
    name: str,
    table: pa.Table,
    *,
    batch_rows: int = BATCH_ROWS,
    timeout: float = CALL_TIMEOUT,
) -> None:
    """DoPut: send ``table`` to the server as ``name``, in record batches of ``batch_rows`` rows."""
    descriptor = fl.FlightDescriptor.for_path(name)
    writer, reader = client.do_put(descriptor, table.schema, call_options(timeout))
    try:
        writer.write_table(table, max_chunksize=max(1, batch_rows))
        writer.done_writing()
    finally:
        writer.close()
