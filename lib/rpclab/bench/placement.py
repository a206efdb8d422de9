"""Where the client's and the server's threads run while they are measured: all on one CPU, the
client on one and the server on another, or wherever the operating system puts them.

Measured in notebook 13 and by ``rpclab bench``. A round trip between two threads costs very
different amounts of time (and of CPU) when they share a CPU and when they must wake each
other across CPUs, and an unpinned connection keeps whichever placement the scheduler gave it,
so its latency depends on luck. Pinning with ``os.sched_setaffinity`` makes the placement a
condition of the measurement, stated with its results::

    with placement.placed("two-cpus", server_pid=child.pid):
        ...                       # the calling thread on one CPU, the server's process on another

* ``"one-cpu"``: every thread of this process (and of the server's process) on the first CPU
  this process may use;
* ``"two-cpus"``: the calling thread (and the client's own threads) on the first CPU, the
  server on the second: with the server in another process, all of that process; with the
  server in this one, every other thread of this process (gRPC's C-core threads included,
  since they cannot be told apart from the server's);
* ``"free"``: nothing pinned.

Threads started while a placement holds inherit their creator's CPU (a server's connection
threads, started by its accepting thread, go with the server; the bench's caller threads,
started by the calling thread, with the client). On leaving the block every thread gets
back the CPUs it had (threads started meanwhile, their process's). Linux only: elsewhere only
``"free"`` is available, and :func:`unavailable` says why.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator

__all__ = ["PLACEMENTS", "DESCRIPTIONS", "usable_cpus", "unavailable", "placed", "cpus_of"]

PLACEMENTS = ("one-cpu", "two-cpus", "free")
DESCRIPTIONS = {
    "one-cpu": "client and server pinned to one CPU",
    "two-cpus": "client on one CPU, server on another",
    "free": "not pinned: wherever the scheduler puts them",
}


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order (empty where the OS cannot say)."""
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter is not None else []


def unavailable(placement: str) -> str | None:
    """Why ``placement`` cannot be used here, or None if it can."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    if placement == "free":
        return None
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return "this system cannot pin threads to CPUs (os.sched_setaffinity is Linux only)"
    if placement == "two-cpus" and len(usable_cpus()) < 2:
        return "this process may use only one CPU"
    return None


def _tasks(pid: int | str) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # the process has ended
        return []


def cpus_of(tid: int) -> set[int] | None:
    """The CPUs thread (or process) ``tid`` may run on; None if it has ended."""
    try:
        return set(os.sched_getaffinity(tid))
    except OSError:
        return None


def _pin(tids: Iterable[int], cpus: set[int]) -> None:
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # ended meanwhile
            pass


@contextlib.contextmanager
def placed(
    placement: str,
    *,
    server_pid: int | None = None,
    client_threads: Iterable[int] = (),
) -> Iterator[list[int]]:
    """Pin threads as ``placement`` says for the ``with`` block; yield the CPUs used (client's
    first).

    ``server_pid`` is the server's process when it is not this one; ``client_threads`` are
    native thread ids that work for the client besides the calling thread.
    """
    reason = unavailable(placement)
    if reason is not None:
        raise RuntimeError(f"cannot use the placement {placement!r}: {reason}")
    if placement == "free":
        yield []
        return
    cpus = usable_cpus()
    client_cpu = {cpus[0]}
    server_cpu = {cpus[1]} if placement == "two-cpus" else client_cpu
    me = threading.get_native_id()
    here = os.getpid()
    saved = {tid: cpus_of(tid) for tid in _tasks("self")}
    if server_pid is not None:
        saved.update({tid: cpus_of(tid) for tid in _tasks(server_pid)})
    default_here = cpus_of(here) or set(cpus)
    default_there = (cpus_of(server_pid) if server_pid is not None else None) or set(cpus)
    try:
        if server_pid is None:
            _pin(_tasks("self"), server_cpu)
        else:
            _pin(_tasks("self"), client_cpu)
            _pin(_tasks(server_pid), server_cpu)
        _pin([me, *client_threads], client_cpu)
        yield sorted(client_cpu) + sorted(server_cpu - client_cpu)
    finally:
        for pid, default in ((here, default_here), (server_pid, default_there)):
            if pid is None:
                continue
            for tid in _tasks(pid):
                original = saved.get(tid)
                _pin([tid], original if original else default)
