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

About 430 lines: three checks, each with the plain-words message for every usual mistake
it names.
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


GREETED = ("Ada", "Ada Lovelace")  # names the Greeter must greet, a space inside one
REFUSED = ("", "   ")  # names it must refuse: empty, and only spaces


def check_polite_greeter(servicer_class: Any) -> str:
    """Check a Greeter whose SayHello greets a name and refuses an empty or blank one.

    ``SayHello`` must answer ``Hello, <name>!`` for every name of GREETED (a name with a space
    inside is still a name); each name of REFUSED must end the call with INVALID_ARGUMENT and a
    details text that says why (not empty, not only spaces).
    """
    servicer = _instance(servicer_class, hello_pb2_grpc.GreeterServicer, "not an instance")
    raised = _Raised()
    servicer.SayHello = raised.unary(servicer.SayHello)
    handle = _serve("greeter", lambda s: hello_pb2_grpc.add_GreeterServicer_to_server(servicer, s))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = hello_pb2_grpc.GreeterStub(channel)
            for name in GREETED:
                _expect_greeting(stub, raised, name)
            for name in REFUSED:
                _expect_refusal(stub, name)
    finally:
        handle.stop()
    return (
        "'Ada' and 'Ada Lovelace' are greeted; an empty and a blank name get INVALID_ARGUMENT, "
        "with a reason"
    )


def _expect_greeting(stub: Any, raised: _Raised, name: str) -> None:
    try:
        reply = stub.SayHello(hello_pb2.HelloRequest(name=name), timeout=WAIT_S)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
            raise AssertionError(
                f"SayHello(name={name!r}) was refused with INVALID_ARGUMENT ({error.details()}): "
                "refuse only a name that is empty or only spaces (name.strip() is empty)"
            ) from None
        raise _failed(error, raised) from None
    if reply.message != f"Hello, {name}!":
        raise AssertionError(
            f"SayHello(name={name!r}) answered {reply.message!r}, not {f'Hello, {name}!'!r}"
        )


def _expect_refusal(stub: Any, name: str) -> None:
    try:
        reply = stub.SayHello(hello_pb2.HelloRequest(name=name), timeout=WAIT_S)
    except grpc.RpcError as error:
        code = error.code()
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            if not (error.details() or "").strip():
                raise AssertionError(
                    f"name={name!r} got INVALID_ARGUMENT, but with details {error.details()!r}: "
                    "say why, in words, as the second argument of context.abort"
                ) from None
            return
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
        f"name={name!r} was answered {reply.message!r}: it should fail with INVALID_ARGUMENT"
    )


# --------------------------------------------------------------------------- notebook 08


PAUSE_S = 1.2  # the slow route's client waits this long between its two points


def _point(feature: Any) -> Any:
    return pb2.Point(latitude=feature.location.latitude, longitude=feature.location.longitude)


def _legs(points: list[Any]) -> list[float]:
    return [route_guide.distance_m(a, b) for a, b in zip(points, points[1:], strict=False)]


def _expected_summary(points: list[Any]) -> tuple[int, int, int]:
    guide = route_guide.RouteGuide()
    features = sum(guide.feature_at(p) is not None for p in points)
    return len(points), features, int(sum(_legs(points)))


def _distance_hint(points: list[Any], got: int) -> str:
    """What a wrong distance most likely came from, in words."""
    if got == sum(int(leg) for leg in _legs(points)):
        return (
            ": you made each leg a whole number before adding; add the exact distances "
            "(floats) and make only the total whole, with int(), at the end"
        )
    from_start = sum(route_guide.distance_m(points[0], p) for p in points[1:]) if points else 0
    if abs(got - from_start) <= 1:
        return ": that is the distance from the FIRST point to each; add each point to the NEXT"
    return (
        ": add route_guide.distance_m(previous, point) over each pair of neighbouring points, "
        "in metres, and int() the total"
    )


def _slowly(points: list[Any]) -> Iterator[Any]:
    """The points, with a pause before each one after the first (a client that takes its time)."""
    for number, point in enumerate(points):
        if number:
            time.sleep(PAUSE_S)  # deliberate pacing: the route takes PAUSE_S per leg
        yield point


def check_record_route(servicer_class: Any) -> str:
    """Check a RouteGuide subclass's RecordRoute (client streaming) on five routes.

    The reply must count every point the client sent and the points that are features on the map,
    give the distance in whole metres (the int() of the sum of ``route_guide.distance_m`` from
    each point to the next), and ``elapsed_time``: the whole seconds the call took on the server.
    One route is long (a method that reads only the first few points fails), and one comes
    slowly, PAUSE_S between its two points (a method that always says 0 seconds fails).
    """
    servicer = _instance(servicer_class, route_guide.RouteGuide, "not an instance")
    raised = _Raised()
    servicer.RecordRoute = raised.unary(servicer.RecordRoute)
    places = route_guide.features()
    nowhere = pb2.Point(latitude=0, longitude=0)
    routes = [  # (what, the points, sent slowly?)
        ("an empty route", [], False),
        ("a route of one feature", [_point(places[0])], False),
        (
            "a route of 3 features and 2 points off the map",
            [_point(places[1]), nowhere, _point(places[2]), _point(places[2]), nowhere],
            False,
        ),
        (f"a route through all {len(places)} features", [_point(f) for f in places], False),
        (f"a route of 2 points sent {PAUSE_S:g} s apart", [_point(places[3]), nowhere], True),
    ]
    handle = _serve(
        "record-route", lambda s: pb2_grpc.add_RouteGuideServicer_to_server(servicer, s)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.RouteGuideStub(channel)
            for what, points, slow in routes:
                started = time.monotonic()
                try:
                    summary = stub.RecordRoute(
                        _slowly(points) if slow else iter(points), timeout=WAIT_S + PAUSE_S
                    )
                except grpc.RpcError as error:
                    raise _failed(error, raised) from None
                took = time.monotonic() - started
                _compare_summary(what, points, summary)
                if not 0 <= summary.elapsed_time <= took + 0.5:
                    raise AssertionError(
                        f"for {what}, elapsed_time is {summary.elapsed_time} s, but the call "
                        f"took {took:.1f} s"
                    )
                if slow and summary.elapsed_time < 1:
                    raise AssertionError(
                        f"for {what}, elapsed_time is {summary.elapsed_time}, but the call took "
                        f"{took:.1f} s: note time.monotonic() when RecordRoute starts, and give "
                        "the whole seconds that passed, int(now - started), once the points end"
                    )
    finally:
        handle.stop()
    return f"{len(routes)} routes summarised as the reference RouteGuide does"


def _compare_summary(what: str, points: list[Any], summary: Any) -> None:
    got = (summary.point_count, summary.feature_count, summary.distance)
    want = _expected_summary(points)
    for name, g, w in zip(("point_count", "feature_count", "distance"), got, want, strict=True):
        if name == "distance" and abs(g - w) > 1:
            raise AssertionError(f"for {what}, distance is {g}, not {w}{_distance_hint(points, g)}")
        if name != "distance" and g != w:
            hint = " (count every point, to the end of the stream)" if name == "point_count" else ""
            raise AssertionError(f"for {what}, {name} is {g}, not {w}{hint}")


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


class _Chat:
    """One RouteChat call driven note by note: send notes, wait for a reply, end the stream."""

    def __init__(self, stub: Any, raised: _Raised) -> None:
        self.raised = raised
        self.outbox: queue.Queue[Any] = queue.Queue()
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.call = stub.RouteChat(iter(self.outbox.get, None), timeout=4 * WAIT_S)
        self.reader = threading.Thread(
            target=_read_all, args=(self.call, self.inbox), name="rpclab-check:chat"
        )
        self.reader.start()
        self.replies: list[Any] = []

    def send(self, *notes: Any) -> None:
        for note in notes:
            self.outbox.put(note)

    def wait_for_reply(self) -> None:
        """Wait for one reply while the client's stream is still open."""
        try:
            self.replies.append(self.inbox.get(timeout=WAIT_S))
        except queue.Empty:
            raise AssertionError(
                "no reply came while the client's stream was still open: send back the "
                "earlier notes as each note arrives, do not read all the notes first"
            ) from None

    def finish(self) -> list[Any]:
        """End the client's stream; return every reply of the call."""
        self.outbox.put(None)
        while self.replies[-1:] != [_END]:
            try:
                self.replies.append(self.inbox.get(timeout=WAIT_S))
            except queue.Empty:
                raise AssertionError(
                    f"the call did not end within {WAIT_S:g} s of the client's last note: "
                    "return (or stop yielding) when the notes run out"
                ) from None
        replies = self.replies[:-1]
        for reply in replies:
            if isinstance(reply, grpc.RpcError):
                raise _failed(reply, self.raised)
        return replies

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.reader.join(WAIT_S)


def check_route_chat(servicer_class: Any) -> str:
    """Check a RouteGuide subclass's RouteChat (bidirectional streaming).

    For each note, the server must send back the notes left EARLIER in the same call at the same
    place (latitude AND longitude), oldest first, as soon as the note arrives (while the client's
    stream is still open), and then remember it. A second call, made while the first is still
    open, must see none of the first call's notes, and must not disturb it.
    """
    servicer = _instance(servicer_class, route_guide.RouteGuide, "not an instance")
    raised = _Raised()
    servicer.RouteChat = raised.stream(servicer.RouteChat)
    here, there = pb2.Point(latitude=1, longitude=1), pb2.Point(latitude=2, longitude=2)
    beside, below = pb2.Point(latitude=1, longitude=2), pb2.Point(latitude=2, longitude=1)
    handle = _serve("route-chat", lambda s: pb2_grpc.add_RouteGuideServicer_to_server(servicer, s))
    chats: list[_Chat] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.RouteGuideStub(channel)
            first = _Chat(stub, raised)
            chats.append(first)
            first.send(_note(here, "a"), _note(here, "b"))
            first.wait_for_reply()
            second = _Chat(stub, raised)  # a second client, while the first is still open
            chats.append(second)
            second.send(_note(here, "x"), _note(there, "y"))
            if got := _said(second.finish()):
                raise AssertionError(_second_call_wrong(got))
            first.send(_note(beside, "c"), _note(below, "d"), _note(here, "e"))
            said, want = _said(first.finish()), ["a", "a", "b"]
            if said != want:
                raise AssertionError(_chat_wrong(said, want))
    finally:
        for chat in chats:
            chat.close()
        handle.stop()
    return "each note answered at once with the earlier notes at its place, per call"


def _second_call_wrong(got: list[str]) -> str:
    text = (
        "a second call, made while the first was open, sent x and y at two places and was "
        f"answered {got}, not []"
    )
    if "x" in got:
        return text + (
            ": a note was answered with itself; yield the EARLIER notes first, then remember "
            "the note"
        )
    return text + (
        ": those were the FIRST call's notes; keep each call's notes in a list made inside "
        "RouteChat, not on self"
    )


def _chat_wrong(said: list[str], want: list[str]) -> str:
    text = (
        "notes a, b at (1, 1); c at (1, 2); d at (2, 1); e at (1, 1) should be answered "
        f"{want} (after b: a; after c and d: nothing; after e: a, b); yours answered {said}"
    )
    if {"x", "y"} & set(said):
        return text + (
            ": x and y were ANOTHER call's notes, sent while this one was open; keep each "
            "call's notes in a list made inside RouteChat, not on self"
        )
    if "e" in said:
        return text + (
            ": a note was answered with itself; yield the EARLIER notes first, then remember "
            "the note"
        )
    if len(said) > len(want):
        return text + (
            ": c and d are at other places (the same latitude, or the same longitude, is not "
            "the same place); compare the whole location, old.location == note.location"
        )
    return text
