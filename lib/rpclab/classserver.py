"""Class servers: one stack of the course served to a room of learners, as ``rpclab serve`` does.

A server the whole class can reach must keep serving honest learners while one of them
misbehaves. :class:`ClassOptions` gathers what ``rpclab serve`` was told (address, tokens,
TLS folder, limits) and the ``serve_*`` functions start the key-value store over each stack
with every guard on:

==========  ==============================================================================
socket      KV over the hand-built JSON-RPC (rpclab.byhand.socketrpc); connections per
            address and in all, calls per learner, idle timeout (socketrpc.Limits); a frame
            must arrive, and a reply be taken, within the request timeout; at-most-once if
            asked; no tokens (its frames carry JSON-RPC messages only)
grpc        Greeter, RouteGuide, KV, health, reflection; tokens (every method) and TLS;
            per learner: calls in progress and streams open (rpclab.grpcstack.limits);
            ``workers`` threads; idle connections closed (``grpc.max_connection_idle_ms``)
thrift      KV over Thrift (binary, framed); connections per address and in all; request
            and idle timeouts (rpclab.runtime.guard); no tokens (no headers to carry one)
xmlrpc      KV over XML-RPC; tokens (``Authorization: Bearer``); connections and timeouts
rest        KV over REST/JSON; tokens; connections and timeouts
==========  ==============================================================================

``tls_folder(folder, names)`` makes -- or reuses, so that learners keep the same ``ca.pem``
from one class to the next -- a class certificate authority and a server certificate.

Used by rpclab.cli (``rpclab serve``) and notebook 10 (a class server in the kernel: a learner
with a token over TLS); TEACHING.md's lab section says how a teacher uses it and what a learner
sees over each limit.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rpclab.runtime import background
from rpclab.runtime.guard import (
    DEFAULT_CONNECTIONS_PER_ADDRESS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    ConnectionLimits,
)

__all__ = [
    "ClassLimits",
    "ClassOptions",
    "serve_socket",
    "serve_grpc",
    "serve_thrift",
    "serve_xmlrpc",
    "serve_rest",
    "tls_folder",
    "machine_names",
    "raise_open_file_limit",
    "CA_FILE",
]

log = logging.getLogger(__name__)

CA_FILE = "ca.pem"  # the class CA's certificate: hand it to learners (it is public)
CA_KEY_FILE = "ca-key.pem"  # the class CA's private key: never leaves the teacher's machine
SERVER_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
CERT_DAYS = 365  # a class CA and its server certificates last a school year
RENEW_BEFORE = _dt.timedelta(days=7)  # a certificate this close to its end is made anew


@dataclass(frozen=True)
class ClassLimits:
    """What one learner, and everyone together, may hold of a class server. The defaults suit a
    class of 30: each learner may keep a few streams open and a few calls going, and 30 of
    them together stay within the server's workers."""

    connections_per_address: int = DEFAULT_CONNECTIONS_PER_ADDRESS  # 16 (all but gRPC)
    calls_per_learner: int = 8  # gRPC and socket calls in progress at once, per learner
    streams_per_learner: int = 4  # gRPC streams open at once, per learner
    workers: int = DEFAULT_MAX_CONNECTIONS  # 160: gRPC threads / connections in all
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # 120 s: an idle connection is closed
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # 10 s: first byte to reply (not gRPC)

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.connections_per_address, self.workers)

    def socket_limits(self) -> Any:
        """The socket RPC server's share of these (rpclab.byhand.socketrpc.Limits)."""
        from rpclab.byhand.socketrpc import Limits

        return Limits(
            connections_per_address=self.connections_per_address,
            connections=self.workers,
            calls_per_learner=self.calls_per_learner,
            idle_timeout=self.idle_timeout,
        )


@dataclass(frozen=True)
class ClassOptions:
    """How to serve: where, for whom (``tokens``: token -> learner's name), with which TLS
    folder, within which limits, whether to log every call, and (socket) whether at most once."""

    host: str = "127.0.0.1"
    port: int = 0
    tokens: dict[str, str] | None = None
    tls_dir: Path | None = None
    limits: ClassLimits = field(default_factory=ClassLimits)
    log_calls: bool = False
    at_most_once: bool = False  # socket: answer a repeated request from a table of replies


# --------------------------------------------------------------------------- the stacks


def serve_grpc(options: ClassOptions) -> background.ServerHandle:
    """Greeter, RouteGuide, KV, health and reflection for a class: tokens, TLS, limits."""
    import grpc

    from rpclab.grpcstack import services
    from rpclab.grpcstack.interceptors import CallLog, TokenAuth
    from rpclab.grpcstack.limits import LearnerLimits

    limits = options.limits
    auth = TokenAuth(options.tokens) if options.tokens else None
    per_learner = LearnerLimits(limits.calls_per_learner, limits.streams_per_learner, tokens=auth)
    interceptors: list[Any] = []
    if options.log_calls:
        interceptors.append(CallLog(learner=per_learner.learner))
    if auth is not None:
        interceptors.append(auth)
    interceptors.append(per_learner)
    credentials = None
    if options.tls_dir is not None:
        server, names = tls_folder(options.tls_dir, machine_names(options.host))
        credentials = grpc.ssl_server_credentials([(server.key_pem, server.cert_pem)])
        log.info(
            "TLS: the certificate names %s; learners trust %s",
            ", ".join(names),
            Path(options.tls_dir) / CA_FILE,
        )
    grpc_options = [
        # an HTTP/2 connection idle this long is closed (the client reconnects by itself)
        ("grpc.max_connection_idle_ms", int(limits.idle_timeout * 1000)),
        # calls one connection may have open at once (more wait on the client's side)
        ("grpc.max_concurrent_streams", 2 * limits.calls_per_learner),
    ]
    return background.serve_grpc(
        "rpclab-class-grpc",
        services.register_all,
        host=options.host,
        port=options.port,
        max_workers=limits.workers,
        # calls beyond this many in progress (queued included) get RESOURCE_EXHAUSTED at once
        maximum_concurrent_rpcs=4 * limits.workers,
        options=grpc_options,
        interceptors=interceptors,
        credentials=credentials,
    )


def serve_socket(options: ClassOptions) -> background.ServerHandle:
    """The KV store over the hand-built socket RPC for a class: connection and call limits,
    idle and request timeouts, and at-most-once if asked (each learner's ids apart)."""
    from rpclab.byhand import socketrpc
    from rpclab.kv import KVStore

    _refuse_tokens_and_tls(
        "socket",
        options,
        no_token="its frames carry JSON-RPC messages only, with no place for a token",
    )
    limits = options.limits
    return socketrpc.serve(
        KVStore(),
        name="rpclab-class-socket",
        host=options.host,
        port=options.port,
        frame_timeout=limits.request_timeout,
        at_most_once=options.at_most_once,
        limits=limits.socket_limits(),
    )


def _refuse_tokens_and_tls(kind: str, options: ClassOptions, no_token: str | None = None) -> None:
    """Refuse --tls (grpc only) and, if ``no_token`` says why a stack cannot carry one, tokens."""
    if options.tls_dir is not None:
        raise ValueError(f"--tls is for grpc only; {kind} serves plain text")
    if options.tokens and no_token is not None:
        raise ValueError(
            f"--token-file is not available for {kind}: {no_token} (grpc, xmlrpc and rest take one)"
        )


def serve_thrift(options: ClassOptions) -> background.ServerHandle:
    """The KV store over Thrift for a class: connection limits and timeouts."""
    from rpclab.adapters import thrift
    from rpclab.kv import KVStore

    _refuse_tokens_and_tls(
        "thrift", options, no_token="its binary protocol has no headers to carry a token"
    )
    limits = options.limits
    return thrift.serve(
        KVStore(),
        name="rpclab-class-thrift",
        host=options.host,
        port=options.port,
        limits=limits.connection_limits(),
        idle_timeout=limits.idle_timeout,
        request_timeout=limits.request_timeout,
    )


def serve_xmlrpc(options: ClassOptions) -> background.ServerHandle:
    """The KV store over XML-RPC for a class: tokens, connection limits and timeouts."""
    from rpclab.adapters import xml_rpc
    from rpclab.kv import KVStore

    _refuse_tokens_and_tls("xmlrpc", options)
    limits = options.limits
    return xml_rpc.serve(
        KVStore(),
        name="rpclab-class-xmlrpc",
        host=options.host,
        port=options.port,
        limits=limits.connection_limits(),
        tokens=options.tokens,
        idle_timeout=limits.idle_timeout,
        request_timeout=limits.request_timeout,
    )


def serve_rest(options: ClassOptions) -> background.ServerHandle:
    """The KV store over REST/JSON for a class: tokens, connection limits and timeouts."""
    from rpclab.adapters import rest
    from rpclab.kv import KVStore

    _refuse_tokens_and_tls("rest", options)
    limits = options.limits
    return rest.serve(
        KVStore(),
        name="rpclab-class-rest",
        host=options.host,
        port=options.port,
        limits=limits.connection_limits(),
        tokens=options.tokens,
        idle_timeout=limits.idle_timeout,
        request_timeout=limits.request_timeout,
    )


# --------------------------------------------------------------------------- TLS for a class


def machine_names(host: str) -> list[str]:
    """The names and addresses learners may dial to reach this machine on ``host``: ``host``
    itself (unless it is a wildcard, which brings every address of the machine instead), its
    host names, and the loopback names."""
    names: list[str] = []

    def add(name: str) -> None:
        if name and "%" not in name and name not in names:
            names.append(name)

    wildcard = host in ("0.0.0.0", "::", "")
    if not wildcard:
        add(host)
    for name in (socket.gethostname(), socket.getfqdn()):
        add(name)
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            add(str(info[4][0]))
    except OSError:
        pass
    if wildcard:
        for address in _interface_addresses():
            add(address)
    for name in ("localhost", "127.0.0.1", "::1"):
        add(name)
    return names


def _interface_addresses() -> list[str]:
    """The IPv4 address of each network interface (Linux; elsewhere, none)."""
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    siocgifaddr = 0x8915
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(
                    probe.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15])
                )
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(packed[20:24]))
    return found


def _write(path: Path, data: bytes, private: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _still_good(cert: Any) -> bool:
    return cert.not_valid_after_utc - _dt.datetime.now(_dt.UTC) > RENEW_BEFORE


def tls_folder(folder: str | Path, names: Iterable[str]) -> tuple[Any, list[str]]:
    """The server's KeyPair for ``names``, and the names it covers, from ``folder``.

    Reuses ``folder``'s class CA (``ca.pem``, ``ca-key.pem``) if it is there and not about to
    expire, else makes one; reuses ``server.pem`` if that CA signed it for every one of
    ``names`` and it is not about to expire, else makes one. Private keys are written
    readable by their owner only.
    """
    from cryptography.exceptions import InvalidSignature

    from rpclab.grpcstack import tls

    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    wanted = list(dict.fromkeys(names))
    ca_path, ca_key_path = folder / CA_FILE, folder / CA_KEY_FILE
    ca = _saved_ca(ca_key_path, ca_path)
    if ca is None:
        ca = tls.make_ca("RPC Lab class CA", days=CERT_DAYS)
        _write(ca_key_path, ca.key_pem, private=True)
        _write(ca_path, ca.cert_pem, private=False)
        log.info("made a new class CA in %s: give learners the new %s", folder, CA_FILE)
    server_path, server_key_path = folder / SERVER_FILE, folder / SERVER_KEY_FILE
    if server_path.is_file() and server_key_path.is_file():
        try:
            server = tls.KeyPair(server_key_path.read_bytes(), server_path.read_bytes())
            cert = server.certificate
            cert.verify_directly_issued_by(ca.certificate)
            covered = set(tls.describe(server).hostnames)
            if _still_good(cert) and {_canonical(n) for n in wanted} <= covered:
                return server, wanted
        except (ValueError, TypeError, InvalidSignature):
            pass
    server = tls.make_server_cert(ca, wanted, common_name=wanted[0], days=CERT_DAYS)
    _write(server_key_path, server.key_pem, private=True)
    _write(server_path, server.cert_pem, private=False)
    return server, wanted


def _saved_ca(key_path: Path, cert_path: Path) -> Any:
    """The CA saved in these files, if it is one, its key is its own, and it is not about to
    expire; else None."""
    from cryptography.hazmat.primitives import serialization

    from rpclab.grpcstack import tls

    if not (key_path.is_file() and cert_path.is_file()):
        return None
    try:
        ca = tls.KeyPair(key_path.read_bytes(), cert_path.read_bytes())
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
        own = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == ca.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError):
        return None
    if not own or not tls.describe(ca).is_ca or not _still_good(ca.certificate):
        return None
    return ca


def _canonical(name: str) -> str:
    """A name as a certificate's subjectAltName lists it (IP addresses in their short form)."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


# --------------------------------------------------------------------------- the process


def raise_open_file_limit(needed: int) -> str | None:
    """Raise this process's limit on open files (the soft one, up to the hard one) to fit
    ``needed`` connections and some to spare; return a warning if it cannot."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256  # the interpreter's own files, the listening socket, a refused one...
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < want:
        return (
            f"this process may open {soft} files, fewer than {want} for {needed} connections: "
            "lower --workers, or raise the limit (ulimit -n)"
        )
    return None
