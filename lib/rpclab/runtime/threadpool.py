"""A thread pool for servers: like concurrent.futures.ThreadPoolExecutor, but its threads never
keep the process alive.

A gRPC server runs each call's handler in a thread of the pool it is given. The standard
ThreadPoolExecutor joins every one of its threads when the interpreter exits, so a single
handler that never returns (a bug, or a call a client keeps open) makes the process hang at
exit, however short ``stop(timeout)`` was. Here the threads are daemon threads: ``shutdown``
asks them to end, :attr:`threads` lets the caller wait for them with a deadline of its own
(rpclab.runtime.background does, and names any that outlive it), and the interpreter leaves
without waiting.

Used by rpclab.runtime.background.serve_grpc, so by every gRPC server of notebooks 06-11 and
by ``rpclab serve grpc``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

from rpclab import checks

__all__ = ["ServerThreadPool"]


class ServerThreadPool(futures.Executor):
    """Run submitted calls in at most ``max_workers`` daemon threads, started as they are needed."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "rpclab-pool") -> None:
        self.max_workers = checks.integer("max_workers", max_workers, low=1)
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[tuple[futures.Future, Callable, tuple, dict] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)  # one release per thread waiting for work
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future: futures.Future = futures.Future()
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._run,
                    name=f"{self._prefix}_{len(self._threads)}",
                    daemon=True,
                )
                self._threads.add(thread)
                thread.start()
        return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:  # shutdown's signal to leave
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs  # drop references before waiting again
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more calls; let each thread end once it is free. ``wait`` joins them all
        (without a limit: pass False and join :attr:`threads` with a deadline instead)."""
        with self._lock:
            self._shut = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._work.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    @property
    def threads(self) -> list[threading.Thread]:
        """Every thread the pool has started (some may have ended)."""
        with self._lock:
            return list(self._threads)
