"""At-most-once: a table of replies by caller and request id, so that a repeated request is
answered, not run.

Part of rpclab.byhand.socketrpc: ``serve(..., at_most_once=True)`` puts one in front of the
dispatcher, and each connection hands it the caller (``Dispatcher.handle(data, once=...)``).
Taught in notebook 05 (retries, at-least-once vs at-most-once) and assignment A3; a class
server's (``rpclab serve socket --at-most-once``)::

    table = DedupTable(max_entries=10_000, max_bytes=32 * 1024 * 1024)
    table.once(request, run)                  # run()'s reply the first time; the same reply for
                                              # every repeat
    table.once(request, run, caller=("10.0.0.7", 3))   # as the server calls it: who, and which
                                                       # connection

A call is named by its caller and a sequence number, as Birrell and Nelson name it (the calling
machine and process, and a number) and as 6.824's labs do (client id, seq). Here the caller is

* the *learner*: the address the request came from (a server knows it; a learner cannot choose
  it), so two learners' ids never meet, whatever ids they send;
* and the *client*: an id ``"<client-id>:<n>"`` -- what rpclab's client sends, a random client id
  and a counter -- names its client, so that a retry on a new connection is recognised; any
  other id (``1``, ``2``, ``3``..., as notebook 04's stub sends) belongs to its connection alone.

A repeated id whose method or params differ is not a repeat: it gets an error (-32600), and
neither runs nor replays. The table is bounded twice, by replies (``max_entries``) and by bytes
(``max_bytes``: each reply is kept as its JSON bytes, plus ``ENTRY_BYTES`` for the entry itself).
Over a bound, the least recently used reply *of the learner holding the most* goes first, so a
learner who floods the table pushes out their own replies, not a classmate's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import orjson

from rpclab import checks
from rpclab.byhand import jsonrpc

__all__ = ["DedupTable", "DEDUP_SIZE", "DEDUP_BYTES", "DUPLICATE_WAIT", "ENTRY_BYTES"]

DEDUP_SIZE = 10_000  # replies an at-most-once server remembers
DEDUP_BYTES = 32 * 1024 * 1024  # ... and the bytes they may take in all
DUPLICATE_WAIT = 30.0  # seconds a repeated request waits for the first one to finish
ENTRY_BYTES = 480  # one entry besides its reply: key, id, objects (tracemalloc, CPython 3.11)
_REPLAY_DEPTH = 1 << 20  # a saved reply is the server's own: decode it whatever its depth

Caller = tuple[Hashable, Hashable]  # (learner, connection), as the server says


class DedupTable:
    """At-most-once: the reply to each (caller, request id), kept so a repeat gets it again.

    ``once(request, run, caller)`` runs ``run()`` for the first request of its kind and returns
    the same reply for every repeat; ``caller`` is ``(learner, connection)`` (None: one caller,
    as when a notebook tries the table by hand). Holds at most ``max_entries`` replies and
    ``max_bytes`` bytes; a repeat that arrives while the first is still running waits for it,
    at most ``wait_timeout`` seconds.
    """

    def __init__(
        self,
        max_entries: int = DEDUP_SIZE,
        *,
        max_bytes: int = DEDUP_BYTES,
        wait_timeout: float = DUPLICATE_WAIT,
    ):
        self.max_entries = checks.integer("max_entries", max_entries, low=1)
        self.max_bytes = checks.integer("max_bytes", max_bytes, low=1)
        self.wait_timeout = checks.seconds("wait_timeout", wait_timeout, low=0)
        self.replays = 0  # how many requests were answered from the table
        self.bytes = 0  # what the kept replies take now, ENTRY_BYTES each included
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()  # least recently used first
        self._learners: dict[Hashable, _Learner] = {}
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)  # a first request's reply was saved
        self._waiting = 0  # repeats waiting for one
        self._releases = 0  # how many times release_waiters() was called

    def once(
        self, request: jsonrpc.Request, run: Callable[[], dict], caller: Caller | None = None
    ) -> dict:
        """``run()``'s reply for the first request with this caller and id; the same reply for
        every repeat (an error for a repeat that is another call)."""
        learner, connection = caller if caller is not None else (None, None)
        request_id = request.id
        if type(request_id) is str and ":" in request_id:  # "<client-id>:<n>": names its client
            connection = None
        key = (learner, connection, type(request_id), request_id)
        fingerprint = _fingerprint(request)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._add(key, learner, fingerprint)
            elif entry.fingerprint != fingerprint:
                return jsonrpc.error_response(
                    request_id,
                    jsonrpc.InvalidRequest(
                        f"request id {request_id!r} was used before for another call (another "
                        "method or params): an at-most-once server runs each id once, so a new "
                        "call needs a new id"
                    ),
                )
            else:
                self._entries.move_to_end(key)
                self._learners[learner].keys.move_to_end(key)
                self.replays += 1
                saved = entry.saved if entry.saved is not None else self._wait_for(entry)
                if saved is None:
                    problem = jsonrpc.RPCError(
                        jsonrpc.SERVER_ERROR,
                        "Duplicate request still running",
                        f"request {request_id!r} is still running; try again later",
                    )
                    return jsonrpc.error_response(request_id, problem)
                return _replay(saved)
        try:
            reply = run()
        except BaseException:
            with self._lock:  # it did not finish: a retry may run it
                entry.gone = True
                if self._entries.get(key) is entry:
                    self._remove(key)
                if self._waiting:
                    self._finished.notify_all()
            raise
        self._keep(key, entry, reply)
        return reply

    def _wait_for(self, entry: _Entry) -> bytes | dict | None:
        """The reply of a first request still running, once it is saved; None if it failed, or
        did not finish within ``wait_timeout`` seconds, or release_waiters() was called (the
        caller holds _lock)."""
        release = self._releases
        self._waiting += 1
        try:
            self._finished.wait_for(
                lambda: entry.saved is not None or entry.gone or self._releases != release,
                self.wait_timeout,
            )
        finally:
            self._waiting -= 1
        return entry.saved

    def release_waiters(self) -> None:
        """Wake every repeat waiting for a first request still running (it is told so): the
        server is stopping."""
        with self._lock:
            self._releases += 1
            self._finished.notify_all()

    # -- the bounds ---------------------------------------------------------------

    def _add(self, key: tuple, learner: Hashable, fingerprint: bytes) -> _Entry:
        """A new entry, counted, with the table shrunk to its bounds (the caller holds _lock)."""
        entry = self._entries[key] = _Entry(learner, fingerprint)
        mine = self._learners.get(learner)
        if mine is None:
            mine = self._learners[learner] = _Learner()
        mine.keys[key] = None
        mine.bytes += entry.size
        self.bytes += entry.size
        self._shrink(keep=key)
        return entry

    def _keep(self, key: tuple, entry: _Entry, reply: dict) -> None:
        """Save ``reply`` as JSON bytes and count them, if the entry is still in the table; wake
        the repeats waiting for it."""
        try:
            # (a copy: orjson's bytes keep a block of 4 KiB however short they are)
            saved: bytes | dict = bytes(memoryview(jsonrpc.encode(reply)))
            size = ENTRY_BYTES + len(saved)
        except (TypeError, ValueError):  # not JSON: the dispatcher answers with an error
            saved, size = reply, ENTRY_BYTES
        with self._lock:
            entry.saved = saved
            if self._waiting:
                self._finished.notify_all()
            if self._entries.get(key) is not entry:
                return  # pushed out while it ran
            grown = size - entry.size
            entry.size = size
            self._learners[entry.learner].bytes += grown
            self.bytes += grown
            self._shrink(keep=key)

    def _shrink(self, keep: tuple) -> None:
        """Forget replies until the table is within its bounds: each time, the least recently
        used of the learner holding the most. Never ``keep``, the entry just added."""
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            by_bytes = self.bytes > self.max_bytes
            others = [v for v in self._learners.values() if len(v.keys) > (keep in v.keys)]
            if not others:
                return  # only ``keep`` is left: it stays, alone, until the next reply
            biggest = max(others, key=(lambda v: v.bytes) if by_bytes else (lambda v: len(v.keys)))
            victim = next(k for k in biggest.keys if k != keep)
            self._remove(victim)

    def _remove(self, key: tuple) -> None:
        entry = self._entries.pop(key)
        mine = self._learners[entry.learner]
        del mine.keys[key]
        mine.bytes -= entry.size
        self.bytes -= entry.size
        if not mine.keys:
            del self._learners[entry.learner]

    # -- looking at it --------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, request_id: object) -> bool:
        """Whether some caller's reply to ``request_id`` is kept."""
        with self._lock:
            return any(key[2] is type(request_id) and key[3] == request_id for key in self._entries)

    def learners(self) -> dict[Hashable, tuple[int, int]]:
        """Each learner's (replies, bytes) in the table now."""
        with self._lock:
            return {name: (len(v.keys), v.bytes) for name, v in self._learners.items()}

    def clear(self) -> None:
        """Forget every reply."""
        with self._lock:
            self._entries.clear()
            self._learners.clear()
            self.bytes = 0

    def __repr__(self) -> str:
        return (
            f"<DedupTable {len(self)}/{self.max_entries} replies, "
            f"{self.bytes:,}/{self.max_bytes:,} bytes, {self.replays} replayed>"
        )


def _fingerprint(request: jsonrpc.Request) -> bytes:
    """A short digest of what the request asks (method and params, named params in any order):
    a repeat asks the same."""
    what = [request.method, request.params]
    try:
        text = orjson.dumps(what, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer over 64 bits (params off the wire are JSON: no other case)
        text = json.dumps(what, sort_keys=True, default=repr).encode("utf-8", "backslashreplace")
    return hashlib.blake2b(text, digest_size=16).digest()


def _replay(saved: bytes | dict) -> dict:
    if type(saved) is dict:
        return saved
    return jsonrpc.decode(saved, max_depth=_REPLAY_DEPTH)


class _Entry:
    __slots__ = ("saved", "gone", "learner", "fingerprint", "size")

    def __init__(self, learner: Hashable, fingerprint: bytes) -> None:
        self.saved: bytes | dict | None = None  # the reply's JSON, once run() has returned
        self.gone = False  # run() raised: no reply will come
        self.learner = learner
        self.fingerprint = fingerprint
        self.size = ENTRY_BYTES


class _Learner:
    __slots__ = ("keys", "bytes")

    def __init__(self) -> None:
        self.keys: OrderedDict[tuple, None] = OrderedDict()  # theirs, least recently used first
        self.bytes = 0
