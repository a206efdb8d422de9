"""The RouteGuide's map: three dozen invented places with coordinates in E7 units.

Used by route_guide.py in notebook 08.

E7 means degrees multiplied by 10^7 and rounded to an integer, as in
route_guide.proto's ``Point``: 47.5716506 degrees north is 475716506. The
places are made up; they lie in a box about 55 km by 45 km (latitude 47.3 to
47.8 N, longitude 122.5 to 121.9 W).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Place", "PLACES"]


class Place(NamedTuple):
    """A named point: latitude and longitude in E7 units."""

    name: str
    latitude: int
    longitude: int


PLACES: tuple[Place, ...] = (
    Place("Alder Creek Footbridge", 475716506, -1223734586),
    Place("Bramble Hill Lookout", 476312019, -1219539566),
    Place("Cedar Hollow Trailhead", 473405055, -1224392361),
    Place("Driftwood Cove", 477495304, -1224210380),
    Place("Elkhorn Pass", 476067620, -1220111220),
    Place("Foxglove Meadow", 473486530, -1220743321),
    Place("Granite Falls Overlook", 474801018, -1224685464),
    Place("Heron Marsh Boardwalk", 473720977, -1221362317),
    Place("Ironwood Ferry Landing", 476507882, -1224414011),
    Place("Juniper Ridge Fire Tower", 475018827, -1224239045),
    Place("Kestrel Point Lighthouse", 477622519, -1221438875),
    Place("Larkspur Orchard", 473495854, -1220256631),
    Place("Millrace Covered Bridge", 474038526, -1223127336),
    Place("Nettle Bay Campground", 477890532, -1224481064),
    Place("Old Quarry Pond", 477841090, -1220088123),
    Place("Pinecrest Observatory", 476327597, -1224584015),
    Place("Quillback Reef", 474854568, -1224609237),
    Place("Rookery Island", 477669643, -1223882849),
    Place("Saltgrass Flats", 475429418, -1221484007),
    Place("Tamarack Junction", 474210099, -1220464399),
    Place("Upper Willow Lock", 473988112, -1220210829),
    Place("Vesper Lake Dock", 475587733, -1220300222),
    Place("Windmill Hill", 474516042, -1224135507),
    Place("Yarrow Springs", 477878815, -1220208391),
    Place("Zephyr Bluff", 474575976, -1221876103),
    Place("Beacon Hill Reservoir", 473817306, -1220405187),
    Place("Copper Kettle Inn", 473526712, -1220265736),
    Place("Dunmore Crossing", 473499970, -1219807372),
    Place("Eastgate Market", 474727706, -1220835774),
    Place("Fernwood Chapel", 477460392, -1221413096),
    Place("Gullwing Pier", 475635257, -1221094249),
    Place("Hawthorn Station", 477912048, -1221198414),
    Place("Inkwell Library", 476033172, -1222485373),
    Place("Kingfisher Weir", 475083953, -1223492008),
    Place("Lantern Square", 475047629, -1224313351),
    Place("Mossbank Mill", 477818615, -1222481328),
)
