"""ONC RPC's call and reply messages (RFC 5531 section 9), encoded and decoded with XDR.

Every message starts with a transaction id (``xid``) and says whether it is a
CALL or a REPLY. A call names a program, a version and a procedure by number,
carries a credential and a verifier, and then the procedure's arguments. A
reply is either *accepted* (it ran, or the program/version/procedure is not
there, or the arguments did not decode) or *denied* (wrong RPC version, or the
caller could not be authenticated)::

    struct call_body {                      union reply_body switch (reply_stat stat) {
        unsigned int rpcvers;  /* 2 */      case MSG_ACCEPTED: accepted_reply areply;
        unsigned int prog;                  case MSG_DENIED:   rejected_reply rreply;
        unsigned int vers;                  };
        unsigned int proc;
        opaque_auth cred;                   struct opaque_auth {
        opaque_auth verf;                       auth_flavor flavor;
        /* the arguments follow */              opaque body<400>;
    };                                      };

    record = encode_call(Call(xid=7, prog=0x20000101, vers=1, proc=0))
    call, args = decode_call(record)        # CallError when there is no call to run
    encode_reply(Reply.success(7, results=b""))

Notebook 06 decodes a call with these; notebook 12 uses them through the
client and server of rpclab.byhand.oncrpc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from rpclab.byhand.oncrpc.xdr import Packer, Unpacker, XDRError

__all__ = [
    "RPC_VERSION",
    "MAX_AUTH_BYTES",
    "MAX_MACHINE_NAME",
    "MAX_GIDS",
    "MsgType",
    "ReplyStat",
    "AcceptStat",
    "RejectStat",
    "AuthStat",
    "AuthFlavor",
    "OpaqueAuth",
    "NULL_AUTH",
    "AuthSys",
    "Call",
    "Reply",
    "CallError",
    "encode_call",
    "decode_call",
    "encode_reply",
    "decode_reply",
]

RPC_VERSION = 2  # the protocol's version, the same from RFC 1057 to RFC 5531
MAX_AUTH_BYTES = 400  # opaque body<400> of a credential or verifier
MAX_MACHINE_NAME = 255  # authsys_parms.machinename<255>
MAX_GIDS = 16  # authsys_parms.gids<16>


class MsgType(IntEnum):
    CALL = 0
    REPLY = 1


class ReplyStat(IntEnum):
    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(IntEnum):
    SUCCESS = 0  # RPC executed successfully
    PROG_UNAVAIL = 1  # remote hasn't exported program
    PROG_MISMATCH = 2  # remote can't support version number
    PROC_UNAVAIL = 3  # program can't support procedure
    GARBAGE_ARGS = 4  # procedure can't decode params
    SYSTEM_ERR = 5  # e.g. memory allocation failure


class RejectStat(IntEnum):
    RPC_MISMATCH = 0  # RPC version number != 2
    AUTH_ERROR = 1  # remote can't authenticate caller


class AuthStat(IntEnum):
    AUTH_OK = 0
    AUTH_BADCRED = 1  # bad credential (seal broken)
    AUTH_REJECTEDCRED = 2  # client must begin new session
    AUTH_BADVERF = 3  # bad verifier (seal broken)
    AUTH_REJECTEDVERF = 4  # verifier expired or replayed
    AUTH_TOOWEAK = 5  # rejected for security reasons
    AUTH_INVALIDRESP = 6  # bogus response verifier
    AUTH_FAILED = 7  # reason unknown
    AUTH_KERB_GENERIC = 8
    AUTH_TIMEEXPIRE = 9
    AUTH_TKT_FILE = 10
    AUTH_DECODE = 11
    AUTH_NET_ADDR = 12
    RPCSEC_GSS_CREDPROBLEM = 13
    RPCSEC_GSS_CTXPROBLEM = 14


class AuthFlavor(IntEnum):
    AUTH_NONE = 0  # no identity at all
    AUTH_SYS = 1  # a Unix uid, gid and groups, taken on trust (once AUTH_UNIX)
    AUTH_SHORT = 2  # a short-hand a server may give back in place of AUTH_SYS
    AUTH_DH = 3  # Diffie-Hellman (once AUTH_DES)
    RPCSEC_GSS = 6  # Kerberos and friends (RFC 2203)


@dataclass(frozen=True)
class OpaqueAuth:
    """A credential or verifier: a flavor number and up to 400 bytes only that flavor reads."""

    flavor: int
    body: bytes = b""

    def pack(self, packer: Packer) -> None:
        packer.pack_enum(self.flavor)
        packer.pack_opaque(self.body, MAX_AUTH_BYTES)

    @classmethod
    def unpack(cls, reader: Unpacker) -> OpaqueAuth:
        return cls(reader.unpack_enum(), reader.unpack_opaque(MAX_AUTH_BYTES))

    def __str__(self) -> str:
        try:
            name = AuthFlavor(self.flavor).name
        except ValueError:
            name = f"flavor {self.flavor}"
        return f"{name} ({len(self.body)} bytes)"


NULL_AUTH = OpaqueAuth(AuthFlavor.AUTH_NONE)


@dataclass(frozen=True)
class AuthSys:
    """The body of an AUTH_SYS credential (RFC 5531 appendix A): who the caller says it is."""

    stamp: int = 0
    machinename: str = "localhost"
    uid: int = 0
    gid: int = 0
    gids: tuple[int, ...] = ()

    def to_auth(self) -> OpaqueAuth:
        """This identity as a credential to put in a call."""
        packer = Packer()
        packer.pack_uint(self.stamp)
        packer.pack_string(self.machinename, MAX_MACHINE_NAME)
        packer.pack_uint(self.uid)
        packer.pack_uint(self.gid)
        packer.pack_array(self.gids, packer.pack_uint, MAX_GIDS)
        return OpaqueAuth(AuthFlavor.AUTH_SYS, packer.get_buffer())

    @classmethod
    def from_auth(cls, auth: OpaqueAuth) -> AuthSys:
        """Decode an AUTH_SYS credential's body; XDRError if it is not exactly one."""
        reader = Unpacker(auth.body)
        parms = cls(
            stamp=reader.unpack_uint(),
            machinename=reader.unpack_string(MAX_MACHINE_NAME),
            uid=reader.unpack_uint(),
            gid=reader.unpack_uint(),
            gids=tuple(reader.unpack_array(reader.unpack_uint, MAX_GIDS)),
        )
        reader.done()
        return parms


@dataclass(frozen=True)
class Call:
    """The header of a call: which procedure of which program, and who is calling."""

    xid: int
    prog: int
    vers: int
    proc: int
    cred: OpaqueAuth = NULL_AUTH
    verf: OpaqueAuth = NULL_AUTH
    rpcvers: int = RPC_VERSION


def encode_call(call: Call, args: bytes = b"") -> bytes:
    """The call message: its header, then ``args`` (the arguments, already in XDR)."""
    packer = Packer()
    packer.pack_uint(call.xid)
    packer.pack_enum(MsgType.CALL)
    packer.pack_uint(call.rpcvers)
    packer.pack_uint(call.prog)
    packer.pack_uint(call.vers)
    packer.pack_uint(call.proc)
    call.cred.pack(packer)
    call.verf.pack(packer)
    return packer.get_buffer() + args


@dataclass(frozen=True)
class Reply:
    """A reply. Accepted: ``accept_stat`` (and ``results`` or ``mismatch``); denied:
    ``reject_stat`` (and ``mismatch`` or ``auth_stat``)."""

    xid: int
    reply_stat: ReplyStat = ReplyStat.MSG_ACCEPTED
    accept_stat: AcceptStat | None = AcceptStat.SUCCESS
    reject_stat: RejectStat | None = None
    auth_stat: AuthStat | None = None
    mismatch: tuple[int, int] | None = None  # (low, high) for PROG_MISMATCH and RPC_MISMATCH
    results: bytes = b""  # SUCCESS: the procedure's results, in XDR
    verf: OpaqueAuth = field(default=NULL_AUTH)

    @classmethod
    def success(cls, xid: int, results: bytes = b"") -> Reply:
        return cls(xid, results=results)

    @classmethod
    def accepted(cls, xid: int, stat: AcceptStat, mismatch: tuple[int, int] | None = None) -> Reply:
        """An accepted reply that is not SUCCESS: PROG_UNAVAIL, PROG_MISMATCH (with ``mismatch``),
        PROC_UNAVAIL, GARBAGE_ARGS or SYSTEM_ERR."""
        return cls(xid, accept_stat=stat, mismatch=mismatch)

    @classmethod
    def rpc_mismatch(cls, xid: int, low: int = RPC_VERSION, high: int = RPC_VERSION) -> Reply:
        return cls(
            xid,
            ReplyStat.MSG_DENIED,
            accept_stat=None,
            reject_stat=RejectStat.RPC_MISMATCH,
            mismatch=(low, high),
        )

    @classmethod
    def auth_error(cls, xid: int, why: AuthStat) -> Reply:
        return cls(
            xid,
            ReplyStat.MSG_DENIED,
            accept_stat=None,
            reject_stat=RejectStat.AUTH_ERROR,
            auth_stat=why,
        )

    @property
    def ok(self) -> bool:
        """Whether the procedure ran (accepted, SUCCESS)."""
        return self.accept_stat is AcceptStat.SUCCESS

    @property
    def status(self) -> str:
        """The outcome in the RFC's words, e.g. ``PROG_MISMATCH (low 1, high 1)``."""
        words = [self.reply_stat.name]
        stat = self.accept_stat if self.reply_stat is ReplyStat.MSG_ACCEPTED else self.reject_stat
        words.append(stat.name if stat is not None else "?")
        if self.auth_stat is not None:
            words.append(self.auth_stat.name)
        if self.mismatch is not None:
            words.append(f"(low {self.mismatch[0]}, high {self.mismatch[1]})")
        return " ".join(words)


def encode_reply(reply: Reply) -> bytes:
    """The reply message, results last."""
    packer = Packer()
    packer.pack_uint(reply.xid)
    packer.pack_enum(MsgType.REPLY)
    packer.pack_enum(reply.reply_stat)
    if reply.reply_stat is ReplyStat.MSG_ACCEPTED:
        assert reply.accept_stat is not None
        reply.verf.pack(packer)
        packer.pack_enum(reply.accept_stat)
        if reply.accept_stat is AcceptStat.PROG_MISMATCH:
            _pack_mismatch(packer, reply.mismatch)
        elif reply.accept_stat is AcceptStat.SUCCESS:
            return packer.get_buffer() + reply.results
    else:
        assert reply.reject_stat is not None
        packer.pack_enum(reply.reject_stat)
        if reply.reject_stat is RejectStat.RPC_MISMATCH:
            _pack_mismatch(packer, reply.mismatch)
        else:
            assert reply.auth_stat is not None
            packer.pack_enum(reply.auth_stat)
    return packer.get_buffer()


def _pack_mismatch(packer: Packer, mismatch: tuple[int, int] | None) -> None:
    if mismatch is None:
        raise XDRError("a mismatch reply needs (low, high)")
    packer.pack_uint(mismatch[0])
    packer.pack_uint(mismatch[1])


def decode_reply(record: bytes) -> Reply:
    """The reply in ``record``; XDRError if it is not one (results are left as bytes)."""
    reader = Unpacker(record)
    xid = reader.unpack_uint()
    if reader.unpack_enum() != MsgType.REPLY:
        raise XDRError("the message is a CALL, not a REPLY")
    reply_stat = ReplyStat(reader.unpack_enum(list(ReplyStat)))
    if reply_stat is ReplyStat.MSG_ACCEPTED:
        verf = OpaqueAuth.unpack(reader)
        stat = AcceptStat(reader.unpack_enum(list(AcceptStat)))
        if stat is AcceptStat.SUCCESS:
            return Reply(xid, verf=verf, results=reader.rest())
        mismatch = None
        if stat is AcceptStat.PROG_MISMATCH:
            mismatch = (reader.unpack_uint(), reader.unpack_uint())
        reader.done()
        return Reply(xid, accept_stat=stat, mismatch=mismatch, verf=verf)
    reject = RejectStat(reader.unpack_enum(list(RejectStat)))
    if reject is RejectStat.RPC_MISMATCH:
        low, high = reader.unpack_uint(), reader.unpack_uint()
        reader.done()
        return Reply.rpc_mismatch(xid, low, high)
    why = AuthStat(reader.unpack_enum(list(AuthStat)))
    reader.done()
    return Reply.auth_error(xid, why)


class CallError(XDRError):
    """A record that holds no call to run. ``reply`` is what RFC 5531 says to answer
    (RPC_MISMATCH, AUTH_ERROR), or None when nothing can be answered (no call header to
    answer to): the connection should then be closed."""

    def __init__(self, message: str, reply: Reply | None = None):
        super().__init__(message)
        self.reply = reply


def decode_call(record: bytes) -> tuple[Call, bytes]:
    """The call header in ``record`` and the bytes of its arguments, still in XDR.

    Raises CallError, carrying the reply RFC 5531 asks for when there is one:
    RPC_MISMATCH (low 2, high 2) for another version of the protocol, AUTH_ERROR
    with AUTH_BADCRED or AUTH_BADVERF for a credential or verifier that does not
    decode (over 400 bytes, cut short); no reply for a record too short to
    hold the header, or a REPLY.
    """
    reader = Unpacker(record)
    try:
        xid = reader.unpack_uint()
        mtype = reader.unpack_int()
    except XDRError:
        raise CallError(f"a record of {len(record)} bytes is too short for a call") from None
    if mtype != MsgType.CALL:
        raise CallError(f"message type {mtype}, not CALL (0)")
    try:
        rpcvers = reader.unpack_uint()
    except XDRError:
        raise CallError("the call ends before its RPC version") from None
    if rpcvers != RPC_VERSION:
        raise CallError(f"RPC version {rpcvers}, not 2", Reply.rpc_mismatch(xid))
    try:
        prog, vers, proc = reader.unpack_uint(), reader.unpack_uint(), reader.unpack_uint()
    except XDRError:
        raise CallError("the call ends inside its program, version and procedure") from None
    try:
        cred = OpaqueAuth.unpack(reader)
    except XDRError as exc:
        raise CallError(
            f"credential: {exc}", Reply.auth_error(xid, AuthStat.AUTH_BADCRED)
        ) from None
    try:
        verf = OpaqueAuth.unpack(reader)
    except XDRError as exc:
        raise CallError(f"verifier: {exc}", Reply.auth_error(xid, AuthStat.AUTH_BADVERF)) from None
    return Call(xid, prog, vers, proc, cred, verf, rpcvers), reader.rest()
