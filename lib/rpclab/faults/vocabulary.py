"""The fault vocabulary: one ``Faults`` description and one seed rule for everything that breaks
calls on purpose.

Taught in notebook 05 (the fault proxy on the socket RPC); used in 01 (a slow, lossy network),
09 (a flaky gRPC server) and 15 (the capstone's failures); assignment A3. Three things take a
Faults:

* ``faults.serve_proxy(name, target, Faults(...))`` -- a TCP proxy between client and server
  (proxy.py);
* ``Flaky(Faults(...))`` -- a gRPC server interceptor (flaky.py);
* ``Shop.fail(service, Faults(...))`` -- one of the capstone's services (rpclab.capstone.shop);
  its ``Shop.reroute`` puts a proxy in front of one.

Each fault has a name a reader can say, as MIT 6.5840's labrpc names its switches
(``Reliable(false)``, ``LongDelays(true)``); here they are also seeded, so a run can be repeated:

============  ==========================================================  =====================
fault         what happens                                                acted on by
============  ==========================================================  =====================
delay         every message waits this many seconds                       proxy
jitter        ... and up to this many more, uniformly at random           proxy
drop          a message is lost (a probability)                           proxy, frames mode
duplicate     a message arrives twice (a probability)                     proxy, frames mode
reset         a message makes the proxy reset the connection (a prob.)    proxy
fail          an attempt is answered with an error status (a prob.)       Flaky, Shop.fail
fail_first    the first N attempts of every call fail (gRPC's retries)    Flaky
direction     which traffic suffers: "both", "request" or "reply"         proxy
seed          which random sequence                                       all
============  ==========================================================  =====================

A fault its receiver cannot act on is refused with an error that says who can, never ignored.

The seed rule, the same everywhere: every *stream* of decisions -- one direction of one
proxied connection, one method of a Flaky server -- draws from its own ``random.Random``
seeded from the seed and the stream's name (``stream(seed, 3, "reply")``), and every decision
draws the same count of numbers whatever the probabilities (``decide``: four; ``fails``: one).
So the same seed and the same traffic give the same fates, and changing one probability never
shifts the fates another one draws.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from rpclab import checks

__all__ = [
    "DIRECTIONS",
    "FATES",
    "MAX_DELAY",
    "NETWORK_FAULTS",
    "CALL_FAULTS",
    "Faults",
    "Decision",
    "decide",
    "fails",
    "stream",
]

DIRECTIONS = ("both", "request", "reply")  # what Faults.direction may say
FATES = ("forwarded", "duplicated", "dropped", "reset")  # what can become of a message
MAX_DELAY = 30.0  # seconds; a longer delay is a hang, not a fault
NETWORK_FAULTS = ("delay", "jitter", "drop", "duplicate", "reset", "direction")  # on the wire
CALL_FAULTS = ("fail", "fail_first")  # answered by a server with a status


@dataclass(frozen=True)
class Faults:
    """What to break, by name: see the module's table. ``Faults()`` breaks nothing."""

    delay: float = 0.0  # seconds added to every message
    jitter: float = 0.0  # up to this many seconds more, uniformly at random
    drop: float = 0.0  # probability that a message is lost
    duplicate: float = 0.0  # probability that a message is delivered twice
    reset: float = 0.0  # probability that a message makes the proxy reset the connection
    fail: float = 0.0  # probability that an attempt is answered with an error status
    fail_first: int = 0  # the first N attempts of every call fail
    seed: int = 0  # the same seed and the same traffic give the same fates
    direction: str = "both"  # which traffic suffers: "both", "request" (client->server), "reply"

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: validated values are stored as floats
        for name in ("delay", "jitter"):
            set_(self, name, checks.seconds(name, getattr(self, name), low=0, high=MAX_DELAY))
        for name in ("drop", "duplicate", "reset", "fail"):
            set_(self, name, checks.probability(name, getattr(self, name)))
        checks.integer("fail_first", self.fail_first, low=0)
        checks.integer("seed", self.seed)
        checks.one_of("direction", self.direction, DIRECTIONS)

    def replace(self, **changes: Any) -> Faults:
        """A copy with some fields changed (checked like the constructor)."""
        unknown = sorted(set(changes) - set(_FIELD_NAMES))
        if unknown:
            raise TypeError(
                f"unknown fault setting {', '.join(unknown)}; the settings are "
                f"{', '.join(_FIELD_NAMES)}"
            )
        return dataclasses.replace(self, **changes)

    def applies_to(self, direction: str) -> bool:
        """Whether these faults act on traffic going ``direction`` ("request" or "reply")."""
        return self.direction in ("both", direction)

    def named(self) -> list[str]:
        """The faults set here (seed aside), by name: ``Faults(drop=0.1).named() == ["drop"]``."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name != "seed" and getattr(self, f.name) != f.default
        ]

    def refuse_all_but(self, allowed: Iterable[str], receiver: str, instead: str) -> Faults:
        """These faults, if ``receiver`` can act on all of them; else ValueError saying which it
        cannot and what to use ``instead``."""
        others = [name for name in self.named() if name not in allowed]
        if others:
            raise ValueError(f"{receiver} cannot act on {', '.join(others)}: {instead}")
        return self

    def __str__(self) -> str:
        parts = []
        if self.delay or self.jitter:
            parts.append(
                f"delay {self.delay * 1000:g} ms"
                + (f" + up to {self.jitter * 1000:g} ms jitter" if self.jitter else "")
            )
        for name in ("drop", "duplicate", "reset", "fail"):
            if getattr(self, name):
                parts.append(f"{name} {getattr(self, name):.0%}")
        if self.fail_first:
            plural = "s" if self.fail_first != 1 else ""
            parts.append(f"fail the first {self.fail_first} attempt{plural}")
        if not parts:
            return "no faults"
        where = {"both": "both ways", "request": "requests only", "reply": "replies only"}
        on_the_wire = any(name in NETWORK_FAULTS for name in self.named())
        return (
            f"{', '.join(parts)} ({where[self.direction] + ', ' if on_the_wire else ''}"
            f"seed {self.seed})"
        )


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Faults))


def stream(seed: int, *name: object) -> random.Random:
    """The random sequence of one stream of decisions: ``stream(seed, connection, direction)``."""
    return random.Random("/".join(map(str, (seed, *name))))


class Decision(NamedTuple):
    """The fate of one message: what happens to it, how many copies go out, how long it waits."""

    fate: str  # "forwarded", "duplicated", "dropped" or "reset"
    copies: int  # 0, 1 or 2
    wait: float  # seconds before it is sent


def decide(faults: Faults, direction: str, rng: random.Random) -> Decision:
    """Decide the fate of one message going ``direction`` (the proxy's decision).

    Always draws exactly four numbers from ``rng`` (reset, drop, duplicate,
    jitter), so changing a probability never shifts the fates of later messages.
    """
    u_reset, u_drop, u_duplicate, u_jitter = rng.random(), rng.random(), rng.random(), rng.random()
    if not faults.applies_to(direction):
        return Decision("forwarded", 1, 0.0)
    if u_reset < faults.reset:
        return Decision("reset", 0, 0.0)
    wait = faults.delay + u_jitter * faults.jitter
    if u_drop < faults.drop:
        return Decision("dropped", 0, wait)
    if u_duplicate < faults.duplicate:
        return Decision("duplicated", 2, wait)
    return Decision("forwarded", 1, wait)


def fails(faults: Faults, attempt: int, rng: random.Random) -> bool:
    """Whether attempt number ``attempt`` (1 for a call's first) of a call fails (Flaky's decision).

    Always draws exactly one number from ``rng``.
    """
    u_fail = rng.random()
    return attempt <= faults.fail_first or u_fail < faults.fail
