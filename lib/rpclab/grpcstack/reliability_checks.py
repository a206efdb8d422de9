"""The check behind notebook 09's exercise: a KV servicer whose Put stops when its caller has gone.

Notebook 09 runs it through ``rpclab.exercises.check`` (which prints the verdict and never
raises); tests/test_reliability_checks.py proves it passes the notebook's solution and catches
the usual wrong answers. :func:`check_cooperative_put` serves the learner's class for real and
calls it three ways: with time to spare (for two amounts of work, so that a Put must wait
``self.work``, not a number of its own), past a 0.1 s deadline, and cancelled. An exception
the handler raises reaches gRPC, not the check, so the check catches a blank exercise's
``NotDone`` there and raises it again here. Every wait is bounded; the server is stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.runtime import background

__all__ = ["check_cooperative_put"]

WAIT = 5.0  # seconds any single wait of the check may take


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class _Watched(kv_pb2_grpc.KVServicer):
    """Runs the learner's Put, noting when each call ends and any exception it raised."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer
        self.started = threading.Event()
        self.ended = threading.Event()
        self.seconds: float | None = None
        self.error: BaseException | None = None

    def Put(self, request: kv_pb2.PutRequest, context: grpc.ServicerContext) -> kv_pb2.PutReply:
        start = time.monotonic()
        self.started.set()
        try:
            return self.servicer.Put(request, context)
        except NotImplementedError as exc:  # NotDone: the exercise is still blank
            self.error = exc
            raise
        finally:
            self.seconds = time.monotonic() - start
            self.ended.set()

    def reset(self) -> None:
        self.started.clear()
        self.ended.clear()
        self.seconds = self.error = None


def _put_in_time(stub: Any, watched: _Watched, servicer: Any, key: str) -> float:
    """Make a Put with time to spare; return how long the handler took. It must store the value."""
    watched.servicer = servicer
    watched.reset()
    work = servicer.work
    try:
        stub.Put(kv_pb2.PutRequest(key=key, value="kept"), timeout=work + 3)
    except grpc.RpcError as error:
        if watched.error is not None:
            raise watched.error from None
        raise AssertionError(
            f"a Put with {work + 3:g} s to spare failed with {error.code().name}: "
            "it should work for self.work seconds and then store the value"
        ) from None
    _expect(watched.ended.wait(WAIT), f"Put was still running {WAIT:g} s on")
    _expect(
        servicer.store.get(key) == "kept",
        "a Put with plenty of time did not store its value: after the wait, if the call "
        "is still active, store request.value under request.key",
    )
    took = watched.seconds or 0.0
    _expect(
        work * 0.95 <= took < work + max(0.5, work / 2),
        f"with self.work = {work:g} s, your Put took {took:.2f} s: it should work self.work "
        "seconds, whatever they are (wait with a timeout of self.work, not a fixed number)",
    )
    return took


def check_cooperative_put(
    servicer_class: Callable[..., Any], work: float = 1.0, short_work: float = 0.3
) -> str:
    """Check a KV servicer whose Put works ``work`` seconds, then stores -- unless its call has
    ended: it must store in time, store nothing late, and stop soon after its caller goes.

    Two servicers, with ``short_work`` and ``work`` seconds of work, must each take their own
    time to store a Put that has time to spare; the one with ``work`` is then called past a
    0.1 s deadline and cancelled.
    """
    short, servicer = servicer_class(work=short_work), servicer_class(work=work)
    watched = _Watched(servicer)
    server = background.serve_grpc(
        "exercise-cooperative-put", lambda s: kv_pb2_grpc.add_KVServicer_to_server(watched, s)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = kv_pb2_grpc.KVStub(channel)
            # 1. Plenty of time, for two amounts of work: each value is stored after its work.
            _put_in_time(stub, watched, short, "in time")
            _put_in_time(stub, watched, servicer, "in time")
            watched.servicer = servicer
            # 2. The deadline passes during the work.
            watched.reset()
            deadline = 0.1
            try:
                stub.Put(kv_pb2.PutRequest(key="late", value="lost"), timeout=deadline)
            except grpc.RpcError:
                pass
            _expect(watched.ended.wait(work + WAIT), f"Put was still running {work + WAIT:g} s on")
            _expect(
                "late" not in servicer.store,
                f"your Put stored 'late' although its caller gave up after {deadline} s: "
                "check context.is_active() after the wait, and store only if it is True",
            )
            late = watched.seconds or 0.0
            _expect(
                late < deadline + work / 2,
                f"your Put went on for {late:.2f} s although its caller gave up after {deadline} "
                "s: wait on a threading.Event that context.add_callback(event.set) sets when the "
                "call ends, with a timeout of self.work, instead of sleeping",
            )
            # 3. The client cancels during the work.
            watched.reset()
            future = stub.Put.future(kv_pb2.PutRequest(key="cancelled", value="lost"), timeout=30)
            _expect(watched.started.wait(WAIT), "the cancelled Put never reached the server")
            future.cancel()
            _expect(watched.ended.wait(work + WAIT), f"Put was still running {work + WAIT:g} s on")
            _expect(
                "cancelled" not in servicer.store and (watched.seconds or 0.0) < work / 2 + 0.2,
                "a cancelled Put must stop early and store nothing, as one past its deadline does",
            )
    finally:
        server.stop()
    return f"a late Put stopped {late * 1000:.0f} ms after it began and stored nothing"
