"""The ``rpclab`` command: ``doctor``, ``serve``, ``epmap``, ``nginx`` and ``bench``.

``rpclab serve socket|grpc|thrift|xmlrpc|rest|oncrpc`` runs a class server: rpclab.classserver
applies its tokens, TLS and limits. Not imported by notebooks: notebook 00 and README show the
commands; 13 points to ``rpclab bench``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]


def _doctor(args: argparse.Namespace) -> int:
    from rpclab import doctor

    return 0 if doctor.report() else 1


# --------------------------------------------------------------------------- rpclab serve
#
# Each stack is a function that starts its server (in background threads) from the class
# options and returns its handle (``.address``, ``.stop(timeout)``). To add a stack, write its
# function and add it to SERVERS; options it cannot honour raise ValueError with the reason.


def _start_socket(options: Any) -> Any:
    from rpclab import classserver

    return classserver.serve_socket(options)


def _start_grpc(options: Any) -> Any:
    from rpclab import classserver

    return classserver.serve_grpc(options)


def _start_thrift(options: Any) -> Any:
    from rpclab import classserver

    return classserver.serve_thrift(options)


def _start_xmlrpc(options: Any) -> Any:
    from rpclab import classserver

    return classserver.serve_xmlrpc(options)


def _start_rest(options: Any) -> Any:
    from rpclab import classserver

    return classserver.serve_rest(options)


def _start_oncrpc(options: Any, register: bool = False) -> Any:
    from rpclab import kv
    from rpclab.byhand import oncrpc

    if options.tokens or options.tls_dir is not None:
        raise ValueError("--token-file and --tls are not available for oncrpc (AUTH_SYS is trust)")
    return oncrpc.serve(kv.KVStore(), host=options.host, port=options.port, register=register)


SERVERS: dict[str, Callable[[Any], Any]] = {
    "socket": _start_socket,
    "grpc": _start_grpc,
    "thrift": _start_thrift,
    "xmlrpc": _start_xmlrpc,
    "rest": _start_rest,
    "oncrpc": _start_oncrpc,
}


def _starter(args: argparse.Namespace) -> Callable[[Any], Any]:
    """The start function for ``args.kind``, given the options only that kind takes."""
    if getattr(args, "at_most_once", False) and args.kind != "socket":
        raise ValueError("--at-most-once is for socket only")
    if getattr(args, "register", False):
        if args.kind != "oncrpc":
            raise ValueError("--register is for oncrpc only")
        return lambda options: _start_oncrpc(options, register=True)
    return SERVERS[args.kind]


STOP_TIMEOUT = 7.0  # seconds the server gets to stop: with the signal's latency, under 10
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _class_options(args: argparse.Namespace) -> Any:
    from rpclab import classserver, tokens

    tokens_by_value = tokens.read_token_file(args.token_file) if args.token_file else None
    limits = classserver.ClassLimits(
        connections_per_address=args.max_connections_per_address,
        calls_per_learner=args.max_calls_per_learner,
        streams_per_learner=args.max_streams_per_learner,
        workers=args.workers,
        idle_timeout=args.idle_timeout,
        request_timeout=args.request_timeout,
    )
    return classserver.ClassOptions(
        host=args.host,
        port=args.port,
        tokens=tokens_by_value,
        tls_dir=args.tls,
        limits=limits,
        log_calls=args.log_calls,
        at_most_once=args.at_most_once,
    )


def _warnings(args: argparse.Namespace, options: Any) -> list[str]:
    if args.host in LOOPBACK:
        return []
    reach = f"serving on {args.host}: other machines can reach this server"
    if not options.tokens:
        return [f"warning: {reach}; it has no authentication."]
    if options.tls_dir is None:
        return [f"warning: {reach}; tokens and data travel in plain text (--tls: grpc only)."]
    return []


def _log_to_stderr(log_calls: bool) -> None:
    """Refusals (and with --log-calls, every call) as lines on stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("rpclab")  # refusals, and what TLS covers, are INFO lines
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if log_calls:
        logging.getLogger("rpclab.grpcstack.interceptors").setLevel(logging.DEBUG)


def _serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly and exit 0 (a second signal while
    stopping: leave at once, exit 128 + the signal's number)."""
    done = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            options = _class_options(args)
            from rpclab import classserver

            shortfall = classserver.raise_open_file_limit(args.workers)
            _log_to_stderr(args.log_calls)
            server = _starter(args)(options)
        except Exception as exc:
            print(f"rpclab serve {args.kind}: {exc}", file=sys.stderr)
            return 1
        host, port = server.address
        print(f"listening on {host}:{port}", flush=True)
        for line in _warnings(args, options) + ([f"warning: {shortfall}"] if shortfall else []):
            print(line, file=sys.stderr, flush=True)
        while not done.wait(0.5):
            pass
        return _stop(args.kind, server, signals)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(kind: str, server: Any, signals: list[int]) -> int:
    """Stop ``server`` in a thread of its own while this (the main) thread, which is where
    Python runs signal handlers, keeps waking to see whether a second signal came."""
    from rpclab.runtime.background import BackgroundServerError

    first = len(signals)
    failure: list[BaseException] = []

    def stop() -> None:
        try:
            server.stop(STOP_TIMEOUT)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    stopper = threading.Thread(target=stop, name="rpclab-serve-stop", daemon=True)
    stopper.start()
    while stopper.is_alive():
        stopper.join(0.1)
        if len(signals) > first:
            print(
                "rpclab serve: a second signal: leaving without waiting for the server to stop",
                file=sys.stderr,
                flush=True,
            )
            return 128 + signals[first]
    if failure:
        if not isinstance(failure[0], BackgroundServerError):
            raise failure[0]
        print(f"rpclab serve {kind}: {failure[0]}", file=sys.stderr, flush=True)
        return 1
    return 0


def _bench(args: argparse.Namespace) -> int:
    from rpclab import bench

    return bench.main(args)


def _epmap(args: argparse.Namespace) -> int:
    from rpclab.byhand.dcerpc import epmap

    return epmap.main(args.target, timeout=args.timeout)


def _nginx(args: argparse.Namespace) -> int:
    from rpclab.grpcstack import nginx

    return nginx.main(args.mode, args.backend, host=args.host, port=args.port)


def _add_epmap_and_nginx(sub: Any) -> None:
    """``rpclab epmap`` (a DCE/RPC endpoint mapper's map) and ``rpclab nginx`` (issue 13)."""
    epmap = sub.add_parser(
        "epmap", help="list what a DCE/RPC (Microsoft RPC) endpoint mapper has registered"
    )
    epmap.add_argument(
        "target", nargs="?", default="127.0.0.1:135", help="HOST[:PORT] (default 127.0.0.1:135)"
    )
    epmap.add_argument(
        "--timeout", type=float, default=5.0, help="seconds the whole lookup may take (default 5)"
    )
    epmap.set_defaults(func=_epmap)

    nginx = sub.add_parser(
        "nginx", help="run the machine's nginx in front of gRPC servers until Ctrl-C"
    )
    nginx.add_argument(
        "mode", choices=["grpc", "stream"], help="grpc: grpc_pass, per call; stream: per connection"
    )
    nginx.add_argument(
        "--backend", action="append", required=True, metavar="H:P", help="a server (repeat)"
    )
    nginx.add_argument("--host", default="127.0.0.1", help="address nginx listens on")
    nginx.add_argument("--port", type=int, default=0, help="port nginx listens on (0: a free one)")
    nginx.set_defaults(func=_nginx)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _add_class_options(serve: argparse.ArgumentParser) -> None:
    from pathlib import Path

    from rpclab.runtime import guard

    cls = serve.add_argument_group("a class server (TEACHING.md, 'Lab classes')")
    cls.add_argument(
        "--token-file",
        metavar="F",
        type=Path,
        help="lines 'NAME TOKEN': every call needs 'authorization: Bearer TOKEN', and NAME is "
        "the learner in the log and the limits (grpc, xmlrpc, rest)",
    )
    cls.add_argument(
        "--tls",
        metavar="DIR",
        type=Path,
        help="grpc over TLS only: make or reuse a class CA and a server certificate in DIR; "
        "learners trust DIR/ca.pem",
    )
    cls.add_argument(
        "--max-connections-per-address",
        metavar="N",
        type=_positive_int,
        default=guard.DEFAULT_CONNECTIONS_PER_ADDRESS,
        help="open connections from one address (socket, thrift, xmlrpc, rest; default "
        "%(default)s)",
    )
    cls.add_argument(
        "--max-calls-per-learner",
        metavar="N",
        type=_positive_int,
        default=8,
        help="calls in progress per learner (grpc, socket; default %(default)s)",
    )
    cls.add_argument(
        "--max-streams-per-learner",
        metavar="N",
        type=_positive_int,
        default=4,
        help="grpc streams open per learner (default %(default)s)",
    )
    cls.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=guard.DEFAULT_MAX_CONNECTIONS,
        help="grpc worker threads; connections in all for the others (default %(default)s)",
    )
    cls.add_argument(
        "--idle-timeout",
        metavar="S",
        type=_positive_seconds,
        default=guard.DEFAULT_IDLE_TIMEOUT,
        help="seconds before an idle connection is closed (default %(default)g)",
    )
    cls.add_argument(
        "--request-timeout",
        metavar="S",
        type=_positive_seconds,
        default=guard.DEFAULT_REQUEST_TIMEOUT,
        help="seconds from a request's first byte to its reply (socket, thrift, xmlrpc, rest; "
        "for socket: "
        "to its last byte, and for a reply to be taken; default %(default)g)",
    )
    cls.add_argument(
        "--at-most-once",
        action="store_true",
        help="socket: answer a repeated request from a table of replies instead of running it "
        "again (each learner's ids apart from every other's)",
    )
    cls.add_argument(
        "--log-calls",
        action="store_true",
        help="grpc: log every call on stderr with who made it (refusals are always logged)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpclab", description="RPC Lab: remote procedure calls from the ground up."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser(
        "doctor", help="check this installation and say how to fix what is wrong"
    )
    doctor.set_defaults(func=_doctor)

    serve = sub.add_parser(
        "serve",
        help="serve the key-value store until Ctrl-C (a class server: see TEACHING.md)",
        description="Serve the key-value store (grpc adds Greeter and RouteGuide) until Ctrl-C "
        "or SIGTERM. Prints 'listening on HOST:PORT' once it accepts.",
    )
    serve.add_argument("kind", choices=list(SERVERS), help="which stack")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    serve.add_argument(
        "--port", type=int, default=0, help="port to bind (default 0: any free port)"
    )
    serve.add_argument(
        "--register",
        action="store_true",
        help="oncrpc only: register with this machine's portmapper (rpcbind, port 111) before "
        "listening, and take the entry out on exit",
    )
    _add_class_options(serve)
    serve.set_defaults(func=_serve)

    bench = sub.add_parser(
        "bench",
        help="measure each transport against a raw socket: rounds on new connections, the server "
        "here and in a process of its own, pinned to one CPU and to two, wall and CPU time",
    )
    bench.add_argument("--quick", action="store_true", help="a short run, under a minute")
    bench.add_argument(
        "--json", metavar="FILE", help="also write every round and the summaries as JSON to FILE"
    )
    bench.add_argument(
        "--transports",
        metavar="A,B",
        help="measure only these, comma-separated (default: all but json-floor and queue, which "
        "are measured only when named)",
    )
    bench.set_defaults(func=_bench)
    _add_epmap_and_nginx(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = int(args.func(args))
    if args.command == "serve" and status > 128:  # a second signal: leave now, run nothing more
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
