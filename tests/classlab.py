"""Helpers for tests that run `rpclab serve` as a learner's class server: start it (here or in a
network namespace), read its `listening on` line, stop it with a signal and check how it left.

Used by tests/test_cli_serve_class.py and tests/test_class_lab_netns.py; the socket stack's
tests can use them too.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0  # a cold start imports grpc and may compile the protos: generous
EXIT_TIMEOUT = 10.0  # DESIGN.md: a server exits 0 within 10 s of SIGTERM or Ctrl-C
LISTENING = re.compile(r"listening on (\S+):(\d+)\n")


@dataclass
class ClassServer:
    """A running `rpclab serve` process and the address it printed."""

    proc: subprocess.Popen
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float, str, str]:
        """Send ``signum``; return (exit status, seconds it took, stdout after the first line,
        stderr). Kills the process (and fails) if it is still running after EXIT_TIMEOUT."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            out, err = self.proc.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"`rpclab serve` still running {EXIT_TIMEOUT:g} s after signal {signum}; "
                f"stderr: {err[-2000:]}"
            ) from None
        return self.proc.returncode, time.monotonic() - started, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=EXIT_TIMEOUT)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def serve_command(kind: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "rpclab.cli", "serve", kind, *options]


def start(command: Sequence[str], timeout: float = START_TIMEOUT) -> ClassServer:
    """Start ``command`` (an `rpclab serve`, perhaps behind `ip netns exec`) and wait for its
    `listening on HOST:PORT` line; fail with its stderr if it prints something else or exits."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
    line = proc.stdout.readline() if ready else ""
    match = LISTENING.fullmatch(line)
    if match is None:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=EXIT_TIMEOUT)
        raise AssertionError(
            f"`{' '.join(command)}` printed {line!r} (then {out[:500]!r}); stderr: {err[-2000:]}"
        )
    return ClassServer(proc, match[1], int(match[2]))


def write_tokens(path: Path, names: Sequence[str]) -> dict[str, str]:
    """A token file for ``names``; return name -> token."""
    from rpclab import tokens

    made = {name: tokens.make_token() for name in names}
    path.write_text("".join(f"{name} {token}\n" for name, token in made.items()))
    return made
