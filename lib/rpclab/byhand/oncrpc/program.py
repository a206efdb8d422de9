"""An ONC RPC program, server side: numbered versions of numbered procedures, and the rules of
RFC 5531 that turn one call record into one reply record -- bytes in, bytes out, no sockets.

    program = Program(0x20000101, "KV_PROG", {1: {0: Procedure("KV_NULL", ...), ...}})
    program.answer(call_record)     # the reply record, or None: nothing can be answered

What the server answers (the statuses of RFC 5531 section 9), in the order it checks:

    RPC version is not 2                    MSG_DENIED   RPC_MISMATCH (low 2, high 2)
    credential or verifier not decodable    MSG_DENIED   AUTH_ERROR AUTH_BADCRED / AUTH_BADVERF
    a flavor other than AUTH_NONE, AUTH_SYS MSG_DENIED   AUTH_ERROR AUTH_REJECTEDCRED
    another program                         MSG_ACCEPTED PROG_UNAVAIL
    this program, another version           MSG_ACCEPTED PROG_MISMATCH (lowest, highest served)
    no such procedure                       MSG_ACCEPTED PROC_UNAVAIL
    arguments that do not decode exactly    MSG_ACCEPTED GARBAGE_ARGS
    the procedure failed unexpectedly       MSG_ACCEPTED SYSTEM_ERR
    otherwise                               MSG_ACCEPTED SUCCESS, then the results

A flavor the server does not take gets AUTH_REJECTEDCRED, as libtirpc's
``_authenticate`` answers (and AUTH_SHORT, which this server never hands out,
is then retried by a client with its full AUTH_SYS credential, RFC 5531
appendix A). A record that is not a call at all gets nothing: the transport
closes that connection.

Notebook 06 reads these rules; notebook 12 serves the store with them
(rpclab.byhand.oncrpc.kvservice builds the KV program).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rpclab.byhand.oncrpc.messages import (
    AcceptStat,
    AuthFlavor,
    AuthStat,
    AuthSys,
    Call,
    CallError,
    Reply,
    decode_call,
    encode_reply,
)
from rpclab.byhand.oncrpc.xdr import Packer, Unpacker, XDRError

__all__ = ["Procedure", "Program", "authenticate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Procedure:
    """One procedure: how to read its arguments, what to run, how to write its result.

    ``decode_args(reader)`` returns the arguments as a tuple (``()`` for void);
    ``run(*args)`` does the work; ``encode_result(packer, result)`` writes it.
    """

    name: str
    decode_args: Callable[[Unpacker], tuple[Any, ...]]
    run: Callable[..., Any]
    encode_result: Callable[[Packer, Any], None]


def authenticate(call: Call) -> AuthStat:
    """AUTH_OK for a credential this server takes (AUTH_NONE, or a well-formed AUTH_SYS, each
    with an AUTH_NONE verifier); otherwise the reason to deny the call."""
    flavor = call.cred.flavor
    if flavor == AuthFlavor.AUTH_SYS:
        try:
            AuthSys.from_auth(call.cred)
        except XDRError:
            return AuthStat.AUTH_BADCRED
    elif flavor != AuthFlavor.AUTH_NONE:
        return AuthStat.AUTH_REJECTEDCRED
    if call.verf.flavor != AuthFlavor.AUTH_NONE:
        return AuthStat.AUTH_BADVERF
    return AuthStat.AUTH_OK


class Program:
    """A program number, its name, and for each version number its procedures by number."""

    def __init__(self, number: int, name: str, versions: Mapping[int, Mapping[int, Procedure]]):
        if not versions:
            raise ValueError("a program needs at least one version")
        self.number = number
        self.name = name
        self.versions = {vers: dict(procs) for vers, procs in versions.items()}
        self.low, self.high = min(self.versions), max(self.versions)

    def answer(self, record: bytes) -> bytes | None:
        """The reply record for one call record, or None if the record holds no call to answer."""
        reply = self.reply_to(record)
        return None if reply is None else encode_reply(reply)

    def reply_to(self, record: bytes) -> Reply | None:
        """``answer`` before encoding: the Reply, or None."""
        try:
            call, args = decode_call(record)
        except CallError as exc:
            log.debug("oncrpc: %s", exc)
            return exc.reply
        why = authenticate(call)
        if why is not AuthStat.AUTH_OK:
            return Reply.auth_error(call.xid, why)
        if call.prog != self.number:
            return Reply.accepted(call.xid, AcceptStat.PROG_UNAVAIL)
        procedures = self.versions.get(call.vers)
        if procedures is None:
            return Reply.accepted(call.xid, AcceptStat.PROG_MISMATCH, (self.low, self.high))
        procedure = procedures.get(call.proc)
        if procedure is None:
            return Reply.accepted(call.xid, AcceptStat.PROC_UNAVAIL)
        try:
            reader = Unpacker(args)
            arguments = procedure.decode_args(reader)
            reader.done()
        except XDRError as exc:
            log.debug("oncrpc: %s: garbage arguments: %s", procedure.name, exc)
            return Reply.accepted(call.xid, AcceptStat.GARBAGE_ARGS)
        try:
            result = procedure.run(*arguments)
            packer = Packer()
            procedure.encode_result(packer, result)
        except Exception:
            log.exception("oncrpc: %s failed", procedure.name)
            return Reply.accepted(call.xid, AcceptStat.SYSTEM_ERR)
        return Reply.success(call.xid, packer.get_buffer())

    def __repr__(self) -> str:
        return f"<Program {self.name} {self.number:#x} versions {self.low}-{self.high}>"
