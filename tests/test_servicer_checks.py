"""rpclab.grpcstack.servicer_checks: the checks of notebooks 07 and 08's servicer exercises pass
the reference, say "not done" for a blank, and name what is wrong in typical wrong answers."""

from __future__ import annotations

from collections import defaultdict

import grpc
import pytest

from rpclab import exercises
from rpclab.exercises import NotDone
from rpclab.grpcstack import greeter, route_guide, servicer_checks
from rpclab.runtime import background

hello_pb2, hello_pb2_grpc = greeter.helloworld_pb2, greeter.helloworld_pb2_grpc
pb2 = route_guide.route_guide_pb2


def verdict(name, check, servicer_class):
    found = exercises.check(name, lambda: check(servicer_class), show=False)
    assert not background.running(), "a check left its server running"
    return found


# --------------------------------------------------------------------------- polite greeter


class PoliteGreeter(hello_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        if not request.name.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty")
        return hello_pb2.HelloReply(message=f"Hello, {request.name}!")


class BlankGreeter(hello_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        raise NotDone("greet, or refuse an empty name")


class RaisingGreeter(hello_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        if not request.name:
            raise ValueError("empty name")
        return hello_pb2.HelloReply(message=f"Hello, {request.name}!")


class NotFoundGreeter(hello_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        if not request.name.strip():
            context.abort(grpc.StatusCode.NOT_FOUND, "no name")
        return hello_pb2.HelloReply(message=f"Hello, {request.name}!")


class BlankNameGreeter(hello_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):  # refuses "", but greets "   "
        if not request.name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty")
        return hello_pb2.HelloReply(message=f"Hello, {request.name}!")


@pytest.mark.parametrize(
    "servicer, status, words",
    [
        (PoliteGreeter, "right", "INVALID_ARGUMENT"),
        (BlankGreeter, "not done", "greet, or refuse an empty name"),
        (RaisingGreeter, "wrong", "raising an exception gives UNKNOWN"),
        (NotFoundGreeter, "wrong", "got NOT_FOUND"),
        (BlankNameGreeter, "wrong", "name='   ' was answered 'Hello,    !'"),
    ],
)
def test_polite_greeter_check(servicer, status, words):
    found = verdict("polite-greeter", servicer_checks.check_polite_greeter, servicer)
    assert (found.status, words in found.message) == (status, True), found


def test_a_check_given_an_instance_asks_for_the_class():
    found = verdict("polite-greeter", servicer_checks.check_polite_greeter, PoliteGreeter())
    assert found.status == "wrong" and "pass your class itself" in found.message


# --------------------------------------------------------------------------- RecordRoute


class Reference(route_guide.RouteGuide):
    pass


class BlankRoute(route_guide.RouteGuide):
    def RecordRoute(self, request_iterator, context):
        raise NotDone("read every point")


class DistanceFromStart(route_guide.RouteGuide):
    def RecordRoute(self, request_iterator, context):
        points = list(request_iterator)
        metres = sum(route_guide.distance_m(points[0], p) for p in points[1:])
        features = sum(self.feature_at(p) is not None for p in points)
        return pb2.RouteSummary(
            point_count=len(points), feature_count=features, distance=int(metres)
        )


class EveryPointAFeature(route_guide.RouteGuide):
    def RecordRoute(self, request_iterator, context):
        points = list(request_iterator)
        metres = sum(route_guide.distance_m(a, b) for a, b in zip(points, points[1:], strict=False))
        return pb2.RouteSummary(
            point_count=len(points), feature_count=len(points), distance=int(metres)
        )


class FloatDistance(route_guide.RouteGuide):
    def RecordRoute(self, request_iterator, context):
        points = list(request_iterator)
        metres = sum(route_guide.distance_m(a, b) for a, b in zip(points, points[1:], strict=False))
        features = sum(self.feature_at(p) is not None for p in points)
        return pb2.RouteSummary(point_count=len(points), feature_count=features, distance=metres)


@pytest.mark.parametrize(
    "servicer, status, words",
    [
        (Reference, "right", "3 routes"),
        (BlankRoute, "not done", "read every point"),
        (DistanceFromStart, "wrong", "to the NEXT one"),
        (EveryPointAFeature, "wrong", "feature_count is 5, not 3"),
        (FloatDistance, "wrong", "raised TypeError"),
    ],
)
def test_record_route_check(servicer, status, words):
    found = verdict("record-route", servicer_checks.check_record_route, servicer)
    assert (found.status, words in found.message) == (status, True), found


# --------------------------------------------------------------------------- RouteChat


class BlankChat(route_guide.RouteGuide):
    def RouteChat(self, request_iterator, context):
        raise NotDone("answer each note")


class ReadsEverythingFirst(route_guide.RouteGuide):
    def RouteChat(self, request_iterator, context):
        notes = list(request_iterator)
        for i, note in enumerate(notes):
            yield from (n for n in notes[:i] if n.location == note.location)


class EchoesItself(route_guide.RouteGuide):
    def RouteChat(self, request_iterator, context):
        earlier = []
        for note in request_iterator:
            earlier.append(note)
            yield from (n for n in earlier if n.location == note.location)


class RemembersAcrossCalls(route_guide.RouteGuide):
    def __init__(self):
        super().__init__()
        self.notes = defaultdict(list)

    def RouteChat(self, request_iterator, context):
        for note in request_iterator:
            here = self.notes[(note.location.latitude, note.location.longitude)]
            yield from list(here)
            here.append(note)


@pytest.mark.parametrize(
    "servicer, status, words",
    [
        (Reference, "right", "per call"),
        (BlankChat, "not done", "answer each note"),
        (ReadsEverythingFirst, "wrong", "do not read all the notes first"),
        (EchoesItself, "wrong", "yours answered ['a', 'a', 'b', 'c', 'a', 'b', 'd']"),
        (RemembersAcrossCalls, "wrong", "remember notes per call"),
    ],
)
def test_route_chat_check(servicer, status, words):
    found = verdict("route-chat", servicer_checks.check_route_chat, servicer)
    assert (found.status, words in found.message) == (status, True), found
