"""The KV program of protos/kv.x served from a KVStore: each procedure calls the store and turns
what happens into the status kv.x declares -- what a C programmer writes by hand in
kv_server.c beside rpcgen's kv_svc.c.

    program = kv_program(store)          # a rpclab.byhand.oncrpc.program.Program
    program.answer(call_record)          # the reply record

    KV_GET       KV_OK and the value; KV_NOT_FOUND; KV_INVALID for an empty key
    KV_PUT       KV_OK; KV_INVALID for an empty key
    KV_DELETE    TRUE if the key was there (an empty key never is)
    KV_INCREMENT KV_OK and the new value; KV_INVALID if the value is not an integer or
                 the result does not fit in a hyper (the store is then left as it was)
    KV_KEYS      every key, sorted

Notebook 06 answers one call with it, bytes in and bytes out; notebook 12 serves the store with it
(rpclab.byhand.oncrpc.server).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rpclab.byhand.oncrpc import kvx
from rpclab.byhand.oncrpc.kvx import KVStatus
from rpclab.byhand.oncrpc.program import Procedure, Program
from rpclab.byhand.oncrpc.xdr import Packer, Unpacker
from rpclab.kv import KeyNotFound, KVStore

__all__ = ["KVProcedures", "kv_program", "HYPER_MIN", "HYPER_MAX"]

HYPER_MIN, HYPER_MAX = -(2**63), 2**63 - 1


class KVProcedures:
    """The six procedures of KV_V1 on one store, as plain methods (arguments already decoded)."""

    def __init__(self, store: KVStore):
        self.store = store

    def null(self) -> None:
        return None

    def get(self, key: str) -> tuple[KVStatus, str | None]:
        try:
            return KVStatus.KV_OK, self.store.get(key)
        except KeyNotFound:
            return KVStatus.KV_NOT_FOUND, None
        except (TypeError, ValueError):
            return KVStatus.KV_INVALID, None

    def put(self, key: str, value: str) -> KVStatus:
        try:
            self.store.put(key, value)
        except (TypeError, ValueError):
            return KVStatus.KV_INVALID
        return KVStatus.KV_OK

    def delete(self, key: str) -> bool:
        try:
            return self.store.delete(key)
        except (TypeError, ValueError):
            return False  # an empty key is never in the store

    def increment(self, key: str, amount: int) -> tuple[KVStatus, int | None]:
        try:
            value = self.store.increment(key, amount)
        except (TypeError, ValueError):
            return KVStatus.KV_INVALID, None
        if not HYPER_MIN <= value <= HYPER_MAX:
            self.store.increment(key, -amount)  # undo: the reply's hyper cannot carry the result
            return KVStatus.KV_INVALID, None
        return KVStatus.KV_OK, value

    def keys(self) -> list[str]:
        return self.store.keys()


def _void(reader: Unpacker) -> tuple[()]:
    return ()


def _one(unpack: Callable[[Unpacker], Any]) -> Callable[[Unpacker], tuple[Any]]:
    """Arguments of one value (a procedure's single parameter), as a tuple of one."""
    return lambda reader: (unpack(reader),)


def _no_result(packer: Packer, result: None) -> None:
    pass


def kv_program(store: KVStore) -> Program:
    """KV_PROG (0x20000101) version KV_V1 (1), its procedures bound to ``store``."""
    kv = KVProcedures(store)
    procedures = {
        kvx.KVProc.KV_NULL: Procedure("KV_NULL", _void, kv.null, _no_result),
        kvx.KVProc.KV_GET: Procedure(
            "KV_GET",
            _one(kvx.unpack_kv_key),
            kv.get,
            lambda packer, result: kvx.pack_get_result(packer, *result),
        ),
        kvx.KVProc.KV_PUT: Procedure("KV_PUT", kvx.unpack_put_args, kv.put, kvx.pack_kv_status),
        kvx.KVProc.KV_DELETE: Procedure(
            "KV_DELETE", _one(kvx.unpack_kv_key), kv.delete, Packer.pack_bool
        ),
        kvx.KVProc.KV_INCREMENT: Procedure(
            "KV_INCREMENT",
            kvx.unpack_incr_args,
            kv.increment,
            lambda packer, result: kvx.pack_incr_result(packer, *result),
        ),
        kvx.KVProc.KV_KEYS: Procedure("KV_KEYS", _void, kv.keys, kvx.pack_kv_keys),
    }
    return Program(kvx.KV_PROG, "KV_PROG", {kvx.KV_V1: procedures})
