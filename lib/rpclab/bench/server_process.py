"""The bench's echo servers in a child process of their own, so that they do not share this
process's GIL with their clients.

Measured in notebook 13 and by ``rpclab bench`` (the "server in another process" rows)::

    servers = server_process.start(["raw", "socketrpc"])   # one child, every server in it
    endpoint = servers.endpoint("socketrpc")                # a client here, the server there
    servers.cpu_ns()                                        # CPU time the child has used (ns)
    servers.stop()                                          # no process, thread or port left

The child is ``python -m rpclab.bench.server_process NAME ...``: it starts each transport's
echo server (rpclab.bench.echo: its TRANSPORTS, and the EXTRAS such as the ``queue`` server
of notebook 13's load experiments), prints ``NAME listening on HOST:PORT`` for each and then
``ready``, and reads commands on its standard input, one a line: ``cpu`` answers with the CPU
time the whole child has used (``time.process_time_ns``: every thread, ended ones included);
end of input stops every server and ends the child, so a parent that dies takes it along. The
child runs in a session of its own (a Ctrl-C in the kernel does not reach it) and is kept by
rpclab.runtime.background under the name ``bench-servers``: starting it again replaces it,
``background.stop_all()`` stops it. :meth:`ServerProcess.pause` stops it with SIGSTOP for a
while (notebook 13's coordinated-omission demonstration).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from rpclab.bench import echo
from rpclab.runtime import background

__all__ = ["ServerProcess", "start", "main", "START_TIMEOUT", "ANSWER_TIMEOUT"]

START_TIMEOUT = 60.0  # seconds the child may take to import its stacks and start listening
ANSWER_TIMEOUT = 5.0  # seconds it may take to answer a command
STOP_TIMEOUT = 10.0
MAX_LINE = 4096  # the longest line the parent reads from the child


class _Lines:
    """Lines from a pipe, each read with a deadline (select, then os.read: no blocking read)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise RuntimeError("the bench's server process wrote a line too long to be ours")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the bench's server process in {timeout} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, MAX_LINE)
                if not chunk:
                    raise ConnectionError("the bench's server process has ended")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")


class ServerProcess:
    """A child process running echo servers: ``addresses`` by transport name, ``pid``,
    ``cpu_ns()``, ``endpoint(name)``, ``pause(seconds)``, ``stop()``."""

    def __init__(self, process: subprocess.Popen[bytes], errors: object):
        self.process = process
        self.pid = process.pid
        self.addresses: dict[str, tuple[str, int]] = {}
        self._errors = errors
        self._lines = _Lines(process.stdout.fileno())  # type: ignore[union-attr]
        self._lock = threading.Lock()
        self._stopped = False
        self.stderr = ""  # the end of what the child wrote to its standard error, once stopped

    def _read_start(self, names: Sequence[str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = self._lines.readline(max(deadline - time.monotonic(), 0.001))
            if line == "ready":
                break
            name, _, where = line.partition(" listening on ")
            host, _, port = where.rpartition(":")
            if name not in names or not port.isdigit():
                raise RuntimeError(f"unexpected line from the bench's server process: {line!r}")
            self.addresses[name] = (host, int(port))
        missing = [n for n in names if n not in self.addresses]
        if missing:
            raise RuntimeError(f"the bench's server process did not start {', '.join(missing)}")

    def _command(self, command: str) -> str:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the bench's server process has been stopped")
            self.process.stdin.write(command.encode() + b"\n")  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]
            return self._lines.readline(ANSWER_TIMEOUT)

    def cpu_ns(self) -> int:
        """CPU time the child has used so far, all its threads together (ns)."""
        answer = self._command("cpu")
        if not answer.isdigit():
            raise RuntimeError(f"the bench's server process answered {answer!r} to 'cpu'")
        return int(answer)

    def endpoint(self, name: str) -> echo.Endpoint:
        """A client in this process for the child's ``name`` server, as an Endpoint (closing it
        closes the client only: the child keeps serving until :meth:`stop`)."""
        if name not in self.addresses:
            raise ValueError(f"the bench's server process does not serve {name!r}")
        client = {**echo.TRANSPORTS, **echo.EXTRAS}[name].client(self.addresses[name])
        return echo.Endpoint(
            client.connect,
            client.close,
            client.concurrent,
            client.concurrency,
            server_pid=self.pid,
            server_cpu_ns=self.cpu_ns,
            client_threads=client.threads,
        )

    def pause(self, seconds: float, paused: threading.Event | None = None) -> None:
        """Stop the whole child (SIGSTOP) for ``seconds``, then let it go on (SIGCONT); ``paused``
        is set once it is stopped."""
        if not 0 < seconds <= 5:
            raise ValueError(f"pause between 0 and 5 seconds, not {seconds!r}")
        os.kill(self.pid, signal.SIGSTOP)
        if paused is not None:
            paused.set()
        try:
            threading.Event().wait(seconds)  # the pause itself: a length of time, not a readiness
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the child: end of input first (it stops its servers), then SIGTERM, then SIGKILL."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        process = self.process
        try:
            os.kill(process.pid, signal.SIGCONT)  # in case it was left paused
        except ProcessLookupError:
            pass
        try:
            process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(2.0)
        finally:
            process.stdout.close()  # type: ignore[union-attr]
            errors = self._errors
            try:
                errors.seek(0)  # type: ignore[attr-defined]
                self.stderr = errors.read()[-2000:].decode("utf-8", "replace")  # type: ignore
            finally:
                errors.close()  # type: ignore[attr-defined]


def start(names: Sequence[str], *, name: str = "bench-servers") -> ServerProcess:
    """Start a child process serving the echo of each transport in ``names``; return once every
    server listens."""
    names = list(dict.fromkeys(names))
    servable = {**echo.TRANSPORTS, **echo.EXTRAS}
    unknown = [n for n in names if n not in servable]
    if not names or unknown:
        raise ValueError(
            f"name transports the child can serve ({', '.join(servable)}), not {unknown}"
        )
    started: list[ServerProcess] = []

    def launch() -> tuple[tuple[str, int], object]:
        errors = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [sys.executable, "-m", "rpclab.bench.server_process", *names],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )
        child = ServerProcess(process, errors)
        try:
            child._read_start(names)
        except BaseException as exc:
            child.stop(2.0)
            said = f"; it said: {child.stderr.strip()}" if child.stderr.strip() else ""
            raise RuntimeError(f"the bench's server process did not start: {exc}{said}") from exc
        started.append(child)
        return child.addresses[names[0]], child.stop

    background.serve_process(name, launch, kind="bench servers")  # type: ignore[arg-type]
    return started[0]


def main(argv: Sequence[str] | None = None) -> int:
    """The child: serve each named echo, then answer commands until the end of input."""
    names = list(sys.argv[1:] if argv is None else argv)
    served: list[echo.Served] = []
    try:
        servable = {**echo.TRANSPORTS, **echo.EXTRAS}
        for name in names:
            if name not in servable:
                print(f"unknown transport {name!r}", file=sys.stderr)
                return 2
            server = servable[name].serve()
            served.append(server)
            print(f"{name} listening on {server.address[0]}:{server.address[1]}", flush=True)
        print("ready", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "cpu":
                print(time.process_time_ns(), flush=True)
            else:
                print(f"unknown command {command!r}", flush=True)
    finally:
        for server in reversed(served):
            server.stop()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    sys.exit(main())
