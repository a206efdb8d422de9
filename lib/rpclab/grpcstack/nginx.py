"""A real nginx in front of gRPC servers: ``grpc_pass`` spreads the calls (L7), the ``stream``
module's ``proxy_pass`` spreads connections (L4).

Notebook 09 builds both kinds of balancer small (rpclab.grpcstack.callproxy, .balancer); this
module runs the machine's own nginx as the same two things, from a configuration written
into a temporary directory (:func:`configuration` returns the text, to read)::

    from rpclab.grpcstack import nginx
    l7 = nginx.serve_nginx("nginx-l7", "grpc", [a.address, b.address, c.address])
    channel = grpc.insecure_channel(f"127.0.0.1:{l7.port}")
    print(l7.config)          # the nginx.conf it runs
    l7.stop()                 # nginx and its workers gone, the directory removed

nginx runs in the foreground (``-g 'daemon off;'``) as a child process of this one, in a
process group of its own, with its pid file, logs and temporary files in that directory; as
the current user. It is kept by rpclab.runtime.background like every server: starting a name
that runs replaces it, and ``background.stop_all()`` stops it. ``rpclab nginx grpc|stream
--backend H:P ...`` runs the same until SIGTERM (:func:`main`). Where nginx or its stream
module is missing, :class:`NginxMissing` says how to install it.

About 600 lines: finding the machine's nginx and its stream module, writing the
configuration and running nginx so that a stop leaves no worker behind are one job; most lines
are the last part (a port nginx could not bind, workers left by a killed master).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rpclab import checks
from rpclab.runtime import background

__all__ = [
    "MODES",
    "NginxError",
    "NginxMissing",
    "NginxBuild",
    "NginxServer",
    "INSTALL_HINT",
    "find_nginx",
    "missing_reason",
    "parse_backend",
    "configuration",
    "serve_nginx",
    "main",
]

MODES = ("grpc", "stream")
START_TIMEOUT = 10.0  # seconds nginx has to accept on its port
PORT_ATTEMPTS = 5  # free ports tried when another program takes the one we picked
INSTALL_HINT = (
    "install it with one of: apt-get install nginx libnginx-mod-stream (Debian, Ubuntu); "
    "conda install -c conda-forge nginx; brew install nginx (macOS)"
)


class NginxError(RuntimeError):
    """nginx could not be started, or stopped."""


class NginxMissing(NginxError):
    """nginx is not installed here, or lacks a module this needs; the message says how to fix it."""


class NginxBuild(NamedTuple):
    """What ``nginx -V`` says about the nginx found."""

    path: str
    version: tuple[int, int, int]
    stream: str  # "static" (built in), "dynamic" (a module to load) or "" (absent)
    stream_module: str | None  # the absolute path of ngx_stream_module.so, when dynamic
    http_v2: bool
    grpc: bool


# --------------------------------------------------------------------------- finding nginx


def find_nginx() -> NginxBuild:
    """The nginx to run and how it was built: ``$RPCLAB_NGINX`` if set, else the one on PATH, else
    /usr/sbin/nginx (where Debian puts it, off a normal user's PATH)."""
    chosen = os.environ.get("RPCLAB_NGINX")
    if chosen is not None:
        path = chosen if os.access(chosen, os.X_OK) and os.path.isfile(chosen) else None
        where = f"RPCLAB_NGINX={chosen!r} is not an executable file"
    else:
        path = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
            None,
        )
        where = "nginx is not installed (not on PATH, nor in /usr/sbin)"
    if path is None:
        raise NginxMissing(f"{where}: {INSTALL_HINT}")
    try:
        done = subprocess.run(
            [path, "-V"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NginxMissing(f"{path} -V did not run ({exc}): {INSTALL_HINT}") from None
    info = done.stderr + done.stdout  # nginx prints its version and configure arguments on stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", info)
    if done.returncode != 0 or not found:
        raise NginxMissing(f"{path} -V does not say which nginx it is: {INSTALL_HINT}")
    version = (int(found[1]), int(found[2]), int(found[3]))
    stream_flag = re.search(r"--with-stream(=dynamic)?(?=\s|$)", info)
    stream = "" if not stream_flag else ("dynamic" if stream_flag[1] else "static")
    module = _stream_module(path, info) if stream == "dynamic" else None
    http_v2 = "--with-http_v2_module" in info
    grpc = http_v2 and "--without-http_grpc_module" not in info
    return NginxBuild(path, version, stream, module, http_v2, grpc)


def _stream_module(path: str, info: str) -> str | None:
    """Where the dynamic stream module is: nginx's modules path, which may be relative to its
    prefix or to its installation (conda-forge), or Debian's /usr/lib/nginx/modules."""
    modules = re.search(r"--modules-path=(\S+)", info)
    prefix = re.search(r"--prefix=(\S+)", info)
    relative = modules[1] if modules else "modules"
    installed = Path(os.path.realpath(path)).parent.parent  # .../sbin/nginx -> ...
    candidates = [
        Path(relative),
        Path(prefix[1]) / relative if prefix else None,
        installed / relative,
        Path("/usr/lib/nginx/modules"),
        Path("/usr/lib64/nginx/modules"),
    ]
    for directory in candidates:
        if directory is not None and directory.is_absolute():
            so = directory / "ngx_stream_module.so"
            if so.is_file():
                return str(so)
    return None


def missing_reason(mode: str = "grpc") -> str | None:
    """Why nginx cannot run in ``mode`` here (with how to install it), or None if it can."""
    try:
        _check_build(find_nginx(), mode)
    except NginxMissing as exc:
        return str(exc)
    return None


def _check_build(build: NginxBuild, mode: str) -> None:
    if mode == "grpc" and not build.grpc:
        raise NginxMissing(
            f"{build.path} was built without HTTP/2 or gRPC support (needs --with-http_v2_module): "
            f"{INSTALL_HINT}"
        )
    if mode == "stream" and (
        not build.stream or (build.stream == "dynamic" and not build.stream_module)
    ):
        raise NginxMissing(
            f"{build.path} has no stream module (Debian ships it apart: apt-get install "
            f"libnginx-mod-stream); or {INSTALL_HINT}"
        )


# --------------------------------------------------------------------------- the configuration


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _check_host(host: str) -> str:
    """An IP address or a plain host name -- nothing that could break out of nginx.conf."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not an IP address or a host name")
    return host


def parse_backend(backend: Any) -> tuple[str, int]:
    """``"H:P"``, ``"[V6]:P"``, a (host, port) pair or a server handle -> (host, port)."""
    address = getattr(backend, "address", backend)
    if isinstance(address, str):
        host, sep, port_text = address.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not port_text.isdigit():
            raise ValueError(f"a backend is HOST:PORT, not {address!r}")
        address = (host, int(port_text))
    if not (
        isinstance(address, (tuple, list))
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
        and not isinstance(address[1], bool)
    ):
        raise ValueError(
            f"a backend is HOST:PORT, a (host, port) pair or a server, not {backend!r}"
        )
    host, port = _check_host(address[0]), address[1]
    if not 0 < port < 65536:
        raise ValueError(f"backend port {port} is not between 1 and 65535")
    return host, port


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def configuration(
    mode: str,
    backends: Iterable[Any],
    *,
    host: str = "127.0.0.1",
    port: int,
    workdir: str | os.PathLike[str],
    build: NginxBuild | None = None,
) -> str:
    """The nginx.conf that puts nginx on ``host:port`` in front of ``backends``.

    ``mode`` "grpc": an http server speaking HTTP/2 without TLS, whose ``grpc_pass`` sends
    each call to the next backend of the ``upstream`` block (round robin, per call: L7).
    ``mode`` "stream": the stream module's ``proxy_pass``, which sends each TCP connection to
    the next backend (per connection: L4) -- and every call of a channel goes down its one
    connection. Every path nginx writes to is inside ``workdir``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    servers = [parse_backend(b) for b in backends]
    if not servers:
        raise ValueError("nginx needs at least one backend")
    host = _check_host(host)
    checks.integer("port", port, low=1, high=65535)
    work = Path(workdir)
    new_http2 = build is not None and build.version >= (1, 25, 1)  # `http2 on;` came in 1.25.1
    listen = _hostport(host, port)
    upstream = "\n".join(f"        server {_hostport(h, p)};" for h, p in servers)
    lines = [f"# nginx in front of {len(servers)} gRPC servers: {_what(mode)}"]
    if mode == "stream" and build is not None and build.stream == "dynamic":
        lines.append(f"load_module {build.stream_module};")
    if os.name == "posix" and os.geteuid() == 0:
        # nginx started by root hands its workers to "nobody"; keep them the current user.
        import grp
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        lines.append(f"user {user} {group};")
    lines += [
        "worker_processes 1;",
        f"pid {work / 'nginx.pid'};",
        f"error_log {work / 'error.log'} notice;",
        "events { worker_connections 256; }",
        "",
    ]
    if mode == "grpc":
        http2 = (
            [f"        listen {listen};", "        http2 on;"]
            if new_http2
            else [f"        listen {listen} http2;  # HTTP/2 without TLS, as gRPC speaks it"]
        )
        lines += [
            "http {",
            "    access_log off;",
            *(
                f"    {kind}_temp_path {work / kind};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            "    upstream backends {  # round robin: each call to the next server",
            upstream,
            "        keepalive 8;  # reuse connections to the servers",
            "    }",
            "    server {",
            *http2,
            "        location / {",
            "            grpc_pass grpc://backends;",
            "        }",
            "    }",
            "}",
        ]
    else:
        lines += [
            "stream {",
            "    upstream backends {  # round robin: each connection to the next server",
            upstream,
            "    }",
            "    server {",
            f"        listen {listen};",
            "        proxy_pass backends;",
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _what(mode: str) -> str:
    if mode == "grpc":
        return "grpc_pass, each call to the next (L7)"
    return "stream proxy_pass, each connection to the next (L4)"


# --------------------------------------------------------------------------- running nginx


class _PortTaken(Exception):
    """Another program took the port we picked before nginx could bind it."""


def _free_port(host: str) -> int:
    # nginx cannot listen on port 0: it would bind some port and never tell us which. So we ask
    # the kernel for a free port by binding port 0 ourselves, note the number, release it and
    # write it into nginx.conf. Another program could take it in between; nginx then exits
    # with "Address already in use" and _launch tries again with a new port. And we only say
    # nginx is ready once its pid file exists (it writes it after binding every port) and
    # the port accepts a connection, so another program's socket is never taken for nginx's.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _end_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to nginx's master (a fast shutdown: it stops its workers, then exits); SIGKILL to
    its whole process group if it has not gone within ``timeout`` seconds, or to the workers
    it left behind if it died on its own (killed, crashed)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the master is alive: the group is ours
            process.wait(timeout)
            return
    # The master is gone, so its pid (the group's id) could in time name someone else's group:
    # kill only the processes that are still in it and are nginx.
    for pid in _orphans(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _orphans(pgid: int) -> list[int]:
    """The live nginx processes in process group ``pgid`` (Linux's /proc; elsewhere, none)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # it ended while we looked
        name = text[text.find("(") + 1 : text.rfind(")")]
        state, _ppid, group = text[text.rfind(")") + 2 :].split()[:3]
        if int(group) == pgid and name == "nginx" and state != "Z":
            found.append(int(stat.parent.name))
    return found


class _Running:
    """One nginx process, its directory and its configuration."""

    def __init__(self, process: subprocess.Popen[bytes], workdir: Path, config: str, port: int):
        self.process = process
        self.workdir = workdir
        self.config = config
        self.port = port

    def stop(self, timeout: float) -> None:
        try:
            _end_group(self.process, timeout)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.process.poll() is None:
            raise background.BackgroundServerError(
                f"nginx (pid {self.process.pid}) is still running after {timeout:.0f}s"
            )


def _launch(
    build: NginxBuild,
    mode: str,
    backends: Sequence[tuple[str, int]],
    host: str,
    port: int,
    timeout: float,
) -> _Running:
    for _ in range(PORT_ATTEMPTS if port == 0 else 1):
        chosen = port or _free_port(host)
        workdir = Path(tempfile.mkdtemp(prefix="rpclab-nginx-"))
        try:
            return _start_once(build, mode, backends, host, chosen, workdir, timeout, port == 0)
        except _PortTaken:
            shutil.rmtree(workdir, ignore_errors=True)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    raise NginxError(f"nginx found no free port on {host} in {PORT_ATTEMPTS} tries")


def _start_once(
    build: NginxBuild,
    mode: str,
    backends: Sequence[tuple[str, int]],
    host: str,
    port: int,
    workdir: Path,
    timeout: float,
    picked: bool,
) -> _Running:
    config = configuration(mode, backends, host=host, port=port, workdir=workdir, build=build)
    (workdir / "nginx.conf").write_text(config)
    argv = [build.path, "-p", f"{workdir}/", "-c", str(workdir / "nginx.conf")]
    if build.version >= (1, 19, 5):  # -e: the log for what nginx says before it reads its config
        argv += ["-e", str(workdir / "error.log")]
    argv += ["-g", "daemon off;"]
    with open(workdir / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=workdir,
            start_new_session=True,  # its own process group: stopped as one, never by Ctrl-C
        )
    pid_file = workdir / "nginx.pid"
    deadline = time.monotonic() + timeout
    try:
        while True:
            code = process.poll()
            if code is not None:
                said = _tail(workdir / "stderr.log") or _tail(workdir / "error.log")
                if picked and "Address already in use" in said:
                    raise _PortTaken(said)
                raise NginxError(f"nginx exited with status {code}: {said or 'no message'}")
            if _pid_is(pid_file, process.pid) and _accepts(host, port):
                return _Running(process, workdir, config, port)
            if time.monotonic() > deadline:
                raise NginxError(
                    f"nginx did not accept on {_hostport(host, port)} within {timeout:g} s: "
                    f"{_tail(workdir / 'error.log') or 'no message'}"
                )
            try:
                process.wait(0.02)  # returns at once if nginx exits; otherwise look again
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        _end_group(process, background.STOP_TIMEOUT)
        raise


def _pid_is(pid_file: Path, pid: int) -> bool:
    try:
        return pid_file.read_text().strip() == str(pid)
    except OSError:
        return False


class NginxServer(background.RunningServer):
    """A running nginx: ``address``, ``mode``, ``backends``, ``config`` (its nginx.conf),
    ``alive``, ``stop()``."""

    def __init__(
        self,
        handle: background.ServerHandle,
        running: _Running,
        mode: str,
        backends: list[tuple[str, int]],
    ) -> None:
        super().__init__(handle)
        self._running = running
        self.mode = mode
        self.backends = backends
        self.config = running.config

    @property
    def pid(self) -> int:
        return self._running.process.pid

    @property
    def workdir(self) -> Path:
        """The directory nginx runs in: nginx.conf, its pid file and logs (removed on stop)."""
        return self._running.workdir

    @property
    def alive(self) -> bool:
        """Whether nginx is still running (it was not stopped, and did not die)."""
        return self._running.process.poll() is None

    def error_log(self) -> str:
        """The last lines nginx wrote to its error log."""
        return _tail(self._running.workdir / "error.log", 10)

    def exit_reason(self) -> str:
        """How nginx ended, with the last serious line of its log: "" while it runs."""
        code = self._running.process.poll()
        if code is None:
            return ""
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        try:
            log = (self._running.workdir / "error.log").read_text(errors="replace")
        except OSError:
            log = ""
        serious = [line for line in log.splitlines() if re.search(r"\[(emerg|alert|crit)\]", line)]
        return f"{how}: {serious[-1]}" if serious else how

    def __repr__(self) -> str:
        return f"<nginx {self.mode} {self.name!r} on {self.host}:{self.port} -> {self.backends}>"


def serve_nginx(
    name: str,
    mode: str,
    backends: Iterable[Any],
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    timeout: float = START_TIMEOUT,
) -> NginxServer:
    """Start nginx as ``name`` in front of ``backends`` ("H:P", (host, port) or server handles);
    return once it accepts on ``host:port`` (port 0: a free port).

    Raises :class:`NginxMissing` where nginx (or, for "stream", its stream module) is not
    installed, and :class:`NginxError` if it does not start.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    servers = [parse_backend(b) for b in backends]
    if not servers:
        raise ValueError("nginx needs at least one backend")
    host = _check_host(host)
    checks.integer("port", port, low=0, high=65535)
    build = find_nginx()
    _check_build(build, mode)
    started: list[_Running] = []

    def start() -> tuple[tuple[str, int], Any]:
        running = _launch(build, mode, servers, host, port, timeout)
        started.append(running)
        return (host, running.port), running.stop

    handle = background.serve_process(name, start, kind="nginx")
    return NginxServer(handle, started[0], mode, servers)


# --------------------------------------------------------------------------- rpclab nginx


def main(mode: str, backends: Sequence[str], *, host: str = "127.0.0.1", port: int = 0) -> int:
    """``rpclab nginx``: nginx in front of ``backends`` until SIGTERM or Ctrl-C; exit 0 then.

    Prints ``listening on HOST:PORT`` once nginx accepts. A start that fails, or an nginx
    that dies, is one line on stderr and exit status 1; nginx is never left running.
    """
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    # Handlers first: a SIGTERM during the start must still stop nginx, not orphan it.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server = serve_nginx("rpclab-nginx", mode, backends, host=host, port=port)
        except (ValueError, NginxError) as exc:
            print(f"rpclab nginx: {exc}", file=sys.stderr)
            return 1
        try:
            print(f"listening on {_hostport(server.host, server.port)}", flush=True)
            while not done.wait(0.2):
                if not server.alive:
                    print(
                        f"rpclab nginx: nginx exited unexpectedly ({server.exit_reason()})",
                        file=sys.stderr,
                    )
                    return 1
            return 0
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
