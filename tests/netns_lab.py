"""A classroom on one machine: network namespaces on one bridge, a teacher's and learners'.

Each namespace has its own network stack: its own interfaces, addresses and ports, and only
the bridge joins them, as a lab room's switch joins its machines. A server bound to the
teacher's address is reached from a learner's namespace over a real (virtual) Ethernet link,
from a real other address: per-address limits, TLS names and timeouts behave as they would
across machines. Nothing is added to the host's own network: the bridge has no address, and
every address lives inside a namespace.

    with NetworkLab("h12g", ["teacher", "honest", "hostile"]) as lab:
        lab.address("teacher")                        # "10.213.0.1"
        proc = lab.popen("teacher", [sys.executable, "-m", "rpclab.cli", "serve", "grpc", ...])
        lab.run("honest", [sys.executable, "learner.py", ...], timeout=30)

Needs root and iproute2 (``ip``). :func:`require_netns` skips a test that cannot have them,
saying why, or fails it when RPCLAB_REQUIRE_NETNS=1 (as .ci/run sets). Every name starts
with the prefix and this process's id, so that two runs never share a name; ``close()`` (the
``with`` block's end, also when a test fails) deletes the namespaces, their links and the
bridge, and leftovers of runs whose process has died are deleted on the next start.

Used by tests/test_class_lab_netns.py; a test of another stack imports it the same way.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import string
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

IP_TIMEOUT = 10.0  # seconds one `ip` command may take
_LETTERS = itertools.cycle(string.ascii_lowercase)
SUBNET = "10.213.0"  # a /24 inside each lab; it exists only in the lab's namespaces


class NetnsUnavailable(RuntimeError):
    """This machine cannot make network namespaces here; the message says why."""


def netns_missing_reason() -> str | None:
    """Why namespaces cannot be made here, or None if they can (as far as can be told)."""
    if not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root (run as root, as CI does)"
    return None


def require_netns() -> None:
    """Skip the calling test with the reason namespaces are unavailable, or fail it under
    RPCLAB_REQUIRE_NETNS=1."""
    reason = netns_missing_reason()
    if reason is None:
        return
    if os.environ.get("RPCLAB_REQUIRE_NETNS") == "1":
        pytest.fail(f"RPCLAB_REQUIRE_NETNS=1 but {reason}")
    pytest.skip(reason)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


class NetworkLab:
    """Namespaces ``roles`` (the first one gets .1, the next .2, ...) on one bridge."""

    def __init__(self, prefix: str, roles: Sequence[str]) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,5}", prefix):
            raise ValueError("prefix: 1 to 6 lowercase letters and digits, a letter first")
        if not 1 <= len(roles) <= 9:
            raise ValueError("a lab has 1 to 9 roles")
        self.prefix = prefix
        # "h12g-4242a": this process's id and a letter per lab, at most 12 characters
        self.tag = f"{prefix}-{os.getpid() % 100000}{next(_LETTERS)}"
        self.roles = list(roles)
        self.bridge = f"{self.tag}-br"
        self._made: list[tuple[str, str]] = []  # what to delete, most recent last

    # -- names --------------------------------------------------------------------

    def namespace(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def address(self, role: str) -> str:
        return f"{SUBNET}.{self.roles.index(role) + 1}"

    def _veth(self, role: str) -> str:
        return f"{self.tag}-v{self.roles.index(role)}"  # the bridge's end; at most 15 characters

    # -- building and tearing down -------------------------------------------------

    def __enter__(self) -> NetworkLab:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        reason = netns_missing_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        remove_leftovers(self.prefix)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            # bridged frames must not pass through the host's firewall (br_netfilter)
            _ip("link", "set", self.bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
            _ip("link", "set", self.bridge, "up")
            for role in self.roles:
                ns, veth = self.namespace(role), self._veth(role)
                _ip("netns", "add", ns)
                self._made.append(("netns", ns))
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self._made.append(("link", veth))
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.address(role)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Delete everything made, namespaces first (which deletes their veth pairs)."""
        for kind, name in reversed(self._made):
            if kind == "netns":
                _ip("netns", "delete", name, check=False)
        for kind, name in reversed(self._made):
            if kind == "link":
                _ip("link", "delete", name, check=False)
        self._made.clear()

    # -- running programs inside -------------------------------------------------

    def command(self, role: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(role), *argv]

    def popen(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(self.command(role, argv), **kwargs)

    def run(
        self, role: str, argv: Sequence[str], timeout: float, **kwargs: Any
    ) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(role, argv), timeout=timeout, check=False, **kwargs)


def remove_leftovers(prefix: str) -> list[str]:
    """Delete namespaces and links named ``<prefix>-<pid><letter>-...`` whose process is gone (a run
    that was killed before it could clean up); return their names."""
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)[a-z]-\S+")
    removed = []
    namespaces = _ip("netns", "list", check=False).stdout.split()
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in _ip("-o", "link", "show", check=False).stdout.splitlines()
        if line.count(":") >= 2
    ]
    for kind, names in (("netns", namespaces), ("link", links)):
        for name in names:
            match = pattern.fullmatch(name)
            if match is None or _alive(int(match[1])):
                continue
            if kind == "netns":
                _ip("netns", "delete", name, check=False)
            else:
                _ip("link", "delete", name, check=False)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process whose id ends in ``pid`` (the names keep 5 digits) may still run."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) % 100000 == pid:
            return True
    return False
