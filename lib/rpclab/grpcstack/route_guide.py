"""The RouteGuide of gRPC's route-guide examples (protos/route_guide.proto): one RPC of each
kind.

Taught in notebook 08 (streaming): the learner writes RecordRoute and RouteChat there, checked
against these by rpclab.grpcstack.servicer_checks.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

import grpc

from rpclab.grpcstack import protos
from rpclab.grpcstack.route_guide_db import PLACES, Place

__all__ = [
    "RouteGuide",
    "add_route_guide",
    "features",
    "distance_m",
    "SERVICE_NAME",
    "route_guide_pb2",
    "route_guide_pb2_grpc",
]

route_guide_pb2, route_guide_pb2_grpc = protos.load("route_guide")

SERVICE_NAME: str = route_guide_pb2.DESCRIPTOR.services_by_name[
    "RouteGuide"
].full_name  # "routeguide.RouteGuide"

E7 = 1e7  # Point holds degrees times 10^7
EARTH_RADIUS_M = 6371000.0  # the mean radius, as gRPC's examples use
MAX_NOTES_PER_CHAT = 10_000  # RouteChat remembers at most this many notes per call


def features(places: Iterable[Place] = PLACES) -> list[route_guide_pb2.Feature]:
    """The map as Feature messages (by default the invented places of route_guide_db)."""
    return [
        route_guide_pb2.Feature(
            name=p.name, location=route_guide_pb2.Point(latitude=p.latitude, longitude=p.longitude)
        )
        for p in places
    ]


def distance_m(start: route_guide_pb2.Point, end: route_guide_pb2.Point) -> float:
    """Great-circle distance in metres between two E7 points (the haversine formula)."""
    lat1, lat2 = math.radians(start.latitude / E7), math.radians(end.latitude / E7)
    dlat = lat2 - lat1
    dlon = math.radians((end.longitude - start.longitude) / E7)
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return EARTH_RADIUS_M * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a))


def _key(point: route_guide_pb2.Point) -> tuple[int, int]:
    return point.latitude, point.longitude


class RouteGuide(route_guide_pb2_grpc.RouteGuideServicer):
    """Looks places up on a fixed map and summarises routes travelled through it."""

    def __init__(self, feature_list: Iterable[route_guide_pb2.Feature] | None = None) -> None:
        self.features = list(features() if feature_list is None else feature_list)
        self._by_point = {_key(f.location): f for f in self.features}

    def feature_at(self, point: route_guide_pb2.Point) -> route_guide_pb2.Feature | None:
        """The feature on the map at exactly this point, or None."""
        return self._by_point.get(_key(point))

    def GetFeature(
        self, request: route_guide_pb2.Point, context: grpc.ServicerContext
    ) -> route_guide_pb2.Feature:
        """Unary: the feature at a point, or an unnamed one (name "") if the map has none there."""
        found = self.feature_at(request)
        return found if found is not None else route_guide_pb2.Feature(name="", location=request)

    def ListFeatures(
        self, request: route_guide_pb2.Rectangle, context: grpc.ServicerContext
    ) -> Iterator[route_guide_pb2.Feature]:
        """Server streaming: every feature inside the rectangle (edges included), corners in any
        order."""
        south, north = sorted((request.lo.latitude, request.hi.latitude))
        west, east = sorted((request.lo.longitude, request.hi.longitude))
        for feature in self.features:
            if not context.is_active():
                return
            if (
                south <= feature.location.latitude <= north
                and west <= feature.location.longitude <= east
            ):
                yield feature

    def RecordRoute(
        self, request_iterator: Iterator[route_guide_pb2.Point], context: grpc.ServicerContext
    ) -> route_guide_pb2.RouteSummary:
        """Client streaming: count the points and features of a route and measure its length."""
        started = time.monotonic()
        point_count = feature_count = 0
        distance = 0.0
        previous = None
        for point in request_iterator:
            point_count += 1
            if self.feature_at(point) is not None:
                feature_count += 1
            if previous is not None:
                distance += distance_m(previous, point)
            previous = point
        return route_guide_pb2.RouteSummary(
            point_count=point_count,
            feature_count=feature_count,
            distance=int(distance),
            elapsed_time=int(time.monotonic() - started),
        )

    def RouteChat(
        self, request_iterator: Iterator[route_guide_pb2.RouteNote], context: grpc.ServicerContext
    ) -> Iterator[route_guide_pb2.RouteNote]:
        """Bidirectional streaming: answer each note with the earlier notes of this call at the
        same place.

        The notes are remembered per call (as in gRPC's Python example), up to
        MAX_NOTES_PER_CHAT; later ones are answered but not remembered.
        """
        earlier: dict[tuple[int, int], list[route_guide_pb2.RouteNote]] = defaultdict(list)
        remembered = 0
        for note in request_iterator:
            here = earlier[_key(note.location)]
            yield from here
            if remembered < MAX_NOTES_PER_CHAT:
                here.append(note)
                remembered += 1


def add_route_guide(
    server: grpc.Server, feature_list: Iterable[route_guide_pb2.Feature] | None = None
) -> RouteGuide:
    """Add a RouteGuide to ``server``; return it. Use as ``background.serve_grpc("routes",
    add_route_guide)``."""
    guide = RouteGuide(feature_list)
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(guide, server)
    return guide
