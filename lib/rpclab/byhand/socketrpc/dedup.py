"""At-most-once: a table of replies by request id, so that a repeated request is answered, not run.

Part of rpclab.byhand.socketrpc: ``serve(..., at_most_once=True)`` puts one in front of the
dispatcher (``Dispatcher.handle(data, once=table.once)``). Taught in notebook 05 (retries,
at-least-once vs at-most-once) and assignment A3::

    table = DedupTable(max_entries=10_000)
    table.once(request, run)     # run()'s reply the first time; the same reply for every repeat
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rpclab import checks
from rpclab.byhand import jsonrpc

__all__ = ["DedupTable", "DEDUP_SIZE", "DUPLICATE_WAIT"]

DEDUP_SIZE = 10_000  # replies an at-most-once server remembers
DUPLICATE_WAIT = 30.0  # seconds a repeated request waits for the first one to finish


class DedupTable:
    """At-most-once: the reply to each request id, kept so a repeated id gets it again.

    Keyed by id alone, so a retry on a new connection is recognised too:
    clients must make ids unique (rpclab's client sends ``"<client-uuid>:<n>"``).
    Holds at most ``max_entries`` replies; the least recently used go first.
    A repeat that arrives while the first is still running waits for it.
    """

    def __init__(self, max_entries: int = DEDUP_SIZE, *, wait_timeout: float = DUPLICATE_WAIT):
        self.max_entries = checks.integer("max_entries", max_entries, low=1)
        self.wait_timeout = wait_timeout
        self.replays = 0  # how many requests were answered from the table
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def once(self, request: jsonrpc.Request, run: Callable[[], dict]) -> dict:
        """``run()``'s reply for the first request with this id; the same reply for every repeat."""
        key = (type(request.id), request.id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                first = True
            else:
                self._entries.move_to_end(key)
                self.replays += 1
                first = False
        if first:
            try:
                entry.reply = run()
            except BaseException:
                with self._lock:  # it did not finish: a retry may run it
                    if self._entries.get(key) is entry:
                        del self._entries[key]
                raise
            finally:
                entry.done.set()
            return entry.reply
        if not entry.done.wait(self.wait_timeout) or entry.reply is None:
            problem = jsonrpc.RPCError(
                jsonrpc.SERVER_ERROR,
                "Duplicate request still running",
                f"request {request.id!r} is still running; try again later",
            )
            return jsonrpc.error_response(request.id, problem)
        return entry.reply

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            return (type(request_id), request_id) in self._entries

    def clear(self) -> None:
        """Forget every reply."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        return f"<DedupTable {len(self)}/{self.max_entries} replies, {self.replays} replayed>"


class _Entry:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict | None = None
