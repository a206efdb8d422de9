"""The portmapper: how an ONC RPC client finds the port of a program (RFC 1833).

A server listens on any port, then tells the machine's portmapper (today
``rpcbind``) "program P, version V, over TCP, is on port N". A client asks the
portmapper -- always on port 111 -- for P and V, then calls the port it is
told. The portmapper is itself an ONC RPC program, number 100000, so every
message here is built with this package's own XDR, calls and records::

    struct mapping { unsigned int prog; unsigned int vers; unsigned int prot; unsigned int port; };
    program PMAP_PROG { version PMAP_VERS {                             /* 100000, version 2 */
        bool PMAPPROC_SET(mapping) = 1;  bool PMAPPROC_UNSET(mapping) = 2;
        unsigned int PMAPPROC_GETPORT(mapping) = 3;  pmaplist PMAPPROC_DUMP(void) = 4;
    } = 2; } = 100000;

    portmap.getport(0x20000101, 1)              # the port, or 0 when it is not registered
    portmap.dump()                              # every (prog, vers, prot, port) it knows
    portmap.set_mapping(0x20000101, 1, 40123)   # PMAPPROC_SET: True once registered
    portmap.unset_mapping(0x20000101, 1)        # PMAPPROC_UNSET
    portmap.register(0x20000101, 1, 40123)      # SET, replacing an entry whose server is gone

A server registers with the portmapper of its own machine, so ``set_mapping``
and ``unset_mapping`` call 127.0.0.1 unless told otherwise. rpcbind records a
registration made this way (version 2, over TCP) with the owner "unknown";
``rpcinfo`` (no ``-p``) shows it.

``rpclab serve oncrpc --register`` uses ``register`` and ``unset_mapping``;
notebook 12 asks the machine's portmapper, when one runs, with ``dump``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from rpclab.byhand import framing
from rpclab.byhand.oncrpc.client import Client, ProtocolError, RPCError
from rpclab.byhand.oncrpc.xdr import Packer, Unpacker, unpacked

__all__ = [
    "PMAP_PORT",
    "PMAP_PROG",
    "PMAP_VERS",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "Mapping",
    "PortmapError",
    "getport",
    "dump",
    "set_mapping",
    "unset_mapping",
    "register",
]

PMAP_PORT = 111
PMAP_PROG = 100000
PMAP_VERS = 2
PMAPPROC_NULL, PMAPPROC_SET, PMAPPROC_UNSET, PMAPPROC_GETPORT, PMAPPROC_DUMP = 0, 1, 2, 3, 4
IPPROTO_TCP, IPPROTO_UDP = 6, 17
MAX_MAPPINGS = 10_000  # entries read from a DUMP, at most


class PortmapError(ConnectionError):
    """The portmapper could not be reached, or refused what was asked."""


@dataclass(frozen=True)
class Mapping:
    """One registration: program, version, protocol (6 TCP, 17 UDP) and port."""

    prog: int
    vers: int
    prot: int
    port: int

    def pack(self, packer: Packer) -> None:
        for number in (self.prog, self.vers, self.prot, self.port):
            packer.pack_uint(number)

    @classmethod
    def unpack(cls, reader: Unpacker) -> Mapping:
        return cls(*(reader.unpack_uint() for _ in range(4)))

    @property
    def protocol(self) -> str:
        return {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}.get(self.prot, str(self.prot))


def _packed(mapping: Mapping) -> bytes:
    packer = Packer()
    mapping.pack(packer)
    return packer.get_buffer()


@contextlib.contextmanager
def _portmapper(host: str, timeout: float) -> Iterator[Client]:
    try:
        client = Client((host, PMAP_PORT), PMAP_PROG, PMAP_VERS, timeout=timeout)
    except OSError as exc:
        raise PortmapError(
            f"no portmapper at {host}:{PMAP_PORT} (is rpcbind running?): {exc}"
        ) from None
    with client:
        try:
            yield client
        except (OSError, framing.FramingError) as exc:
            raise PortmapError(f"the portmapper at {host}:{PMAP_PORT}: {exc}") from None


def getport(
    prog: int, vers: int, prot: int = IPPROTO_TCP, *, host: str = "127.0.0.1", timeout: float = 5.0
) -> int:
    """PMAPPROC_GETPORT: the port of ``prog`` version ``vers``, or 0 if it is not registered."""
    with _portmapper(host, timeout) as pmap:
        results = pmap.call(PMAPPROC_GETPORT, _packed(Mapping(prog, vers, prot, 0)))
    return unpacked(results, Unpacker.unpack_uint)


def dump(*, host: str = "127.0.0.1", timeout: float = 5.0) -> list[Mapping]:
    """PMAPPROC_DUMP: every registration, as ``rpcinfo -p`` lists them.

    The reply is a linked list in XDR (``struct pmaplist { mapping map;
    pmaplist *next; }``): each entry is an optional's TRUE, then a mapping.
    """
    with _portmapper(host, timeout) as pmap:
        results = pmap.call(PMAPPROC_DUMP)
    reader = Unpacker(results)
    mappings = []
    while reader.unpack_bool():
        if len(mappings) == MAX_MAPPINGS:
            raise PortmapError(f"the portmapper listed more than {MAX_MAPPINGS} entries")
        mappings.append(Mapping.unpack(reader))
    reader.done()
    return mappings


def set_mapping(
    prog: int,
    vers: int,
    port: int,
    prot: int = IPPROTO_TCP,
    *,
    host: str = "127.0.0.1",
    timeout: float = 5.0,
) -> bool:
    """Register ``prog`` version ``vers`` on ``port`` with this machine's portmapper.

    True when it was registered; False when the portmapper said no (most often:
    that program and version are registered already, by someone else).
    """
    return _change(PMAPPROC_SET, Mapping(prog, vers, prot, port), host, timeout)


def unset_mapping(
    prog: int, vers: int, prot: int = IPPROTO_TCP, *, host: str = "127.0.0.1", timeout: float = 5.0
) -> bool:
    """Take ``prog`` version ``vers`` out of the portmapper; its answer (True: done)."""
    return _change(PMAPPROC_UNSET, Mapping(prog, vers, prot, 0), host, timeout)


def _change(proc: int, mapping: Mapping, host: str, timeout: float) -> bool:
    with _portmapper(host, timeout) as pmap:
        results = pmap.call(proc, _packed(mapping))
    return unpacked(results, Unpacker.unpack_bool)


def register(
    prog: int, vers: int, port: int, *, host: str = "127.0.0.1", timeout: float = 5.0
) -> None:
    """PMAPPROC_SET for TCP, replacing a stale entry (one whose server no longer answers).

    A server that crashed leaves its entry behind, and the portmapper then
    refuses a new SET for the same program and version. So when SET says no,
    this asks which port holds the entry and calls procedure 0 there: if
    something answers, the entry is someone else's (PortmapError); if not, the
    entry is taken out and SET is tried again.
    """
    if set_mapping(prog, vers, port, host=host, timeout=timeout):
        return
    holder = getport(prog, vers, host=host, timeout=timeout)
    if holder and holder != port and _answers((host, holder), prog, vers, timeout):
        raise PortmapError(
            f"program {prog:#x} version {vers} is registered already, by a server that "
            f"answers on port {holder}"
        )
    unset_mapping(prog, vers, host=host, timeout=timeout)
    if not set_mapping(prog, vers, port, host=host, timeout=timeout):
        raise PortmapError(f"the portmapper refused to register program {prog:#x} version {vers}")


def _answers(address: tuple[str, int], prog: int, vers: int, timeout: float) -> bool:
    """Whether an ONC RPC server answers a NULL call at ``address`` (any reply counts)."""
    try:
        with Client(address, prog, vers, timeout=min(timeout, 1.0)) as client:
            client.ping()
    except RPCError:
        return True  # it answered, if only to say no
    except (OSError, ProtocolError, framing.FramingError):
        return False
    return True
