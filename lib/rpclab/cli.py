"""The ``rpclab`` command: ``doctor``, ``serve socket|grpc|oncrpc`` and ``bench``.

Not imported by notebooks: notebook 00 and README show the commands; 13 points to ``rpclab bench``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]


def _doctor(args: argparse.Namespace) -> int:
    from rpclab import doctor

    return 0 if doctor.report() else 1


def _start_socket(host: str, port: int) -> Any:
    from rpclab import kv
    from rpclab.byhand import socketrpc

    return socketrpc.serve(kv.KVStore(), host=host, port=port)


def _start_grpc(host: str, port: int) -> Any:
    from rpclab.grpcstack import services as grpcservices

    return grpcservices.serve_all(host=host, port=port)


def _start_oncrpc(host: str, port: int, register: bool = False) -> Any:
    from rpclab import kv
    from rpclab.byhand import oncrpc

    return oncrpc.serve(kv.KVStore(), host=host, port=port, register=register)


SERVERS: dict[str, Callable[[str, int], Any]] = {
    "socket": _start_socket,
    "grpc": _start_grpc,
    "oncrpc": _start_oncrpc,
}


def _starter(args: argparse.Namespace) -> Callable[[str, int], Any]:
    """The start function for ``args.kind``, given the options only that kind takes."""
    if getattr(args, "register", False):
        if args.kind != "oncrpc":
            raise ValueError("--register is for oncrpc only")
        return lambda host, port: _start_oncrpc(host, port, register=True)
    return SERVERS[args.kind]


def _serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly and exit 0."""
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server = _starter(args)(args.host, args.port)
        except Exception as exc:
            print(f"rpclab serve {args.kind}: {exc}", file=sys.stderr)
            return 1
        host, port = server.address
        print(f"listening on {host}:{port}", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"warning: serving on {args.host}: other machines can reach this server; "
                "it has no authentication.",
                file=sys.stderr,
                flush=True,
            )
        while not done.wait(0.5):
            pass
        server.stop()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpclab", description="RPC Lab: remote procedure calls from the ground up."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser(
        "doctor", help="check this installation and say how to fix what is wrong"
    )
    doctor.set_defaults(func=_doctor)

    serve = sub.add_parser("serve", help="serve the key-value store until Ctrl-C")
    serve.add_argument("kind", choices=sorted(SERVERS), help="which transport")
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
    serve.set_defaults(func=_serve)

    bench = sub.add_parser("bench", help="measure latency and throughput of each transport")
    bench.add_argument(
        "--quick", action="store_true", help="a small, bounded run (seconds, not minutes)"
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    bench.add_argument(
        "--transports", metavar="A,B", help="measure only these, comma-separated (default: all)"
    )
    bench.set_defaults(func=_bench)
    _add_epmap_and_nginx(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
