"""Checks for the servicer methods a learner writes: serve the class, call it, say what is wrong.

Used by the exercises of notebooks 07 (a unary method that fails with the right status code) and
08 (RecordRoute, a client stream; RouteChat, a bidirectional stream), through
rpclab.exercises::

    exercises.check("record-route", lambda: servicer_checks.check_record_route(MyRouteGuide))

Each check starts the learner's class on a background server of its own, makes real calls to it
over a channel, and raises AssertionError with a message in plain words at the first thing that
is wrong. The server is stopped however the check ends. An exception the learner's method raises
on the server (``NotDone`` from a blank exercise, say) is raised again in the check, as if the
method had been called directly, so the check can say "not done yet" rather than "UNKNOWN".
Every wait is bounded: a method that never answers fails the check within a few seconds.
tests/test_servicer_checks.py proves each check passes the notebook's solution, says "not done"
for the blank, and names what is wrong in typical mistakes.
"""

from __future__ import annotations

import functools
import inspect
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from rpclab.grpcstack import greeter, route_guide
from rpclab.runtime import background

__all__ = ["check_polite_greeter", "check_record_route", "check_route_chat"]

WAIT_S = 3.0  # the longest a check waits for any one reply
pb2, pb2_grpc = route_guide.route_guide_pb2, route_guide.route_guide_pb2_grpc
hello_pb2, hello_pb2_grpc = greeter.helloworld_pb2, greeter.helloworld_pb2_grpc


class _Raised:
    """Remembers the first exception a learner's method raised on the server."""

    def __init__(self) -> None:
        self.first: BaseException | None = None

    def unary(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(request, context)
            except Exception as exc:
                self.first = self.first or exc
                raise

        return call

    def stream(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(request, context)
            except Exception as exc:
                self.first = self.first or exc
                raise

        return call

    def reraise(self) -> None:
        if self.first is not None:
            raise self.first


def _instance(servicer_class: Any, base: type, what: str) -> Any:
    if not (inspect.isclass(servicer_class) and issubclass(servicer_class, base)):
        raise AssertionError(f"pass your class itself (a subclass of {base.__name__}), {what}")
    return servicer_class()


def _serve(name: str, add: Callable[[grpc.Server], None]) -> background.ServerHandle:
    return background.serve_grpc(f"check-{name}", add, max_workers=4)


def _failed(error: grpc.RpcError, raised: _Raised) -> AssertionError:
    raised.reraise()
    code = error.code()
    if code is grpc.StatusCode.UNKNOWN:
        return AssertionError(
            f"the server answered UNKNOWN ({error.details()}): your method raised an exception "
            "or returned something that is not the reply message"
        )
    return AssertionError(f"the call failed with {code.name}: {error.details()}")


# --------------------------------------------------------------------------- notebook 07


def check_polite_greeter(servicer_class: Any) -> str:
    """Check a Greeter whose SayHello greets a name and refuses an empty or blank one.

    ``SayHello(Ada)`` must answer ``Hello, Ada!``; a name that is empty or only spaces must end
    the call with INVALID_ARGUMENT and a details text saying why.
    """
    servicer = _instance(servicer_class, hello_pb2_grpc.GreeterServicer, "not an instance")
    raised = _Raised()
    servicer.SayHello = raised.unary(servicer.SayHello)
    handle = _serve("greeter", lambda s: hello_pb2_grpc.add_GreeterServicer_to_server(servicer, s))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = hello_pb2_grpc.GreeterStub(channel)
            try:
                reply = stub.SayHello(hello_pb2.HelloRequest(name="Ada"), timeout=WAIT_S)
            except grpc.RpcError as error:
                raise _failed(error, raised) from None
            if reply.message != "Hello, Ada!":
                raise AssertionError(
                    f"SayHello(name='Ada') answered {reply.message!r}, not 'Hello, Ada!'"
                )
            for name in ("", "   "):
                try:
                    reply = stub.SayHello(hello_pb2.HelloRequest(name=name), timeout=WAIT_S)
                except grpc.RpcError as error:
                    code = error.code()
                    if code is grpc.StatusCode.INVALID_ARGUMENT:
                        if not error.details():
                            raise AssertionError(
                                f"name={name!r} got INVALID_ARGUMENT, but with no details: "
                                "say why, as the second argument of context.abort"
                            ) from None
                        continue
                    if code is grpc.StatusCode.UNKNOWN:
                        raise AssertionError(
                            f"name={name!r} got UNKNOWN ({error.details()}): raising an "
                            "exception gives UNKNOWN; end the call with context.abort("
                            "grpc.StatusCode.INVALID_ARGUMENT, 'why') instead"
                        ) from None
                    raise AssertionError(
                        f"name={name!r} got {code.name}: the code for a request that is wrong "
                        "whatever the server's state is INVALID_ARGUMENT"
                    ) from None
                raise AssertionError(
                    f"name={name!r} was answered {reply.message!r}: it should fail with "
                    "INVALID_ARGUMENT"
                )
    finally:
        handle.stop()
    return "Ada is greeted; an empty and a blank name get INVALID_ARGUMENT"


# --------------------------------------------------------------------------- notebook 08


def _point(feature: Any) -> Any:
    return pb2.Point(latitude=feature.location.latitude, longitude=feature.location.longitude)


def _expected_summary(points: list[Any]) -> tuple[int, int, int]:
    guide = route_guide.RouteGuide()
    features = sum(guide.feature_at(p) is not None for p in points)
    metres = sum(route_guide.distance_m(a, b) for a, b in zip(points, points[1:], strict=False))
    return len(points), features, int(metres)


def check_record_route(servicer_class: Any) -> str:
    """Check a RouteGuide subclass's RecordRoute (client streaming) on three routes.

    The reply must count the points and the points that are features on the map, and give the
    distance in whole metres from each point to the next (``route_guide.distance_m``);
    ``elapsed_time`` is whole seconds, never more than the call took.
    """
    servicer = _instance(servicer_class, route_guide.RouteGuide, "not an instance")
    raised = _Raised()
    servicer.RecordRoute = raised.unary(servicer.RecordRoute)
    places = route_guide.features()
    nowhere = pb2.Point(latitude=0, longitude=0)
    routes = {
        "an empty route": [],
        "a route of one feature": [_point(places[0])],
        "a route of 3 features and 2 points off the map": [
            _point(places[1]),
            nowhere,
            _point(places[2]),
            _point(places[2]),
            nowhere,
        ],
    }
    handle = _serve(
        "record-route", lambda s: pb2_grpc.add_RouteGuideServicer_to_server(servicer, s)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.RouteGuideStub(channel)
            for what, points in routes.items():
                started = time.monotonic()
                try:
                    summary = stub.RecordRoute(iter(points), timeout=WAIT_S)
                except grpc.RpcError as error:
                    raise _failed(error, raised) from None
                took = time.monotonic() - started
                got = (summary.point_count, summary.feature_count, summary.distance)
                want = _expected_summary(points)
                names = ("point_count", "feature_count", "distance")
                for name, g, w in zip(names, got, want, strict=True):
                    if abs(g - w) > (1 if name == "distance" else 0):
                        hint = (
                            " (add the distance from each point to the NEXT one)"
                            if name == "distance"
                            else ""
                        )
                        raise AssertionError(f"for {what}, {name} is {g}, not {w}{hint}")
                if not 0 <= summary.elapsed_time <= took + 1:
                    raise AssertionError(
                        f"for {what}, elapsed_time is {summary.elapsed_time} s, but the call "
                        f"took {took:.1f} s"
                    )
    finally:
        handle.stop()
    return f"{len(routes)} routes summarised as the reference RouteGuide does"


def _note(where: Any, text: str) -> Any:
    return pb2.RouteNote(location=where, message=text)


def _said(notes: list[Any]) -> list[str]:
    return [note.message for note in notes]


_END = object()  # put in the reply queue when the call has ended


def _read_all(call: Any, into: queue.Queue[Any]) -> None:
    """Put every reply of ``call`` into ``into``, then the RpcError that ended it (if any), then
    _END."""
    try:
        for reply in call:
            into.put(reply)
    except grpc.RpcError as error:
        into.put(error)
    finally:
        into.put(_END)


def check_route_chat(servicer_class: Any) -> str:
    """Check a RouteGuide subclass's RouteChat (bidirectional streaming).

    For each note, the server must send back the notes left EARLIER in the same call at the same
    place, oldest first, as soon as the note arrives (while the client's stream is still open),
    and then remember it; a new call starts with no notes.
    """
    servicer = _instance(servicer_class, route_guide.RouteGuide, "not an instance")
    raised = _Raised()
    servicer.RouteChat = raised.stream(servicer.RouteChat)
    here, there = pb2.Point(latitude=1, longitude=1), pb2.Point(latitude=2, longitude=2)
    handle = _serve("route-chat", lambda s: pb2_grpc.add_RouteGuideServicer_to_server(servicer, s))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.RouteGuideStub(channel)
            replies = _chat(
                stub,
                raised,
                [[_note(here, "a"), _note(here, "b")], [_note(there, "c"), _note(here, "d")]],
            )
            want = ["a", "a", "b"]
            if _said(replies) != want:
                raise AssertionError(
                    "notes a, b here, c there, d here should be answered "
                    f"{want} (after b: a; after c: nothing; after d: a, b); yours answered "
                    f"{_said(replies)}"
                )
            again = _chat(stub, raised, [[_note(here, "e")]])
            if again:
                raise AssertionError(
                    f"a new call's first note was answered {_said(again)}: remember notes per "
                    "call (a list made inside RouteChat), not on the servicer"
                )
    finally:
        handle.stop()
    return "each note answered at once with the earlier notes at its place, per call"


def _chat(stub: Any, raised: _Raised, rounds: list[list[Any]]) -> list[Any]:
    """Send each round of notes; after the first, wait for a reply while the stream is open.
    Return every reply of the call."""
    outbox: queue.Queue[Any] = queue.Queue()
    inbox: queue.Queue[Any] = queue.Queue()
    chat = stub.RouteChat(iter(outbox.get, None), timeout=4 * WAIT_S)
    reader = threading.Thread(target=_read_all, args=(chat, inbox), name="rpclab-check:chat")
    reader.start()
    replies: list[Any] = []
    try:
        for number, notes in enumerate(rounds):
            for note in notes:
                outbox.put(note)
            if number == 0 and len(rounds) > 1:
                try:
                    replies.append(inbox.get(timeout=WAIT_S))
                except queue.Empty:
                    raise AssertionError(
                        "no reply came while the client's stream was still open: send back the "
                        "earlier notes as each note arrives, do not read all the notes first"
                    ) from None
        outbox.put(None)  # the client's stream ends
        while replies[-1:] != [_END]:
            try:
                replies.append(inbox.get(timeout=WAIT_S))
            except queue.Empty:
                raise AssertionError(
                    f"the call did not end within {WAIT_S:g} s of the client's last note: "
                    "return (or stop yielding) when the notes run out"
                ) from None
    finally:
        outbox.put(None)
        chat.cancel()
        reader.join(WAIT_S)
    replies.pop()  # _END
    for reply in replies:
        if isinstance(reply, grpc.RpcError):
            raise _failed(reply, raised)
    return replies
