"""The endpoint mapper walked by hand (rpclab.byhand.dcerpc) against a real one: Samba's
samba-dcerpcd, the open-source Microsoft RPC server, on 127.0.0.1:135.

Port 135 is privileged and may be taken on the machine, so samba-dcerpcd runs in a network
namespace of the tests' own, with an smb.conf that points every directory Samba writes to at a
temporary one, and the client runs in the same namespace (``ip netns exec``). Needs Linux, root,
ip (iproute2) and Samba; without them these tests skip, saying why, unless
RPCLAB_REQUIRE_DCERPC=1 (set by .ci/run), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LSA = "12345778-1234-abcd-ef00-0123456789ab"
WINREG = "338cd001-2244-31f1-aaaa-900038001003"
EPM = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"
SAMBA_DIRS = ("lock", "state", "cache", "private", "pid", "ncalrpc", "binddns", "log")


def _samba_dcerpcd() -> str | None:
    candidates = [
        shutil.which("samba-dcerpcd"),
        "/usr/libexec/samba/samba-dcerpcd",  # Debian, Ubuntu, Fedora
        "/usr/lib/samba/samba-dcerpcd",  # Arch
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if _samba_dcerpcd() is None:
        return "Samba's samba-dcerpcd is not installed (apt-get install samba)"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    if os.geteuid() != 0:
        return "a network namespace of the tests' own needs root"
    return None


def smb_conf(root: Path) -> str:
    """What samba-dcerpcd needs to run standalone: every directory in ``root``, port 135 on
    127.0.0.1 only, and no on-demand helpers (the smb.conf(5) option that lets it start on its
    own, see samba-dcerpcd(8))."""
    d = {name: root / name for name in SAMBA_DIRS}
    return textwrap.dedent(
        f"""\
        [global]
        rpc start on demand helpers = false
        interfaces = 127.0.0.1
        bind interfaces only = yes
        lock directory = {d["lock"]}
        state directory = {d["state"]}
        cache directory = {d["cache"]}
        private dir = {d["private"]}
        pid directory = {d["pid"]}
        ncalrpc dir = {d["ncalrpc"]}
        binddns dir = {d["binddns"]}
        log file = {d["log"]}/%m.log
        """
    )


def _in_netns(ns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead and waiting to be collected, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (not our child) ends, on its pidfd; return whether it did."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0]) or not _alive(pid)
    finally:
        os.close(fd)


def _end(ns: str, process: subprocess.Popen[bytes]) -> list[int]:
    """Stop samba-dcerpcd and the workers it started (SIGTERM to its process group, then SIGKILL
    to whatever outlives it); return the processes still alive in the namespace after that."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # its process group: samba-dcerpcd leads it
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def in_namespace() -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        return [int(pid) for pid in listed.stdout.split() if _alive(int(pid))]

    for pid in in_namespace():  # workers ending on the SIGTERM, or deaf to it
        if not _wait_exit(pid, 5):
            os.kill(pid, signal.SIGKILL)  # only ours can be in a namespace we made
            _wait_exit(pid, 5)
    return in_namespace()


@pytest.fixture(scope="module")
def samba(tmp_path_factory):
    """A network namespace where samba-dcerpcd serves its endpoint mapper on 127.0.0.1:135."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("RPCLAB_REQUIRE_DCERPC") == "1":
            pytest.fail(f"RPCLAB_REQUIRE_DCERPC=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    # Prefixed with the name of the helper that wrote these tests, so that parallel runs on a
    # shared machine never collide; the pid keeps two runs apart.
    ns = f"h13d-epm-{os.getpid()}"
    root = tmp_path_factory.mktemp("samba")
    for name in SAMBA_DIRS:
        (root / name).mkdir()
    (root / "smb.conf").write_text(smb_conf(root))
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    process = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=10)
        ready_r, ready_w = os.pipe()
        with open(root / "samba-dcerpcd.out", "wb") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", ns, _samba_dcerpcd(), "-s", str(root / "smb.conf"),
                 "--libexec-rpcds", "--foreground", "--debug-stdout", "-d", "1",
                 f"--ready-signal-fd={ready_w}"],
                pass_fds=(ready_w,), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        os.close(ready_w)
        try:
            # samba-dcerpcd closes the ready fd once it listens; EOF (or a byte) wakes us
            readable, _, _ = select.select([ready_r], [], [], 30)
        finally:
            os.close(ready_r)
        log = (root / "samba-dcerpcd.out").read_text(errors="replace")
        assert readable and process.poll() is None, f"samba-dcerpcd did not start:\n{log}"
        yield ns
    finally:
        left = _end(ns, process) if process is not None else []
        subprocess.run(["ip", "netns", "del", ns], timeout=10)
        assert not left, f"processes left in {ns} after samba-dcerpcd stopped: {left}"


def test_rpclab_epmap_lists_lsa_and_winreg_from_samba(samba):
    done = _in_netns(samba, sys.executable, "-m", "rpclab.cli", "epmap")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(f"{LSA} v0.0") for line in lines)
    assert any(line.startswith(f"{WINREG} v1.0") for line in lines)
    assert any(
        line.startswith(f"{EPM} v3.0") and "ncacn_ip_tcp:127.0.0.1[135]" in line for line in lines
    )
    protseqs = {line.split()[2].split(":")[0] for line in lines}
    assert {"ncacn_ip_tcp", "ncacn_np", "ncalrpc"} <= protseqs
    assert all(len(line.split()) >= 4 for line in lines)  # interface, version, binding, annotation


USE_THE_MAP = """
import json, uuid
from rpclab.byhand.dcerpc import epmap, pdu
from rpclab.byhand.dcerpc.client import Connection, DceRpcError, RemoteFault
out = {}
entries = epmap.lookup("127.0.0.1", 135)
out["count"] = len(entries)
for name, iface in [("lsa", "12345778-1234-abcd-ef00-0123456789ab"),
                    ("winreg", "338cd001-2244-31f1-aaaa-900038001003")]:
    entry = next(e for e in entries if e.tower and e.tower.protseq == "ncacn_ip_tcp"
                 and str(e.interface.uuid) == iface)
    with Connection.open("127.0.0.1", int(entry.tower.endpoint)) as conn:
        ack = conn.bind(entry.interface)
    out[name] = [entry.tower.endpoint, ack.results[0][0]]
with Connection.open("127.0.0.1", 135) as conn:
    try:
        conn.bind(pdu.SyntaxId(uuid.UUID(int=12345), 1, 0))
    except DceRpcError as exc:
        out["unknown_interface"] = str(exc)
with Connection.open("127.0.0.1", 135) as conn:
    conn.bind(pdu.EPM)
    try:
        conn.call(99, b"")
    except RemoteFault as exc:
        out["fault"] = exc.status
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def used(samba):
    done = _in_netns(samba, sys.executable, "-c", USE_THE_MAP)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_tcp_ports_the_map_gives_for_lsa_and_winreg_accept_a_bind_to_them(used):
    assert used["count"] >= 10
    for name in ("lsa", "winreg"):
        port, result = used[name]
        assert int(port) > 1024 and result == 0, (name, port, result)  # 0: acceptance


def test_samba_refuses_a_bind_to_an_interface_it_does_not_serve(used):
    assert "does not serve 00000000-0000-0000-0000-000000003039 v1.0" in used["unknown_interface"]


def test_samba_answers_an_unknown_operation_with_a_fault(used):
    assert used["fault"] == 0x1C010002  # nca_s_op_rng_error
