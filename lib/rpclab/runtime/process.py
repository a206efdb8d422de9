"""What this process is running right now: its threads and its listening TCP ports.

Shown in notebooks 00 and 11; tools/rerun.py checks every notebook with it.

Used by notebook 00 to show what a background server leaves behind, and by the
tests that check a notebook re-run leaves nothing behind.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["thread_names", "listening_ports", "open_fd_count"]

_LISTEN = "0A"  # TCP state code for LISTEN in /proc/net/tcp


def thread_names() -> list[str]:
    """Names of this process's live Python threads, sorted.

    Leaves out threading's "Dummy-N" entries: threads started outside Python
    (gRPC's C core runs call credentials on its own threads) that merely
    called into it. Python keeps such an entry for as long as it lives.
    """
    dummy = getattr(threading, "_DummyThread", ())
    return sorted(t.name for t in threading.enumerate() if not isinstance(t, dummy))


def open_fd_count() -> int | None:
    """How many file descriptors this process has open (None where /proc is missing)."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None
    return len(os.listdir(fd_dir))


def listening_ports() -> list[tuple[str, int]] | None:
    """(host, port) of every TCP socket this process listens on; None where /proc is missing."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None
    inodes = set()
    for entry in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / entry)
        except OSError:
            continue  # closed between listdir and readlink
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, v6 in (("/proc/self/net/tcp", False), ("/proc/self/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN or fields[9] not in inodes:
                continue
            host_hex, port_hex = fields[1].split(":")
            found.append((_decode_host(host_hex, v6), int(port_hex, 16)))
    return sorted(found)


def _decode_host(hex_addr: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_addr)
    if not v6:
        return ".".join(str(b) for b in reversed(raw))
    import ipaddress

    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))
