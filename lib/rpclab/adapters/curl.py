"""Call an HTTP server with curl, a client that owes nothing to Python, and keep the exchange.

Used in notebook 12 (the REST and XML-RPC servers called from outside Python).

    reason = curl.missing_reason()          # None, or how to install curl
    seen = curl.exchange("GET", "http://127.0.0.1:8000/keys/greeting")
    print(seen)                             # > request line and headers, < status and headers, body
    seen.status, seen.body, seen.sizes      # 200, '{"key":...}', Sizes(request_head=92, ...)

curl runs with ``--verbose``, which writes the request's head (lines starting ``>``) and the
reply's head (``<``) to stderr; the body it sends is given here, so it is shown as sent.
``sizes`` are curl's own counts of the bytes that crossed the connection: with
``compressed=True`` curl offers gzip and the other encodings it knows, ``body`` is the
decoded text and ``sizes.response_body`` the bytes as they travelled.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from rpclab import checks

__all__ = ["INSTALL_HINT", "CurlError", "Sizes", "Exchange", "missing_reason", "exchange"]

INSTALL_HINT = "apt-get install curl (Debian, Ubuntu) or conda install -c conda-forge curl"
MAX_OUTPUT = 1024 * 1024  # a reply body over this is cut: curl's --max-filesize refuses it
_SIZES = "RPCLAB-CURL-SIZES"


class CurlError(RuntimeError):
    """curl is missing, or failed to make the exchange (its message says why)."""


@dataclass(frozen=True)
class Sizes:
    """Bytes that crossed the connection, as curl counted them."""

    request_head: int
    request_body: int
    response_head: int
    response_body: int

    @property
    def sent(self) -> int:
        return self.request_head + self.request_body

    @property
    def received(self) -> int:
        return self.response_head + self.response_body


@dataclass(frozen=True)
class Exchange:
    """One request and its reply: the heads as curl printed them, the bodies, the sizes."""

    request_head: tuple[str, ...]
    request_body: str | None
    response_head: tuple[str, ...]
    body: str
    sizes: Sizes

    @property
    def status(self) -> int:
        """The reply's status code (the number on the ``HTTP/1.1 200 OK`` line)."""
        return int(self.response_head[0].split()[1])

    def header(self, name: str) -> str | None:
        """The value of the reply's header ``name`` (any case), or None."""
        for line in self.response_head[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def render(self, max_body: int = 400) -> str:
        """The exchange as text: ``>`` lines sent, ``<`` lines received, long bodies cut."""
        lines = [f"> {line}" for line in self.request_head] + [">"]
        if self.request_body:
            lines += [f"> {line}" for line in _cut(self.request_body, max_body).splitlines()]
        lines += [f"< {line}" for line in self.response_head] + ["<"]
        if self.body:
            lines += [f"< {line}" for line in _cut(self.body, max_body).splitlines()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def missing_reason() -> str | None:
    """How to install curl if it is not on this machine; None if it is."""
    if shutil.which("curl") is None:
        return f"curl is not installed. Install it with: {INSTALL_HINT}"
    return None


def exchange(
    method: str,
    url: str,
    *,
    body: str | None = None,
    headers: Iterable[str] = (),
    compressed: bool = False,
    timeout: float = 10.0,
) -> Exchange:
    """Make one request with curl and return what crossed the wire.

    ``headers`` are ``"Name: value"`` strings; ``body`` is sent as it is (``--data-binary``).
    Raises CurlError when curl is missing, cannot connect or gives up after ``timeout`` s.
    """
    checks.seconds("timeout", timeout, above=0)
    if missing_reason() is not None:
        raise CurlError(missing_reason())
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--verbose",
        "--max-time",
        f"{timeout:g}",
        "--max-filesize",
        str(MAX_OUTPUT),
        "--request",
        method,
        "--write-out",
        "%{stderr}" + _SIZES + " %{size_request} %{size_upload} %{size_header} %{size_download}",
    ]
    for header in headers:
        command += ["--header", header]
    if compressed:
        command.append("--compressed")
    if body is not None:
        command += ["--data-binary", "@-"]
    command.append(url)
    try:
        done = subprocess.run(
            command,
            input=(body or "").encode(),
            capture_output=True,
            timeout=timeout + 5,
        )
    except subprocess.TimeoutExpired:
        raise CurlError(f"curl did not finish within {timeout + 5:g} s") from None
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        message = [line for line in stderr.splitlines() if line.startswith("curl:")]
        raise CurlError(message[-1] if message else f"curl exited with status {done.returncode}")
    sent, received, sizes = [], [], None
    for line in stderr.splitlines():
        line = line.rstrip("\r")
        if line.startswith("> ") and line[2:]:
            sent.append(line[2:])
        elif line.startswith("< ") and line[2:]:
            received.append(line[2:])
        elif line.startswith(_SIZES):
            sizes = Sizes(*(int(number) for number in line.split()[1:5]))
    if sizes is None or not received:
        raise CurlError(f"curl's output was not understood: {stderr[-500:]!r}")
    return Exchange(
        request_head=tuple(sent),
        request_body=body,
        response_head=tuple(received),
        body=done.stdout[:MAX_OUTPUT].decode("utf-8", "replace"),
        sizes=sizes,
    )


def _cut(text: str, limit: int) -> str:
    text = text.rstrip("\n")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters in all)"
