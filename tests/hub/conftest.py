"""The hub suite's class: three OS accounts and a real JupyterHub started by deploy/jupyterhub/run.

Needs root (the hub's PAM login and spawner do), Node.js (the hub's proxy), and a Python every
user can read to build the shared environment from (/usr/bin/python3, or RPCLAB_HUB_PYTHON).
Without them the suite skips, saying why; with RPCLAB_REQUIRE_HUB=1 (CI) it fails instead.

Everything is made for one run and removed after it, also when a test fails: the accounts
(named rlhubXXXX-..., a fresh XXXX per run, so two runs on one machine cannot clash) and their
homes, every process they ran, the hub, its proxy and ports, the shared environment and the
exchange (all in one temporary folder).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from classhub import (
    SUMMARY,
    ClassHub,
    HubError,
    HubUser,
    OsUsers,
    free_ports,
    port_is_free,
    processes_of,
)

REQUIRE_HUB = os.environ.get("RPCLAB_REQUIRE_HUB") == "1"
HUB_PYTHON = os.environ.get("RPCLAB_HUB_PYTHON", "/usr/bin/python3")


def _unavailable(reason: str) -> None:
    if REQUIRE_HUB:
        pytest.fail(f"RPCLAB_REQUIRE_HUB=1 but {reason}", pytrace=False)
    pytest.skip(f"hub tests skipped: {reason}")


def _check_prerequisites() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        _unavailable("they need root, to make OS accounts and to run the hub's spawner and PAM")
    for tool in ("useradd", "userdel", "chpasswd"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (Debian: the passwd package)")
    if shutil.which("node") is None:
        _unavailable("Node.js is not installed (apt-get install nodejs npm): the hub's proxy")
    proxy = Path(__file__).resolve().parents[2] / "deploy/jupyterhub/node_modules/.bin"
    if not (proxy / "configurable-http-proxy").exists() and shutil.which("npm") is None:
        _unavailable("configurable-http-proxy is not installed and npm is missing")
    if not os.access(HUB_PYTHON, os.X_OK):
        _unavailable(f"no Python at {HUB_PYTHON} to build the shared environment from")


@dataclass
class ClassOnHub:
    """What the tests use: the hub, its users' sessions and where the class's files live."""

    root: Path
    url: str
    hub: ClassHub
    accounts: OsUsers
    instructor: HubUser
    learners: list[HubUser]
    exchange: Path
    ports: list[int]
    sessions: list[HubUser] = field(default_factory=list)

    def home(self, user: HubUser) -> Path:
        return self.accounts.home(user.name)


def _tidy(cls: ClassOnHub | None, accounts: OsUsers | None, hub, root: Path) -> list[str]:
    """Stop and remove everything; return what was found left behind."""
    problems = []
    if cls is not None:
        for user in cls.sessions:
            user.close()
    if hub is not None:  # SIGTERM, as a teacher's Ctrl-C: the hub stops every server, the proxy
        hub.stop()
        pid_file = root / "state" / "proxy.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            if Path(f"/proc/{pid}").exists():
                problems.append(f"the proxy (pid {pid}) outlived the hub")
                os.kill(pid, 9)
    if accounts is not None:
        uids = list(accounts.uids.values())
        leftovers = accounts.remove()
        problems += [f"still running after the hub stopped: {p}" for p in leftovers]
        if processes_of(uids):
            problems.append(f"processes of the class's accounts survived: {processes_of(uids)}")
    shutil.rmtree(root, ignore_errors=True)
    return problems


@pytest.fixture(scope="session")
def class_hub() -> Iterator[ClassOnHub]:
    """A class on a real hub: an instructor and two learners, logged in, their servers running."""
    _check_prerequisites()
    tag = f"rlhub{secrets.token_hex(2)}"
    names = [f"{tag}-teacher", f"{tag}-ada", f"{tag}-grace"]
    root = Path(tempfile.mkdtemp(prefix="rpclab-hub-"))
    root.chmod(0o755)  # the shared environment and the exchange inside must be reachable by all
    accounts = hub = cls = None
    ports = free_ports(3)
    try:
        accounts = OsUsers(names)
        env_file = root / "hub.env"
        env_file.write_text(
            f"RPCLAB_HUB_INSTRUCTOR={names[0]}\n"
            f"RPCLAB_HUB_LEARNERS={names[1]} {names[2]}\n"
            f"RPCLAB_HUB_PREFIX={root / 'prefix'}\n"
            f"RPCLAB_HUB_STATE={root / 'state'}\n"
            f"RPCLAB_HUB_EXCHANGE={root / 'exchange'}\n"
            f"RPCLAB_HUB_PYTHON={HUB_PYTHON}\n"
            f"RPCLAB_HUB_PORT={ports[0]}\n"
            f"RPCLAB_HUB_API_PORT={ports[1]}\n"
            f"RPCLAB_HUB_PROXY_API_PORT={ports[2]}\n"
        )
        # uv (beside this Python, in .venv) installs the shared environment in seconds.
        started = time.monotonic()
        hub = ClassHub(env_file, root / "hub.log", path_prefix=str(Path(sys.executable).parent))
        hub.wait_ready()
        SUMMARY.append(f"{time.monotonic() - started:6.1f} s  `run`: install, set up, hub ready")
        url = f"http://127.0.0.1:{ports[0]}"
        users = [HubUser(url, name, accounts.passwords[name]) for name in names]
        cls = ClassOnHub(
            root=root,
            url=url,
            hub=hub,
            accounts=accounts,
            instructor=users[0],
            learners=users[1:],
            exchange=root / "exchange",
            ports=ports,
            sessions=users,
        )
        started = time.monotonic()
        for user in users:
            user.login()
            user.spawn()  # all three start at once, as a class logging in does
        for user in users:
            user.wait_for_server()
        SUMMARY.append(f"{time.monotonic() - started:6.1f} s  three users logged in, servers ready")
        yield cls
    except HubError as exc:
        if hub is not None and hub.tail() not in str(exc):
            raise HubError(f"{exc}\n--- the hub's log, last lines:\n{hub.tail()}") from None
        raise
    finally:
        started = time.monotonic()
        problems = _tidy(cls, accounts, hub, root)
        SUMMARY.append(f"{time.monotonic() - started:6.1f} s  everything stopped and removed")
        names_left = [n for n in names if _account_exists(n)]
        busy = [p for p in ports if not port_is_free(p)]
        assert not problems and not names_left and not busy and not root.exists(), (
            f"the class was not tidied away: {problems}; accounts left {names_left}; "
            f"ports still bound {busy}"
        )


def _account_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def pytest_terminal_summary(terminalreporter) -> None:
    """Print how long each phase took and the grades the class got."""
    if SUMMARY:
        terminalreporter.section("hub: a class on JupyterHub")
        for line in SUMMARY:
            terminalreporter.write_line(line)
