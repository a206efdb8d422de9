"""rpclab.byhand.oncrpc's XDR, messages and kv.x routines: values survive a round trip, the bytes
are RFC 4506's, and every size off the wire is checked before it is used."""

from __future__ import annotations

import os
import shutil
import subprocess
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpclab.byhand.oncrpc import kvx, messages
from rpclab.byhand.oncrpc.kvx import KVStatus
from rpclab.byhand.oncrpc.messages import (
    AcceptStat,
    AuthFlavor,
    AuthStat,
    AuthSys,
    Call,
    CallError,
    OpaqueAuth,
    Reply,
    decode_call,
    decode_reply,
    encode_call,
    encode_reply,
)
from rpclab.byhand.oncrpc.xdr import Packer, Unpacker, XDRError, padding, unpacked
from rpclab.grpcstack import protos

uint32 = st.integers(0, 2**32 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
hyper = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=60)


def packed(pack) -> bytes:  # type: ignore[no-untyped-def]
    packer = Packer()
    pack(packer)
    return packer.get_buffer()


# --------------------------------------------------------------------------- bytes on the wire


def test_xdr_items_are_big_endian_multiples_of_four_bytes():
    assert packed(lambda p: p.pack_int(-2)) == bytes.fromhex("fffffffe")
    assert packed(lambda p: p.pack_uint(258)) == bytes.fromhex("00000102")
    assert packed(lambda p: p.pack_hyper(-1)) == b"\xff" * 8
    assert packed(lambda p: p.pack_bool(True)) == bytes.fromhex("00000001")
    assert packed(lambda p: p.pack_string("hello")) == bytes.fromhex("00000005 68656c6c6f 000000")
    assert packed(lambda p: p.pack_opaque(b"")) == bytes(4)
    assert packed(lambda p: p.pack_fixed_opaque(b"ab", 2)) == b"ab\x00\x00"
    assert packed(lambda p: p.pack_array([1, 2], p.pack_uint)) == bytes.fromhex(
        "00000002 00000001 00000002"
    )
    assert packed(lambda p: p.pack_optional(None, p.pack_uint)) == bytes(4)
    assert [padding(n) for n in range(6)] == [0, 3, 2, 1, 0, 3]


def test_values_without_an_xdr_encoding_are_refused_when_packing():
    packer = Packer()
    for bad in (
        lambda: packer.pack_uint(-1),
        lambda: packer.pack_int(2**31),
        lambda: packer.pack_hyper(2**63),
        lambda: packer.pack_bool(1),
        lambda: packer.pack_string("x" * 5, 4),
        lambda: packer.pack_string(b"bytes"),
        lambda: packer.pack_opaque("text"),
        lambda: packer.pack_array([1, 2, 3], packer.pack_uint, 2),
        lambda: packer.pack_fixed_opaque(b"abc", 2),
        lambda: packer.pack_uint(True),
    ):
        with pytest.raises(XDRError):
            bad()
    assert packer.get_buffer() == b""


# --------------------------------------------------------------------------- round trips


@given(uint32, int32, hyper, st.integers(0, 2**64 - 1), st.booleans())
def test_numbers_round_trip(u, i, h, uh, b):
    data = packed(
        lambda p: (
            p.pack_uint(u),
            p.pack_int(i),
            p.pack_hyper(h),
            p.pack_uhyper(uh),
            p.pack_bool(b),
        )
    )
    assert len(data) == 28
    reader = Unpacker(data)
    got = (
        reader.unpack_uint(),
        reader.unpack_int(),
        reader.unpack_hyper(),
        reader.unpack_uhyper(),
        reader.unpack_bool(),
    )
    reader.done()
    assert got == (u, i, h, uh, b)


@given(st.binary(max_size=300), text, st.lists(text, max_size=10), st.none() | uint32)
def test_opaque_strings_arrays_and_optionals_round_trip(blob, word, words, maybe):
    def pack(p: Packer) -> None:
        p.pack_opaque(blob)
        p.pack_string(word)
        p.pack_array(words, p.pack_string)
        p.pack_optional(maybe, p.pack_uint)

    data = packed(pack)
    assert len(data) % 4 == 0
    reader = Unpacker(data)
    got = (
        reader.unpack_opaque(),
        reader.unpack_string(),
        reader.unpack_array(reader.unpack_string),
        reader.unpack_optional(reader.unpack_uint),
    )
    reader.done()
    assert got == (blob, word, words, maybe)


@given(st.text(min_size=0, max_size=64), st.text(max_size=200), hyper)
def test_kv_x_types_round_trip(key, value, amount):
    assert unpacked(packed(lambda p: kvx.pack_put_args(p, key, value)), kvx.unpack_put_args) == (
        key,
        value,
    )
    assert unpacked(packed(lambda p: kvx.pack_incr_args(p, key, amount)), kvx.unpack_incr_args) == (
        key,
        amount,
    )
    for status in KVStatus:
        ok = status is KVStatus.KV_OK
        got = unpacked(
            packed(lambda p, s=status: kvx.pack_get_result(p, s, value)), kvx.unpack_get_result
        )
        assert got == (status, value if ok else None)
        got = unpacked(
            packed(lambda p, s=status: kvx.pack_incr_result(p, s, amount)), kvx.unpack_incr_result
        )
        assert got == (status, amount if ok else None)
    assert unpacked(packed(lambda p: kvx.pack_kv_keys(p, [key, value[:256]])), kvx.unpack_kv_keys)


def test_a_union_sends_its_arm_only_for_the_case_that_has_one():
    assert packed(lambda p: kvx.pack_get_result(p, KVStatus.KV_NOT_FOUND)) == bytes.fromhex(
        "00000001"
    )
    assert packed(lambda p: kvx.pack_get_result(p, KVStatus.KV_OK, "hi")) == bytes.fromhex(
        "00000000 00000002 68690000"
    )


@given(
    uint32,
    uint32,
    uint32,
    uint32,
    st.sampled_from([OpaqueAuth(0), AuthSys(7, "box", 1000, 100, (4, 27)).to_auth()]),
    st.binary(max_size=40).map(lambda b: b + bytes(padding(len(b)))),
)
def test_calls_round_trip(xid, prog, vers, proc, cred, args):
    call = Call(xid, prog, vers, proc, cred=cred)
    assert decode_call(encode_call(call, args)) == (call, args)


@pytest.mark.parametrize(
    "reply",
    [
        Reply.success(1, b"\x00\x00\x00\x2a"),
        Reply.accepted(2, AcceptStat.PROG_UNAVAIL),
        Reply.accepted(3, AcceptStat.PROG_MISMATCH, (1, 3)),
        Reply.accepted(4, AcceptStat.PROC_UNAVAIL),
        Reply.accepted(5, AcceptStat.GARBAGE_ARGS),
        Reply.accepted(6, AcceptStat.SYSTEM_ERR),
        Reply.rpc_mismatch(7),
        Reply.auth_error(8, AuthStat.AUTH_REJECTEDCRED),
    ],
    ids=lambda reply: reply.status,
)
def test_every_kind_of_reply_round_trips(reply):
    assert decode_reply(encode_reply(reply)) == reply


def test_a_prog_mismatch_reply_is_the_rfcs_bytes():
    record = encode_reply(Reply.accepted(0x11223344, AcceptStat.PROG_MISMATCH, (1, 1)))
    assert record == bytes.fromhex(
        "11223344 00000001 00000000 00000000 00000000 00000002 00000001 00000001"
    )  # xid, REPLY, MSG_ACCEPTED, verifier AUTH_NONE + empty body, PROG_MISMATCH, low, high


def test_auth_sys_parameters_round_trip_and_a_bad_one_is_refused():
    parms = AuthSys(stamp=1, machinename="laptop", uid=1000, gid=1000, gids=(4, 24, 27))
    auth = parms.to_auth()
    assert auth.flavor == AuthFlavor.AUTH_SYS
    assert AuthSys.from_auth(auth) == parms
    with pytest.raises(XDRError):
        AuthSys.from_auth(OpaqueAuth(AuthFlavor.AUTH_SYS, auth.body[:-4]))  # cut short
    with pytest.raises(XDRError):
        AuthSys.from_auth(OpaqueAuth(AuthFlavor.AUTH_SYS, auth.body + bytes(4)))  # extra bytes
    with pytest.raises(XDRError):
        AuthSys(gids=tuple(range(17))).to_auth()  # gids<16>


# --------------------------------------------------------------------------- hostile bytes


@pytest.mark.parametrize(
    "data, unpack",
    [
        (bytes.fromhex("ffffffff"), lambda r: r.unpack_opaque()),  # 4 GiB declared, 0 sent
        (bytes.fromhex("7fffffff") + b"abcd", lambda r: r.unpack_string()),
        (bytes.fromhex("00000101") + b"k" * 260, kvx.unpack_kv_key),  # over MAX_KEY
        (bytes.fromhex("00010001") + b"v" * 4, kvx.unpack_kv_value),  # over MAX_VALUE
        (bytes.fromhex("ffffffff"), kvx.unpack_kv_keys),  # 4 billion keys declared
        (bytes.fromhex("00000003") + bytes(8), kvx.unpack_kv_keys),  # 3 keys cannot fit in 8 bytes
        (bytes.fromhex("00000002"), lambda r: r.unpack_bool()),  # a bool is 0 or 1
        (bytes.fromhex("00000007"), kvx.unpack_kv_status),  # not a kv_status
        (bytes.fromhex("00000001") + b"a\x00\x00\x01", lambda r: r.unpack_string()),  # padding
        (bytes.fromhex("00000002") + b"\xff\xfe\x00\x00", lambda r: r.unpack_string()),  # UTF-8
        (bytes.fromhex("000000"), lambda r: r.unpack_uint()),  # cut short
    ],
    ids=[
        "opaque-4GiB",
        "string-2GiB",
        "key-over-MAX_KEY",
        "value-over-MAX_VALUE",
        "array-4G-items",
        "array-more-than-fits",
        "bool-2",
        "enum-unknown",
        "padding-not-zero",
        "string-not-utf8",
        "truncated",
    ],
)
def test_hostile_bytes_raise_xdr_error(data, unpack):
    with pytest.raises(XDRError):
        unpack(Unpacker(data))


def test_a_huge_declared_length_allocates_nothing():
    tracemalloc.start()
    try:
        for _ in range(100):
            with pytest.raises(XDRError):
                Unpacker(bytes.fromhex("fffffff0")).unpack_opaque()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    "record, answer",
    [
        (b"", None),
        (bytes.fromhex("00000001"), None),
        (bytes.fromhex("00000001 00000001"), None),  # a REPLY sent to a server
        (bytes.fromhex("00000001 00000000"), None),  # cut before the RPC version
        (bytes.fromhex("00000001 00000000 00000003"), "MSG_DENIED RPC_MISMATCH (low 2, high 2)"),
        (bytes.fromhex("00000001 00000000 00000002 20000101"), None),  # cut in the header
        (
            bytes.fromhex("00000001 00000000 00000002 20000101 00000001 00000000 00000000 00000191")
            + bytes(404),
            "MSG_DENIED AUTH_ERROR AUTH_BADCRED",
        ),  # a 401-byte credential: the RFC allows 400
        (
            bytes.fromhex("00000001 00000000 00000002 20000101 00000001 00000000")
            + bytes(8)
            + bytes.fromhex("00000000 ffffffff"),
            "MSG_DENIED AUTH_ERROR AUTH_BADVERF",
        ),
    ],
    ids=[
        "empty",
        "xid-only",
        "reply",
        "no-version",
        "rpc-version-3",
        "header-cut",
        "credential-401-bytes",
        "verifier-4GiB",
    ],
)
def test_decode_call_says_what_the_rfc_answers_to_a_bad_header(record, answer):
    with pytest.raises(CallError) as info:
        decode_call(record)
    reply = info.value.reply
    assert (reply.status if reply is not None else None) == answer
    if reply is not None:
        assert reply.xid == 1


# --------------------------------------------------------------------------- kv.x itself


def test_kvx_matches_the_numbers_in_protos_kv_x():
    source = (protos.protos_dir() / "kv.x").read_text()
    for line in (
        "const MAX_KEY = 256;",
        "const MAX_VALUE = 65536;",
        "typedef string kv_key<MAX_KEY>;",
        "typedef string kv_value<MAX_VALUE>;",
        "typedef kv_key kv_keys<>;",
        "} = 0x20000101;",
    ):
        assert line in source
    assert (kvx.MAX_KEY, kvx.MAX_VALUE, kvx.KV_PROG, kvx.KV_V1) == (256, 65536, 0x20000101, 1)
    assert [p.value for p in kvx.KVProc] == list(range(6))
    assert messages.RPC_VERSION == 2


def test_kvx_agrees_with_the_header_rpcgen_writes(tmp_path):
    if shutil.which("rpcgen") is None:
        reason = "rpcgen is not installed (apt-get install rpcsvc-proto)"
        if os.environ.get("RPCLAB_REQUIRE_ONCRPC") == "1":
            pytest.fail(f"RPCLAB_REQUIRE_ONCRPC=1 but {reason}")
        pytest.skip(reason)
    (tmp_path / "kv.x").write_text((protos.protos_dir() / "kv.x").read_text())
    subprocess.run(["rpcgen", "-h", "-o", "kv.h", "kv.x"], cwd=tmp_path, check=True, timeout=60)
    header = (tmp_path / "kv.h").read_text()
    expected = {
        "MAX_KEY": str(kvx.MAX_KEY),
        "MAX_VALUE": str(kvx.MAX_VALUE),
        "KV_PROG": hex(kvx.KV_PROG),
        "KV_V1": str(kvx.KV_V1),
        **{proc.name: str(proc.value) for proc in kvx.KVProc},
    }
    for name, value in expected.items():
        assert f"#define {name} {value}\n" in header
    for status in KVStatus:
        assert f"{status.name} = {status.value}," in header
