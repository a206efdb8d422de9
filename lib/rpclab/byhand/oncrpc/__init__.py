"""ONC RPC (Sun RPC; RFC 5531, its data in XDR, RFC 4506), built by hand, serving the store.

Sun Microsystems' RPC (1988: RFC 1050 and 1057; now RFC 5531) is the RPC that
NFS runs on. One module per job, bottom up:

    xdr        XDR: Packer and Unpacker, every size off the wire bounded
    messages   the call and reply messages (RFC 5531 section 9)
    kvx        protos/kv.x by hand: constants, numbers, one XDR routine per type
    program    a program's versions and procedures; one call record in, one reply out
    kvservice  the KV program on a KVStore
    server     records over TCP (rpclab.byhand.framing's record marking), in the background
    client     a client, and the KV client stub
    portmap    the portmapper (rpcbind, program 100000): register, look up, list

(rpclab.adapters.c_client builds the C client rpcgen makes from protos/kv.x.)

    from rpclab.byhand import oncrpc
    server = oncrpc.serve(store)                  # KV_PROG 0x20000101 v1 on 127.0.0.1
    with oncrpc.connect(server.address) as kv:
        kv.put("greeting", "hello"); kv.get("greeting")
    server.stop()

Notebook 06 puts kv.x beside kv.proto and decodes a call by hand; notebook 12
serves the store over it and calls it from C.
"""

from __future__ import annotations

from rpclab.byhand.oncrpc.client import (
    Client,
    InvalidArgument,
    KVClient,
    ProtocolError,
    RPCError,
    connect,
)
from rpclab.byhand.oncrpc.kvx import KV_PROG, KV_V1, KVProc, KVStatus
from rpclab.byhand.oncrpc.messages import NULL_AUTH, AuthSys, Call, OpaqueAuth, Reply
from rpclab.byhand.oncrpc.server import Server, serve, serve_program
from rpclab.byhand.oncrpc.xdr import Packer, Unpacker, XDRError

__all__ = [
    "Client",
    "KVClient",
    "RPCError",
    "ProtocolError",
    "InvalidArgument",
    "connect",
    "KV_PROG",
    "KV_V1",
    "KVProc",
    "KVStatus",
    "NULL_AUTH",
    "AuthSys",
    "Call",
    "OpaqueAuth",
    "Reply",
    "Server",
    "serve",
    "serve_program",
    "Packer",
    "Unpacker",
    "XDRError",
]
