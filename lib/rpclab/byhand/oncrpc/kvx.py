"""protos/kv.x by hand: its constants, numbers and one XDR routine per type -- what ``rpcgen``
writes into kv.h and kv_xdr.c for C, written out in Python for client and server to share.

    const MAX_KEY = 256;  const MAX_VALUE = 65536;
    typedef string kv_key<MAX_KEY>;  typedef string kv_value<MAX_VALUE>;  typedef kv_key kv_keys<>;
    enum kv_status { KV_OK = 0, KV_NOT_FOUND = 1, KV_INVALID = 2 };
    struct put_args { kv_key key; kv_value value; };
    struct incr_args { kv_key key; hyper amount; };
    union get_result switch (kv_status status) { case KV_OK: kv_value value; default: void; };
    union incr_result switch (kv_status status) { case KV_OK: hyper value; default: void; };
    program KV_PROG { version KV_V1 {
        void KV_NULL(void) = 0;            get_result KV_GET(kv_key) = 1;
        kv_status KV_PUT(put_args) = 2;    bool KV_DELETE(kv_key) = 3;
        incr_result KV_INCREMENT(incr_args) = 4;   kv_keys KV_KEYS(void) = 5;
    } = 1; } = 0x20000101;

A struct is its members one after another; a union is its discriminant, then
the arm it selects (``default: void`` sends nothing more). ``pack_*`` write a
value, ``unpack_*`` read one back, bounded as the file declares. A test
compares these numbers with the header ``rpcgen`` makes from kv.x.

Notebook 06 puts kv.x beside kv.proto; notebook 12 calls the store with it.
"""

from __future__ import annotations

from enum import IntEnum

from rpclab.byhand.oncrpc.xdr import Packer, Unpacker

__all__ = [
    "MAX_KEY",
    "MAX_VALUE",
    "KV_PROG",
    "KV_V1",
    "KVProc",
    "KVStatus",
    "pack_kv_key",
    "unpack_kv_key",
    "pack_kv_value",
    "unpack_kv_value",
    "pack_kv_keys",
    "unpack_kv_keys",
    "pack_kv_status",
    "unpack_kv_status",
    "pack_put_args",
    "unpack_put_args",
    "pack_incr_args",
    "unpack_incr_args",
    "pack_get_result",
    "unpack_get_result",
    "pack_incr_result",
    "unpack_incr_result",
]

MAX_KEY = 256
MAX_VALUE = 65536
KV_PROG = 0x20000101  # 0x20000000-0x3fffffff: "defined by user" (RFC 5531 section 8.3)
KV_V1 = 1


class KVProc(IntEnum):
    """The procedures of KV_V1, by number."""

    KV_NULL = 0
    KV_GET = 1
    KV_PUT = 2
    KV_DELETE = 3
    KV_INCREMENT = 4
    KV_KEYS = 5


class KVStatus(IntEnum):
    KV_OK = 0
    KV_NOT_FOUND = 1
    KV_INVALID = 2


# -- typedefs ---------------------------------------------------------------------


def pack_kv_key(packer: Packer, key: str) -> None:
    packer.pack_string(key, MAX_KEY)


def unpack_kv_key(reader: Unpacker) -> str:
    return reader.unpack_string(MAX_KEY)


def pack_kv_value(packer: Packer, value: str) -> None:
    packer.pack_string(value, MAX_VALUE)


def unpack_kv_value(reader: Unpacker) -> str:
    return reader.unpack_string(MAX_VALUE)


def pack_kv_keys(packer: Packer, keys: list[str]) -> None:
    packer.pack_array(keys, lambda key: pack_kv_key(packer, key))


def unpack_kv_keys(reader: Unpacker) -> list[str]:
    return reader.unpack_array(lambda: unpack_kv_key(reader))


def pack_kv_status(packer: Packer, status: KVStatus) -> None:
    packer.pack_enum(status)


def unpack_kv_status(reader: Unpacker) -> KVStatus:
    return KVStatus(reader.unpack_enum(list(KVStatus)))


# -- structs ----------------------------------------------------------------------


def pack_put_args(packer: Packer, key: str, value: str) -> None:
    pack_kv_key(packer, key)
    pack_kv_value(packer, value)


def unpack_put_args(reader: Unpacker) -> tuple[str, str]:
    return unpack_kv_key(reader), unpack_kv_value(reader)


def pack_incr_args(packer: Packer, key: str, amount: int) -> None:
    pack_kv_key(packer, key)
    packer.pack_hyper(amount)


def unpack_incr_args(reader: Unpacker) -> tuple[str, int]:
    return unpack_kv_key(reader), reader.unpack_hyper()


# -- unions -----------------------------------------------------------------------


def pack_get_result(packer: Packer, status: KVStatus, value: str | None = None) -> None:
    pack_kv_status(packer, status)
    if status is KVStatus.KV_OK:
        pack_kv_value(packer, value if value is not None else "")


def unpack_get_result(reader: Unpacker) -> tuple[KVStatus, str | None]:
    status = unpack_kv_status(reader)
    return status, unpack_kv_value(reader) if status is KVStatus.KV_OK else None


def pack_incr_result(packer: Packer, status: KVStatus, value: int | None = None) -> None:
    pack_kv_status(packer, status)
    if status is KVStatus.KV_OK:
        packer.pack_hyper(value if value is not None else 0)


def unpack_incr_result(reader: Unpacker) -> tuple[KVStatus, int | None]:
    status = unpack_kv_status(reader)
    return status, reader.unpack_hyper() if status is KVStatus.KV_OK else None
