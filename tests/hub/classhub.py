"""The pieces of a class on a real JupyterHub, for the hub suite: OS accounts, the hub started by
deploy/jupyterhub/run, each user's REST session (hub token, own server) and kernels.

Every wait here is bounded, and every piece removes what it made (`close()`/`remove()`), so the
fixtures in conftest.py can tidy up whatever a failing test left half done.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import requests
import websocket

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "deploy" / "jupyterhub" / "run"

HTTP_TIMEOUT = 120.0  # seconds for one request: autograding a notebook is the slowest
SERVER_START_TIMEOUT = 120.0  # a user's server, from the spawn request to ready
HUB_START_TIMEOUT = 600.0  # `run` installs the shared environment first (uv: seconds; pip: minutes)
HUB_STOP_TIMEOUT = 30.0


# Lines for the end of the pytest run: how long each phase took, and the grades (conftest.py).
SUMMARY: list[str] = []


class HubError(AssertionError):
    """The hub or a user's server did not do what the suite asked; the message says what."""


# --------------------------------------------------------------------------- OS accounts


def processes_of(uids: Iterable[int]) -> list[int]:
    """The pids of every process running as one of `uids` (real uid), read from /proc."""
    wanted, found = set(uids), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # it ended while we looked
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if int(uid_line.split()[1]) in wanted:
            found.append(int(entry.name))
    return found


def memory_mib(uid: int) -> float:
    """The resident memory of every process running as `uid`, in MiB (VmRSS from /proc)."""
    total_kib = 0
    for pid in processes_of([uid]):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


class OsUsers:
    """OS accounts made for one run (useradd -m, a random password), removed by `remove()`."""

    def __init__(self, names: Iterable[str]):
        self.passwords: dict[str, str] = {}
        self.uids: dict[str, int] = {}
        for name in names:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", name],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.uids[name] = pwd.getpwnam(name).pw_uid
            password = secrets.token_urlsafe(12)
            subprocess.run(
                ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, timeout=30
            )
            self.passwords[name] = password

    def home(self, name: str) -> Path:
        return Path(pwd.getpwnam(name).pw_dir)

    def remove(self) -> list[str]:
        """End every process of these users, then delete the accounts and their homes; return
        what was still running (a leak to report)."""
        leftovers = []
        for pid in processes_of(self.uids.values()):
            leftovers.append(_describe(pid))
            _kill(pid)
        for folder in TEMPORARY_FOLDERS:  # what they left in /tmp (rpclab's protos cache, say)
            for entry in _owned_by(folder, self.uids.values()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        for name in list(self.uids):
            subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=30)
            del self.uids[name]
        return leftovers


TEMPORARY_FOLDERS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def _owned_by(folder: Path, uids: Iterable[int]) -> list[Path]:
    wanted, found = set(uids), []
    for entry in folder.iterdir() if folder.is_dir() else ():
        try:
            if entry.lstat().st_uid in wanted:
                found.append(entry)
        except OSError:
            continue
    return found


def _describe(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return str(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- the hub


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int) -> bool:
    """Nothing listens on it (a closed connection's TIME_WAIT does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ClassHub:
    """`deploy/jupyterhub/run --env FILE`, in its own session, until `stop()`."""

    READY = "JupyterHub is now running at"

    def __init__(self, env_file: Path, log_file: Path, path_prefix: str):
        self.log_file = log_file
        self.lines: list[str] = []
        self.running = False
        self._ready = threading.Event()
        env = {**os.environ, "PATH": f"{path_prefix}:{os.environ.get('PATH', '')}"}
        self.process = subprocess.Popen(
            [str(RUN), "--env", str(env_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="hub-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with open(self.log_file, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line.rstrip("\n"))
                if self.READY in line:
                    self.running = True
                    self._ready.set()
        self._ready.set()  # the output ended: wake the waiter, which sees the hub never ran

    def wait_ready(self, timeout: float = HUB_START_TIMEOUT) -> None:
        if not self._ready.wait(timeout):
            raise HubError(f"the hub did not start within {timeout:.0f}s:\n{self.tail()}")
        if not self.running:
            raise HubError(f"the hub ended before it ran:\n{self.tail()}")

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])

    def stop(self) -> int:
        """SIGTERM, as a teacher's Ctrl-C; SIGKILL to the whole session if it does not end."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(HUB_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(HUB_STOP_TIMEOUT)
        self._reader.join(HUB_STOP_TIMEOUT)
        return self.process.returncode


# --------------------------------------------------------------------------- a user's session


class HubUser:
    """One user of the hub: logs in through the hub's REST API, starts and calls their server."""

    def __init__(self, hub_url: str, name: str, password: str):
        self.hub_url, self.name, self.password = hub_url, name, password
        self.http = requests.Session()
        self.token = ""

    @property
    def server_url(self) -> str:
        return f"{self.hub_url}/user/{self.name}"

    def login(self) -> None:
        """Ask the hub for an API token with the account's password (PAM checks it)."""
        reply = requests.post(
            f"{self.hub_url}/hub/api/users/{self.name}/tokens",
            json={
                "auth": {"username": self.name, "password": self.password},
                "expires_in": 3600,
                "note": "RPC Lab hub suite",
            },
            timeout=HTTP_TIMEOUT,
        )
        if reply.status_code != 201:
            raise HubError(f"{self.name} could not log in: {reply.status_code} {reply.text}")
        self.token = reply.json()["token"]
        self.http.headers["Authorization"] = f"token {self.token}"

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(
            method, f"{self.hub_url}/hub/api{path}", timeout=HTTP_TIMEOUT, **kwargs
        )

    def spawn(self) -> None:
        """Ask the hub to start this user's server (what *Start My Server* does)."""
        reply = self.hub_api("POST", f"/users/{self.name}/server")
        if reply.status_code not in (201, 202, 400):  # 400: it is running already
            raise HubError(f"{self.name}'s server did not spawn: {reply.status_code} {reply.text}")

    def wait_for_server(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        """Wait for the hub's progress stream to say this user's server is ready."""
        deadline = time.monotonic() + timeout
        with self.http.get(
            f"{self.hub_url}/hub/api/users/{self.name}/server/progress",
            stream=True,
            timeout=timeout,
        ) as events:
            for line in events.iter_lines():
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        return
                    if event.get("failed"):
                        raise HubError(f"{self.name}'s server failed: {event.get('message')}")
                if time.monotonic() > deadline:
                    break
        raise HubError(f"{self.name}'s server was not ready within {timeout:.0f}s")

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request to this user's own Jupyter server, through the hub's proxy."""
        return self.http.request(method, f"{self.server_url}{path}", timeout=HTTP_TIMEOUT, **kwargs)

    def nbgrader(self, path: str, **data: str) -> dict:
        """POST to an nbgrader handler (what the JupyterLab buttons do); its reply must say
        success."""
        reply = self.request("POST", path, data=data)
        if reply.status_code != 200:
            raise HubError(f"{self.name} POST {path}: {reply.status_code} {reply.text[:2000]}")
        result = reply.json()
        if not result.get("success"):
            raise HubError(f"{self.name} POST {path} failed:\n{json.dumps(result)[:4000]}")
        return result

    def read_notebook(self, path: str) -> dict:
        reply = self.request("GET", f"/api/contents/{path}", params={"content": 1})
        reply.raise_for_status()
        return reply.json()["content"]

    def write_notebook(self, path: str, notebook: dict) -> None:
        reply = self.request(
            "PUT", f"/api/contents/{path}", json={"type": "notebook", "content": notebook}
        )
        reply.raise_for_status()

    def listing(self, path: str) -> list[str]:
        reply = self.request("GET", f"/api/contents/{path}", params={"content": 1})
        reply.raise_for_status()
        return sorted(entry["path"] for entry in reply.json()["content"])

    def read_text(self, path: str) -> str:
        reply = self.request(
            "GET", f"/api/contents/{path}", params={"content": 1, "format": "text", "type": "file"}
        )
        reply.raise_for_status()
        return reply.json()["content"]

    def kernel(self) -> Kernel:
        return Kernel(self)

    def close(self) -> None:
        self.http.close()


# --------------------------------------------------------------------------- kernels


class KernelError(AssertionError):
    """Code run in a user's kernel raised; the message carries the kernel's traceback."""


class Kernel:
    """A python3 kernel in a user's server, driven over the Jupyter messaging protocol on the
    server's websocket (what JupyterLab does when a learner runs a cell)."""

    def __init__(self, user: HubUser):
        self.user = user
        reply = user.request("POST", "/api/kernels", json={"name": "python3"})
        if reply.status_code != 201:
            raise HubError(f"{user.name} could not start a kernel: {reply.text}")
        self.id = reply.json()["id"]
        self.session = uuid.uuid4().hex
        url = user.server_url.replace("http", "ws", 1) + f"/api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(
            f"{url}?session_id={self.session}",
            header=[f"Authorization: token {user.token}"],
            timeout=HTTP_TIMEOUT,
        )

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Execute `code`; return what it printed. Raises KernelError if it raised."""
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": self.session,
                        "username": self.user.name,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out, error, deadline = [], None, time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelError(f"{self.user.name}'s kernel ran past {timeout:.0f}s: {code!r}")
            self.ws.settimeout(remaining)
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue  # the deadline check above ends it
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                error = "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error is not None:
            raise KernelError(f"{self.user.name}'s kernel raised:\n{error}")
        return "".join(out)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.user.request("DELETE", f"/api/kernels/{self.id}")
