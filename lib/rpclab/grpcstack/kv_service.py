"""The key-value store as a gRPC service (protos/kv.proto): a servicer around rpclab.kv.KVStore.

Taught in notebook 07; used in 08, 09, 10, 11; served by ``rpclab serve grpc``.

Each method does the store's work and turns the store's exceptions into gRPC
status codes (KeyNotFound -> NOT_FOUND, ValueError/TypeError ->
INVALID_ARGUMENT). Increment with a ``request_id`` runs at most once, and
Watch streams changes until the client cancels or its deadline passes.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

import grpc

from rpclab import checks
from rpclab.grpcstack import protos
from rpclab.kv import MAX_KEY_LENGTH, KeyNotFound, KVStore

__all__ = [
    "KV",
    "ReplyCache",
    "add_kv",
    "SERVICE_NAME",
    "VERSION_METADATA_KEY",
    "kv_pb2",
    "kv_pb2_grpc",
]

kv_pb2, kv_pb2_grpc = protos.load("kv")

SERVICE_NAME: str = kv_pb2.DESCRIPTOR.services_by_name["KV"].full_name  # "rpclab.kv.KV"

VERSION_METADATA_KEY = "rpclab-version"  # Watch's initial metadata: the version it starts after
MAX_REQUEST_ID_LENGTH = 128
WATCH_POLL_S = 0.1  # how often a quiet Watch checks that its call is still active
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Saved(NamedTuple):
    request: tuple[str, int]  # (key, amount) of the increment the id was first used for
    reply: kv_pb2.IncrementReply


class ReplyCache:
    """The replies to the most recent request ids: at most ``capacity`` of them, oldest forgotten
    first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = checks.integer("capacity", capacity, low=1)
        self._saved: OrderedDict[str, _Saved] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, request_id: str) -> _Saved | None:
        """The saved (request, reply) for ``request_id``, or None if it is not (or no longer)
        remembered."""
        with self._lock:
            return self._saved.get(request_id)

    def put(self, request_id: str, request: tuple[str, int], reply: kv_pb2.IncrementReply) -> None:
        """Remember the reply to ``request_id``, forgetting the oldest beyond capacity."""
        with self._lock:
            self._saved[request_id] = _Saved(request, reply)
            self._saved.move_to_end(request_id)
            while len(self._saved) > self.capacity:
                self._saved.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._saved)


@contextlib.contextmanager
def _errors_as_status(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn the store's exceptions into the status codes kv.proto promises."""
    try:
        yield
    except KeyNotFound as exc:
        context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except (ValueError, TypeError) as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def _abort_ended(context: grpc.ServicerContext) -> None:
    """End a call whose client has gone (deadline passed or cancelled) without doing its work."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the server did the work"
        )
    context.abort(
        grpc.StatusCode.CANCELLED, "the call was cancelled before the server did the work"
    )


class KV(kv_pb2_grpc.KVServicer):
    """Serves a KVStore over gRPC.

    ``delay`` (seconds, settable at any time) is an injected slowness before
    each call does its work, to watch deadlines expire; a call whose client
    gives up during the delay does nothing.
    """

    def __init__(
        self, store: KVStore | None = None, *, delay: float = 0.0, remember: int = 10_000
    ) -> None:
        self.delay = checks.seconds("delay", delay, low=0)
        self.store = store if store is not None else KVStore()
        self.replies = ReplyCache(remember)  # request_id -> reply, for at-most-once Increment
        self._once = threading.Lock()  # held while an Increment with a request_id runs

    # -- unary calls ----------------------------------------------------------

    def Get(self, request: kv_pb2.GetRequest, context: grpc.ServicerContext) -> kv_pb2.GetReply:
        self._pause(context)
        with _errors_as_status(context):
            return kv_pb2.GetReply(value=self.store.get(request.key))

    def Put(self, request: kv_pb2.PutRequest, context: grpc.ServicerContext) -> kv_pb2.PutReply:
        self._pause(context)
        with _errors_as_status(context):
            self.store.put(request.key, request.value)
        return kv_pb2.PutReply()

    def Delete(
        self, request: kv_pb2.DeleteRequest, context: grpc.ServicerContext
    ) -> kv_pb2.DeleteReply:
        self._pause(context)
        with _errors_as_status(context):
            return kv_pb2.DeleteReply(existed=self.store.delete(request.key))

    def Increment(
        self, request: kv_pb2.IncrementRequest, context: grpc.ServicerContext
    ) -> kv_pb2.IncrementReply:
        self._pause(context)
        amount = request.amount if request.HasField("amount") else 1
        request_id = request.request_id
        if not request_id:  # no id: every call increments (at-least-once if the client retries)
            return self._increment(request.key, amount, context)
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id is {len(request_id)} characters; the limit is {MAX_REQUEST_ID_LENGTH}",
            )
        remaining = context.time_remaining()  # about 9.2e18 when the call has no deadline
        if remaining is not None and remaining > threading.TIMEOUT_MAX:
            remaining = None  # too long for Lock.acquire (OverflowError): wait without a limit
        if not self._once.acquire(timeout=-1 if remaining is None else max(remaining, 0.0)):
            _abort_ended(context)
        try:  # check, run and remember as one step, so a retry racing the original waits for it
            saved = self.replies.get(request_id)
            if saved is not None:
                if saved.request != (request.key, amount):
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"request_id {request_id!r} was already used for another increment "
                        f"(key {saved.request[0]!r}, amount {saved.request[1]})",
                    )
                return saved.reply  # a repeat: the saved reply, and no second increment
            reply = self._increment(request.key, amount, context)
            self.replies.put(request_id, (request.key, amount), reply)
            return reply
        finally:
            self._once.release()

    def _increment(
        self, key: str, amount: int, context: grpc.ServicerContext
    ) -> kv_pb2.IncrementReply:
        with _errors_as_status(context):
            value = self.store.increment(key, amount)
        if not INT64_MIN <= value <= INT64_MAX:
            self.store.increment(key, -amount)  # undo: the reply's int64 cannot carry the result
            context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"{key!r} would become {value}, which does not fit in an int64",
            )
        return kv_pb2.IncrementReply(value=value)

    # -- streaming ------------------------------------------------------------

    def Watch(
        self, request: kv_pb2.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[kv_pb2.Change]:
        """Stream changes to keys under ``request.prefix`` until the call ends.

        Sends initial metadata (``rpclab-version``) once the watch is in place:
        a client that waits for ``call.initial_metadata()`` sees every later change.
        """
        if len(request.prefix) > MAX_KEY_LENGTH:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"prefix is {len(request.prefix)} characters; the limit is {MAX_KEY_LENGTH}",
            )
        seen = request.since_version if request.HasField("since_version") else self.store.version
        context.send_initial_metadata(((VERSION_METADATA_KEY, str(seen)),))
        while (
            context.is_active()
        ):  # False once the client cancels, its deadline passes or the server stops
            wait = WATCH_POLL_S
            remaining = context.time_remaining()
            if remaining is not None:
                wait = min(wait, max(remaining, 0.01))
            for change in self.store.changes_since(seen, timeout=wait):
                seen = change.version
                if change.key.startswith(request.prefix):
                    yield kv_pb2.Change(
                        version=change.version,
                        key=change.key,
                        value=change.value or "",
                        deleted=change.value is None,
                        time=change.time,
                    )

    # -- helpers --------------------------------------------------------------

    def _pause(self, context: grpc.ServicerContext) -> None:
        """Wait the injected delay, waking early if the call ends; then end the call if its client
        has gone."""
        delay = self.delay
        if delay > 0:
            ended = threading.Event()
            if context.add_callback(ended.set):  # False: the call has already ended
                ended.wait(delay)
        if not context.is_active():
            _abort_ended(context)


def add_kv(server: grpc.Server, store: KVStore | None = None, *, delay: float = 0.0) -> KV:
    """Add the KV service over ``store`` (a new KVStore if None) to ``server``; return the servicer.

    Use as ``background.serve_grpc("kv", lambda server: add_kv(server, store))``.
    """
    servicer = KV(store, delay=delay)
    kv_pb2_grpc.add_KVServicer_to_server(servicer, server)
    return servicer
