"""An ONC RPC server over TCP: records in, a Program's answers out, one thread per connection.

    from rpclab.byhand import oncrpc
    server = oncrpc.serve(store)           # KV_PROG 0x20000101 v1, 127.0.0.1, a free port
    server.address                         # ('127.0.0.1', 40123)
    server.stop()                          # port closed, connections closed, threads ended

Each message is one record, record-marked (RFC 5531 section 11,
rpclab.byhand.framing). A connection is closed, and only that connection,
when a record is over ``max_record_size`` or in too many fragments, when a
started record does not finish within ``record_timeout`` seconds, when the
peer says nothing for ``idle_timeout`` seconds, or when a record holds no call
that can be answered (program.Program.answer returns None). Everything else
gets the reply RFC 5531 asks for; the server goes on serving everyone else.

With ``register=True`` the server registers (program, version, TCP, port)
with this machine's portmapper once it is bound, and takes the entry out when
it closes (rpclab.byhand.oncrpc.portmap). It runs through
rpclab.runtime.background: serving again under the same name replaces the old
server, and stopping it leaves nothing behind, the portmapper entry included.
Notebook 12 serves the store with it; ``rpclab serve oncrpc`` does from a terminal.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
from typing import Any

from rpclab import checks
from rpclab.byhand import framing
from rpclab.byhand.oncrpc import portmap
from rpclab.byhand.oncrpc.client import RPCError
from rpclab.byhand.oncrpc.kvservice import kv_program
from rpclab.byhand.oncrpc.program import Program
from rpclab.kv import KVStore
from rpclab.runtime import background

__all__ = [
    "ONCRPCServer",
    "Server",
    "serve",
    "serve_program",
    "MAX_RECORD_SIZE",
    "RECORD_TIMEOUT",
    "IDLE_TIMEOUT",
]

log = logging.getLogger(__name__)

MAX_RECORD_SIZE = 256 * 1024  # the largest KV call (KV_PUT of a 64 KiB value) is about 66 KB
RECORD_TIMEOUT = 5.0  # seconds a started record may take to arrive, and a reply to be sent
IDLE_TIMEOUT = 300.0  # seconds a connection may say nothing between records
UNSET_TIMEOUT = 2.0  # seconds the portmapper gets to take our entry out as we stop


def _check_settings(max_record_size: int, record_timeout: float, idle_timeout: float) -> None:
    for name, value in (("record_timeout", record_timeout), ("idle_timeout", idle_timeout)):
        checks.seconds(name, value, above=0)
    checks.integer("max_record_size", max_record_size, low=1)


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: read a record, answer it, until the peer leaves or misbehaves."""

    server: ONCRPCServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        server = self.server
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            sock.settimeout(server.idle_timeout)
            try:
                record = framing.recv_record(
                    sock, server.max_record_size, timeout=server.record_timeout
                )
            except (framing.FramingError, OSError) as exc:
                log.debug("oncrpc: closing %s: %s", self.client_address, exc)
                return  # closed, too large, too many fragments, stalled or idle: drop it
            reply = server.program.answer(record)
            if reply is None:
                log.debug("oncrpc: closing %s: a record that is not a call", self.client_address)
                return
            try:
                sock.settimeout(server.record_timeout)  # a peer that does not read cannot hold us
                framing.send_record(sock, reply)
            except OSError:
                return


class ONCRPCServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server that answers ONC RPC calls for one Program."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False  # rpclab.runtime.background closes the connections and joins them
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        program: Program,
        *,
        max_record_size: int = MAX_RECORD_SIZE,
        record_timeout: float = RECORD_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        register: bool = False,
    ):
        _check_settings(max_record_size, record_timeout, idle_timeout)
        self.program = program
        self.max_record_size = max_record_size
        self.record_timeout = float(record_timeout)
        self.idle_timeout = float(idle_timeout)
        self.registered: list[int] = []  # versions registered with the portmapper
        super().__init__(address, _Connection)
        if register:
            try:
                for vers in program.versions:
                    portmap.register(program.number, vers, self.server_address[1])
                    self.registered.append(vers)
            except Exception:
                self.server_close()
                raise

    def server_close(self) -> None:
        """Close the listening socket, and take this server out of the portmapper."""
        super().server_close()
        while self.registered:
            vers = self.registered.pop()
            try:
                portmap.unset_mapping(self.program.number, vers, timeout=UNSET_TIMEOUT)
            except (OSError, RPCError) as exc:
                log.warning(
                    "oncrpc: could not take version %s out of the portmapper: %s", vers, exc
                )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal on a network: note nothing. Report the rest."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Server(background.RunningServer):
    """A running ONC RPC server: ``address``, ``program``, ``stop()``."""

    def __init__(self, handle: background.ServerHandle, program: Program):
        super().__init__(handle)
        self.program = program

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<oncrpc server {self.name!r} on {self.host}:{self.port}: program "
            f"{self.program.number:#x} v{self.program.low}-{self.program.high}, {state}>"
        )


def serve_program(
    program: Program,
    *,
    name: str = "oncrpc",
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_record_size: int = MAX_RECORD_SIZE,
    record_timeout: float = RECORD_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    register: bool = False,
) -> Server:
    """Serve ``program`` over TCP in a background thread under ``name`` (``register``: with
    the portmapper too)."""
    _check_settings(max_record_size, record_timeout, idle_timeout)

    def make(address: tuple[str, int]) -> ONCRPCServer:
        return ONCRPCServer(
            address,
            program,
            max_record_size=max_record_size,
            record_timeout=record_timeout,
            idle_timeout=idle_timeout,
            register=register,
        )

    return Server(background.serve(name, make, host=host, port=port), program)


def serve(
    store: KVStore,
    *,
    name: str = "kv-oncrpc",
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_record_size: int = MAX_RECORD_SIZE,
    record_timeout: float = RECORD_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    register: bool = False,
) -> Server:
    """Serve ``store`` as KV_PROG (0x20000101) version 1 over TCP, in the background."""
    if not isinstance(store, KVStore):
        raise TypeError(f"store must be a rpclab.kv.KVStore, not {type(store).__name__}")
    return serve_program(
        kv_program(store),
        name=name,
        host=host,
        port=port,
        max_record_size=max_record_size,
        record_timeout=record_timeout,
        idle_timeout=idle_timeout,
        register=register,
    )
