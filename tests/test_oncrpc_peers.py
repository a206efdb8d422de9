"""The ONC RPC server against independent implementations: the C client rpcgen makes from
protos/kv.x (libtirpc), and rpcbind with its rpcinfo.

rpcbind must own port 111, so it runs in a network namespace of this module's own (named
h13o-oncrpc-<pid>, removed afterwards even when a test fails), on a private /run (its lock file
and Unix socket live there, and the machine may have an rpcbind of its own). It is started
with its listening sockets already made (systemd's socket activation, which Debian's rpcbind
understands), so "ready" means port 111 accepts. Every process that must see it runs through
``nsenter`` into its network and mount namespaces.

Without the tools (or without root, which namespaces need) these tests skip, saying what is
missing; with RPCLAB_REQUIRE_ONCRPC=1 (set by .ci/run) that is a failure instead.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rpclab.adapters import c_client
from rpclab.byhand import oncrpc
from rpclab.kv import KVStore

KV_PROG = 536871169  # 0x20000101: rpcinfo reads program numbers in decimal
REQUIRE = os.environ.get("RPCLAB_REQUIRE_ONCRPC") == "1"

C_CLIENT_LINES = [
    "KV_NULL -> (void)",
    'KV_PUT c:greeting "hello from C" -> KV_OK',
    'KV_GET c:greeting -> KV_OK "hello from C"',
    "KV_GET c:no-such-key -> KV_NOT_FOUND",
    "KV_INCREMENT c:visits 5 -> KV_OK 5",
    "KV_INCREMENT c:visits -2 -> KV_OK 3",
    "KV_INCREMENT c:greeting 1 -> KV_INVALID",
    "KV_KEYS -> 2 keys: c:greeting c:visits",
    "KV_DELETE c:greeting -> TRUE",
    "KV_DELETE c:greeting -> FALSE",
]

# Runs inside the namespace: make rpcbind's sockets (TCP and UDP, port 111), say so, become
# rpcbind. Debian's rpcbind takes sockets passed this way (sd_listen_fds) instead of making its
# own; it aborts unless it gets both a TCP and a UDP one.
RPCBIND_LAUNCHER = """
import os, socket
sockets = []
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 111))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    sockets.append(s)
for n, s in enumerate(sockets):
    if s.fileno() != 3 + n:
        os.dup2(s.fileno(), 3 + n)
    os.set_inheritable(3 + n, True)
os.environ["LISTEN_FDS"] = str(len(sockets))
os.environ["LISTEN_PID"] = str(os.getpid())
print("ready", os.getpid(), flush=True)
os.execvp("rpcbind", ["rpcbind", "-f"])
"""


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"RPCLAB_REQUIRE_ONCRPC=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _namespace_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [t for t in ("ip", "unshare", "nsenter", "rpcbind", "rpcinfo") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not installed (rpcbind and rpcinfo: apt-get install rpcbind)"
    return None


@pytest.fixture(scope="module")
def c_program():
    reason = c_client.missing_reason()
    if reason is not None:
        _unavailable(reason)
    return c_client.build()


class Namespace:
    """A network namespace of our own; with ``start_rpcbind()``, rpcbind on its port 111."""

    def __init__(self, name: str):
        self.name = name
        self.rpcbind: subprocess.Popen | None = None
        self.pid: str | None = None  # rpcbind's, once it runs: the target of nsenter
        self.processes: list[subprocess.Popen] = []
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
        try:
            subprocess.run(
                ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                check=True,
                timeout=30,
            )
        except BaseException:
            self.close()
            raise

    def start_rpcbind(self) -> None:
        self.rpcbind = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private"]
            + ["--", "sh", "-c", 'mount -t tmpfs rpclab-run /run && exec "$0" -c "$1"']
            + [sys.executable, RPCBIND_LAUNCHER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = _first_line(self.rpcbind, 30.0)
        match = re.fullmatch(r"ready (\d+)\n", line)
        if not match:
            raise RuntimeError(f"rpcbind did not start: {line!r} {self.rpcbind.stderr.read()}")
        self.pid = match.group(1)

    def command(self, *argv: str) -> list[str]:
        if self.pid is None:
            return ["ip", "netns", "exec", self.name, *argv]
        return ["nsenter", "-t", self.pid, "-n", "-m", *argv]

    def run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*argv), capture_output=True, text=True, timeout=timeout)

    def serve(self, *options: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            self.command(sys.executable, "-m", "rpclab.cli", "serve", "oncrpc", *options),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in [*self.processes, *([self.rpcbind] if self.rpcbind else [])]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate(timeout=10)
        left = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=30
        ).stdout.split()
        for pid in left:  # only processes started here can be in a namespace made here
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"nothing printed within {timeout:g} s; stderr: {err}")
    return proc.stdout.readline()


def _listening_port(proc: subprocess.Popen) -> int:
    line = _first_line(proc, 30.0)
    match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
    assert match, f"unexpected first line {line!r}"
    return int(match.group(1))


def _stop(proc: subprocess.Popen) -> tuple[str, float]:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    return err, time.monotonic() - start


@pytest.fixture(scope="module")
def rpcbind_ns():
    reason = _namespace_reason()
    if reason is not None:
        _unavailable(reason)
    namespace = Namespace(f"h13o-oncrpc-{os.getpid()}")
    try:
        namespace.start_rpcbind()
        yield namespace
    finally:
        namespace.close()


@pytest.fixture
def bare_ns():
    reason = _namespace_reason()
    if reason is not None:
        _unavailable(reason)
    namespace = Namespace(f"h13o-oncrpc-bare-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.close()


def _registered(namespace: Namespace) -> list[list[str]]:
    listing = namespace.run("rpcinfo", "-p", "127.0.0.1")
    assert listing.returncode == 0, listing.stderr
    return [
        line.split() for line in listing.stdout.splitlines() if line.split()[:1] == [str(KV_PROG)]
    ]


# --------------------------------------------------------------------------- rpcgen's C client


@pytest.mark.parametrize("auth", ["none", "sys"], ids=["AUTH_NONE", "AUTH_SYS"])
def test_the_c_client_rpcgen_makes_calls_every_procedure(c_program, auth):
    store = KVStore()
    server = oncrpc.serve(store, name="oncrpc-for-c")
    try:
        lines = c_client.run(server.address, auth=auth)
    finally:
        server.stop()
    assert lines == C_CLIENT_LINES
    assert store.keys() == ["c:visits"] and store.get("c:visits") == "3"


def test_a_failed_c_call_is_reported_with_libtirpcs_message(c_program):
    server = oncrpc.serve(KVStore(), name="oncrpc-for-c")
    port = server.port
    server.stop()  # nothing listens there now
    with pytest.raises(c_client.CClientError) as info:
        c_client.run(("127.0.0.1", port))
    assert info.value.returncode == 1
    assert "RPC" in str(info.value)


# --------------------------------------------------------------------------- rpcbind and rpcinfo


def test_rpcinfo_lists_and_pings_the_server_registered_by_rpclab_serve(rpcbind_ns, c_program):
    server = rpcbind_ns.serve("--register")
    port = _listening_port(server)  # printed only once registered
    try:
        assert _registered(rpcbind_ns) == [[str(KV_PROG), "1", "tcp", str(port)]]

        ping = rpcbind_ns.run("rpcinfo", "-t", "127.0.0.1", str(KV_PROG), "1")
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.strip() == f"program {KV_PROG} version 1 ready and waiting"

        every_version = rpcbind_ns.run("rpcinfo", "-T", "tcp", "127.0.0.1", str(KV_PROG))
        assert every_version.stdout.strip() == f"program {KV_PROG} version 1 ready and waiting"

        wrong = rpcbind_ns.run("rpcinfo", "-n", str(port), "-t", "127.0.0.1", str(KV_PROG), "2")
        assert wrong.returncode == 1
        assert f"program {KV_PROG} version 2 is not available" in wrong.stdout
        assert "Program/version mismatch; low version = 1, high version = 1" in wrong.stderr

        # Port 0: the C client asks rpcbind where KV_PROG is, as rpcgen's clients do.
        c_run = rpcbind_ns.run(str(c_program), "127.0.0.1", "0")
        assert c_run.returncode == 0, c_run.stderr
        assert c_run.stdout.splitlines() == C_CLIENT_LINES

        # The course's own portmapper client reads what rpcinfo reads.
        ours = rpcbind_ns.run(
            sys.executable,
            "-c",
            "from rpclab.byhand.oncrpc import portmap as p; "
            f"print(p.getport({KV_PROG}, 1)); "
            "print(sorted((m.prog, m.vers, m.protocol, m.port) for m in p.dump()))",
        )
        assert ours.returncode == 0, ours.stderr
        getport, dump = ours.stdout.splitlines()
        assert int(getport) == port
        assert f"({KV_PROG}, 1, 'tcp', {port})" in dump
        assert "(100000, 2, 'tcp', 111)" in dump
    finally:
        err, took = _stop(server)
    assert server.returncode == 0, err
    assert took < 10
    assert _registered(rpcbind_ns) == []  # unregistered on the way out


def test_register_replaces_a_stale_entry_but_not_a_live_servers(rpcbind_ns):
    stale = rpcbind_ns.run(
        sys.executable,
        "-c",
        f"from rpclab.byhand.oncrpc import portmap; print(portmap.set_mapping({KV_PROG}, 1, 9))",
    )
    assert stale.stdout.strip() == "True"  # as if a server on port 9 had died without unset
    first = rpcbind_ns.serve("--register")
    port = _listening_port(first)
    try:
        assert _registered(rpcbind_ns) == [[str(KV_PROG), "1", "tcp", str(port)]]
        second = rpcbind_ns.serve("--register")
        out, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert out == ""
        assert f"registered already, by a server that answers on port {port}" in err
        assert "Traceback" not in err
        assert _registered(rpcbind_ns) == [[str(KV_PROG), "1", "tcp", str(port)]]
    finally:
        err, _ = _stop(first)
    assert first.returncode == 0, err
    assert _registered(rpcbind_ns) == []


def test_register_without_a_portmapper_fails_with_one_clear_line(bare_ns):
    done = bare_ns.run(sys.executable, "-m", "rpclab.cli", "serve", "oncrpc", "--register")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no portmapper at 127.0.0.1:111 (is rpcbind running?)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
