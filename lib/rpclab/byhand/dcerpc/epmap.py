"""The endpoint mapper of DCE/RPC (Microsoft RPC), asked by hand what it has registered.

A DCE/RPC server does not sit on a well-known port per service: each interface (named by a
UUID and a version) registers its endpoints with the *endpoint mapper*, which listens on port
135, and a client asks the mapper first -- the job ONC RPC's portmapper does on port 111. Its
operation ``ept_lookup`` (opnum 2) lists the registrations a batch at a time; an *entry handle*
(a context handle) carries the place between calls::

    from rpclab.byhand.dcerpc import epmap
    for entry in epmap.lookup("127.0.0.1", 135):   # bind to epm v3.0 over NDR, walk ept_lookup
        print(epmap.describe(entry))
    # 12345778-1234-abcd-ef00-0123456789ab v0.0  ncacn_ip_tcp:127.0.0.1[49153]  lsarpc  (LSA)

On Windows, 127.0.0.1:135 is Microsoft's own endpoint mapper; on Linux, Samba's
``samba-dcerpcd`` is one. ``rpclab epmap [HOST[:PORT]]`` prints the same lines (:func:`main`).
Every count and length in the reply is checked against what was asked for and what is there
before it is used. Used in notebooks 01 and 06.
"""

from __future__ import annotations

import struct
import sys
import uuid
from typing import NamedTuple, TextIO

from rpclab.byhand.dcerpc import pdu
from rpclab.byhand.dcerpc.client import Connection, DceRpcError
from rpclab.byhand.dcerpc.ndr import DecodeError, Reader, uuid_bytes
from rpclab.byhand.dcerpc.tower import Tower, decode_tower, printable

__all__ = [
    "ContextHandle",
    "Entry",
    "KNOWN_INTERFACES",
    "EPT_LOOKUP",
    "EPT_S_NOT_REGISTERED",
    "lookup",
    "lookup_stub_fields",
    "decode_lookup_reply",
    "describe",
    "parse_target",
    "show",
    "main",
    "DceRpcError",
]

EPMAPPER_PORT = 135
EPT_LOOKUP = 2  # opnum of ept_lookup in the epm interface
EPT_S_NOT_REGISTERED = 0x16C9A0D6  # "no more entries": the walk is over
RPC_C_EP_ALL_ELTS = 0  # inquiry_type: every element of the map
RPC_C_VERS_ALL = 1  # vers_option: every version
MAX_ENTS = 100  # entries asked for per ept_lookup call
MAX_ENTRIES = 4096  # the most entries one walk collects
MAX_ANNOTATION = 64  # ept_max_annotation_size, fixed by the interface definition
MAX_TOWER = 4096  # bytes; a real tower is under 100

# Interfaces a Windows or Samba endpoint mapper usually lists, and the specification of each.
KNOWN_INTERFACES = {
    uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa"): "EPM, the endpoint mapper (DCE 1.1)",
    uuid.UUID("12345778-1234-abcd-ef00-0123456789ab"): "LSA, local security authority [MS-LSAD]",
    uuid.UUID("12345778-1234-abcd-ef00-0123456789ac"): "SAMR, accounts [MS-SAMR]",
    uuid.UUID("338cd001-2244-31f1-aaaa-900038001003"): "WINREG, the registry [MS-RRP]",
    uuid.UUID("12345678-1234-abcd-ef00-01234567cffb"): "NETLOGON [MS-NRPC]",
    uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188"): "SRVSVC, server service [MS-SRVS]",
    uuid.UUID("6bffd098-a112-3610-9833-46c3f87e345a"): "WKSSVC, workstation [MS-WKST]",
    uuid.UUID("12345678-1234-abcd-ef00-0123456789ab"): "SPOOLSS, printing [MS-RPRN]",
    uuid.UUID("367abb81-9844-35f1-ad32-98f038001003"): "SVCCTL, services [MS-SCMR]",
    uuid.UUID("82273fdc-e32a-18c3-3f78-827929dc23ea"): "EVENTLOG [MS-EVEN]",
    uuid.UUID("3919286a-b10c-11d0-9ba8-00c04fd92ef5"): "DSSETUP [MS-DSSP]",
    uuid.UUID("894de0c0-0d55-11d3-a322-00c04fa321a1"): "INITSHUTDOWN [MS-RSP]",
    uuid.UUID("a8e0653c-2744-4389-a61d-7373df8b2292"): "FSRVP, shadow copies [MS-FSRVP]",
    uuid.UUID("8d9f4e40-a03d-11ce-8f69-08003e30051b"): "PNP, plug and play [MS-PNPR]",
    uuid.UUID("4fc742e0-4a10-11cf-8273-00aa004ae673"): "NETDFS, DFS namespaces [MS-DFSNM]",
}

HOW_TO_SEE_ONE = """\
To see a real endpoint mapper:
  on Windows, 127.0.0.1:135 is Microsoft's own: this works as it is;
  on Linux, Samba has one: apt-get install samba, then as root run
    /usr/libexec/samba/samba-dcerpcd --libexec-rpcds --foreground \\
        --option='rpc start on demand helpers=false'
  and try again."""


class ContextHandle(NamedTuple):
    """A context handle: server state named by the client (here, the place in the walk)."""

    attributes: int
    uuid: uuid.UUID

    @property
    def is_null(self) -> bool:
        return self.attributes == 0 and self.uuid.int == 0


NULL_HANDLE = ContextHandle(0, uuid.UUID(int=0))


class Entry(NamedTuple):
    """One registration: an object UUID, the tower saying where the interface is, an annotation."""

    object: uuid.UUID
    tower: Tower | None
    annotation: str

    @property
    def interface(self) -> pdu.SyntaxId | None:
        return self.tower.interface if self.tower else None


def lookup_stub_fields(
    handle: ContextHandle = NULL_HANDLE, max_ents: int = MAX_ENTS
) -> list[pdu.Field]:
    """The arguments of one ept_lookup call in NDR (little-endian), field by field."""
    u32 = struct.Struct("<I").pack
    return [
        pdu.Field("inquiry_type", u32(RPC_C_EP_ALL_ELTS), "rpc_c_ep_all_elts: every entry"),
        pdu.Field("object", u32(0), "a null pointer: any object"),
        pdu.Field("interface_id", u32(0), "a null pointer: any interface"),
        pdu.Field("vers_option", u32(RPC_C_VERS_ALL), "rpc_c_vers_all: every version"),
        pdu.Field(
            "entry_handle",
            u32(handle.attributes) + uuid_bytes(handle.uuid),
            "zeros to begin; then the handle the last reply gave"
            if handle.is_null
            else "the handle the last reply gave: where to go on",
        ),
        pdu.Field("max_ents", u32(max_ents), f"at most {max_ents} entries in this reply"),
    ]


def decode_lookup_reply(
    stub: bytes, order: str, max_ents: int = MAX_ENTS
) -> tuple[ContextHandle, list[Entry], int]:
    """An ept_lookup reply: (entry handle, entries, status). DecodeError on anything malformed.

    The reply is ``entry_handle, num_ents, entries[], status``; ``entries`` is a conformant
    varying array (max_count, offset, actual_count, then the structs), and each struct's tower
    pointer is followed by its tower only after the whole array (NDR defers embedded pointers).
    """
    r = Reader(stub, order)
    handle = ContextHandle(r.u32("entry_handle attributes"), r.uuid("entry_handle UUID"))
    num_ents = r.count("num_ents", max_ents)
    max_count = r.count("entries max_count", max_ents)
    if r.u32("entries offset") != 0:
        raise DecodeError("the entries array does not start at offset 0")
    actual = r.count("entries actual_count", max_count)
    if actual != num_ents:
        raise DecodeError(f"num_ents says {num_ents}, the array holds {actual}")
    inline = []
    for n in range(actual):
        obj = r.uuid(f"entry {n} object")
        pointer = r.u32(f"entry {n} tower pointer")
        if r.u32(f"entry {n} annotation offset") != 0:
            raise DecodeError(f"entry {n}'s annotation does not start at offset 0")
        length = r.count(f"entry {n} annotation length", MAX_ANNOTATION)
        text = r.take(length, f"entry {n} annotation").split(b"\x00", 1)[0]
        inline.append((obj, pointer, printable(text.decode("ascii", "replace"))))
    towers: dict[int, Tower] = {}
    entries = []
    for n, (obj, pointer, annotation) in enumerate(inline):
        if pointer and pointer not in towers:  # a full pointer seen before is not sent again
            size = r.count(f"entry {n} tower max_count", MAX_TOWER)
            length = r.count(f"entry {n} tower_length", size)
            towers[pointer] = decode_tower(r.take(length, f"entry {n} tower"))
        entries.append(Entry(obj, towers.get(pointer), annotation))
    status = r.u32("status")
    return handle, entries, status


def lookup(
    host: str = "127.0.0.1", port: int = EPMAPPER_PORT, *, timeout: float = 5.0
) -> list[Entry]:
    """Every entry of the endpoint mapper at ``host:port``, walked with ept_lookup.

    Raises :class:`DceRpcError` (one line, saying why) if nothing listens there, the peer is not
    an endpoint mapper, it stalls past ``timeout`` seconds, or its reply is malformed.
    """
    entries: list[Entry] = []
    with Connection.open(host, port, timeout=timeout) as conn:
        conn.bind(pdu.EPM)
        handle = NULL_HANDLE
        for _ in range(MAX_ENTRIES):  # each call brings at least one entry, or the walk ends
            stub = b"".join(f.raw for f in lookup_stub_fields(handle, MAX_ENTS))
            order, reply = conn.call(EPT_LOOKUP, stub)
            try:
                handle, batch, status = decode_lookup_reply(reply, order, MAX_ENTS)
            except DecodeError as exc:
                raise DceRpcError(
                    f"{conn.where} sent a malformed ept_lookup reply: {exc}"
                ) from None
            entries += batch
            if len(entries) > MAX_ENTRIES:
                raise DceRpcError(f"{conn.where} lists over {MAX_ENTRIES} entries; stopped there")
            if status == EPT_S_NOT_REGISTERED or handle.is_null or not batch:
                return entries
            if status != 0:
                raise DceRpcError(f"{conn.where}: ept_lookup failed with status 0x{status:08x}")
    raise AssertionError("not reached: the loop returns or raises")


def describe(entry: Entry) -> str:
    """One line: interface UUID and version, the string binding, the annotation, a known name."""
    tower = entry.tower
    interface = str(tower.interface) if tower and tower.interface else "(no interface)"
    binding = tower.binding if tower else "(no tower)"
    known = KNOWN_INTERFACES.get(tower.interface.uuid) if tower and tower.interface else None
    annotation = entry.annotation or "-"
    line = f"{interface:<45} {binding:<38} {annotation}"
    return f"{line}  ({known})" if known else line


def parse_target(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPV6]:PORT`` -> (host, port); the port defaults to 135."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if sep else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    if not port_text:
        return host, EPMAPPER_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{port_text!r} is not a port number (1-65535)")
    return host, int(port_text)


def show(target: str = "127.0.0.1", *, timeout: float = 5.0, out: TextIO | None = None) -> bool:
    """Print the endpoint map at ``target`` (HOST[:PORT]), one line an entry, or say plainly why
    there is none and how to see a real one. Returns whether it could list the map."""
    out = out or sys.stdout
    try:
        host, port = parse_target(target)
        entries = lookup(host, port, timeout=timeout)
    except (ValueError, DceRpcError) as exc:
        print(f"no endpoint map: {exc}", file=out)
        if "connection refused" in str(exc):
            print(HOW_TO_SEE_ONE, file=out)
        return False
    for entry in entries:
        print(describe(entry), file=out)
    print(f"{len(entries)} endpoints registered at {target}", file=out)
    return True


def main(target: str = "127.0.0.1", *, timeout: float = 5.0) -> int:
    """``rpclab epmap``: the listing on stdout and exit 0, or one line on stderr and exit 1."""
    try:
        host, port = parse_target(target)
        entries = lookup(host, port, timeout=timeout)
    except (ValueError, DceRpcError) as exc:
        print(f"rpclab epmap: {exc}", file=sys.stderr)
        return 1
    for entry in entries:
        print(describe(entry))
    return 0
