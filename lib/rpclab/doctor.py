"""Check that this installation can run every notebook, and say how to fix what cannot.

``rpclab doctor`` and notebook 00 both call :func:`check`. Besides the packages and their
versions it tries what the notebooks do: compile a .proto in the process, serve and read a table
over Arrow Flight, talk over loopback.
"""

from __future__ import annotations

import re
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["Check", "check", "report", "supported_pythons"]

FIX_INSTALL = "run `make install` in the rpclab folder (or `pip install -e .` in your environment)"


@dataclass(frozen=True)
class Check:
    """One thing the doctor looked at."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def supported_pythons() -> str | None:
    """The Pythons RPC Lab supports: pyproject.toml's requires-python (e.g. ">=3.11"), as installed.

    None when rpclab is not installed (the requirements check says so)."""
    try:
        return metadata.metadata("rpclab")["Requires-Python"]
    except metadata.PackageNotFoundError:
        return None


def _python(version: tuple[int, int, int] | None = None) -> Check:
    """This Python (or `version`) is one that requires-python admits."""
    from packaging.specifiers import SpecifierSet

    shown = ".".join(map(str, (version or sys.version_info)[:3]))
    supported = supported_pythons()
    if supported is None or SpecifierSet(supported).contains(shown, prereleases=True):
        return Check("Python", True, shown)
    lowest = supported.removeprefix(">=").strip()
    wanted = f"{lowest} or newer" if re.fullmatch(r"\d+\.\d+", lowest) else supported
    return Check(
        "Python",
        False,
        f"{shown}, but RPC Lab needs Python {wanted}",
        f"install Python {wanted} and run `make lab` with it (`make clean`, then "
        "`make lab PYTHON=python3.12`, say)",
    )


def _requirements() -> list[Check]:
    """Every package rpclab depends on is installed at a version it accepts."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires("rpclab") or []
    except metadata.PackageNotFoundError:
        return [Check("rpclab package", False, "not installed", FIX_INSTALL)]
    results = []
    for line in requires:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra (test, teach): not needed to learn
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            results.append(Check(req.name, False, "missing", FIX_INSTALL))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            results.append(
                Check(req.name, False, f"{version}, but rpclab needs {req.specifier}", FIX_INSTALL)
            )
        else:
            results.append(Check(req.name, True, version))
    return results


def _grpc_in_step() -> Check:
    """grpcio must be at least grpcio-tools: generated code refuses an older runtime."""
    try:
        import grpc  # noqa: F401

        runtime = metadata.version("grpcio")
        tools = metadata.version("grpcio-tools")
    except (ImportError, metadata.PackageNotFoundError) as exc:
        return Check("grpc import", False, str(exc), FIX_INSTALL)
    from packaging.version import Version

    if Version(runtime) < Version(tools):
        return Check(
            "grpc versions",
            False,
            f"grpcio {runtime} is older than grpcio-tools {tools}; generated code will refuse it",
            f"pip install 'grpcio=={tools}'",
        )
    return Check("grpc import", True, f"grpcio {runtime}, grpcio-tools {tools}")


def _protoc() -> Check:
    """Compile a tiny .proto in this process, as rpclab.grpcstack.protos does."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        return Check("protoc in process", False, str(exc), FIX_INSTALL)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "doctor.proto").write_text(
            'syntax = "proto3"; message Ping { string text = 1; }\n'
        )
        include = str(Path(protoc.__file__).parent / "_proto")
        code = protoc.main(
            [
                "protoc",
                f"-I{tmp}",
                f"-I{include}",
                f"--python_out={tmp}",
                str(Path(tmp) / "doctor.proto"),
            ]
        )
        made = (Path(tmp) / "doctor_pb2.py").exists()
    if code == 0 and made:
        return Check("protoc in process", True, "compiled a test .proto")
    return Check("protoc in process", False, f"protoc exited with {code}", FIX_INSTALL)


def _arrow_flight() -> Check:
    """Serve a tiny table over Arrow Flight on 127.0.0.1 and read it back (notebook 14)."""
    try:
        import pyarrow as pa
        import pyarrow.flight as fl
    except ImportError as exc:  # some pyarrow builds (conda's pyarrow-core) leave Flight out
        return Check(
            "Arrow Flight",
            False,
            f"{exc}",
            "install a pyarrow with Flight: `pip install 'pyarrow>=15'` (with conda: "
            "`conda install -c conda-forge pyarrow`, not pyarrow-core)",
        )
    table = pa.table({"n": [1, 2, 3]})

    class Tiny(fl.FlightServerBase):
        def do_get(self, context, ticket):  # type: ignore[no-untyped-def]
            return fl.RecordBatchStream(table)

    server = Tiny("grpc://127.0.0.1:0")
    try:
        with fl.FlightClient(f"grpc://127.0.0.1:{server.port}") as client:
            options = fl.FlightCallOptions(timeout=5)
            got = client.do_get(fl.Ticket(b"tiny"), options).read_all()
    except Exception as exc:
        return Check("Arrow Flight", False, f"{type(exc).__name__}: {exc}", FIX_INSTALL)
    finally:
        server.shutdown()
    if not got.equals(table):
        return Check(
            "Arrow Flight", False, "a table sent over Flight came back different", FIX_INSTALL
        )
    return Check("Arrow Flight", True, f"pyarrow {pa.__version__}: served and read a table")


def _loopback() -> Check:
    """Bind 127.0.0.1 port 0, connect, and send one byte each way."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(2)
                    client.sendall(b"x")
                    conn.sendall(conn.recv(1))
                    echoed = client.recv(1)
    except OSError as exc:
        return Check(
            "loopback",
            False,
            f"{exc}",
            "this machine refuses loopback sockets; check a firewall or sandbox setting",
        )
    if echoed != b"x":
        return Check(
            "loopback",
            False,
            "a byte sent over loopback did not come back",
            "check the network settings",
        )
    return Check("loopback", True, f"bound and echoed on 127.0.0.1:{port}")


def _widgets_extension() -> Check:
    """JupyterLab needs the ipywidgets front-end extension to draw widgets."""
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError as exc:
        return Check("widgets extension", False, str(exc), FIX_INSTALL)
    for folder in jupyter_path("labextensions"):
        if (Path(folder) / "@jupyter-widgets" / "jupyterlab-manager" / "package.json").exists():
            return Check("widgets extension", True, f"found in {folder}")
    return Check(
        "widgets extension",
        False,
        "JupyterLab cannot draw widgets",
        "pip install 'ipywidgets>=8' 'jupyterlab_widgets' in the environment that runs JupyterLab, "
        "then restart JupyterLab",
    )


CHECKS: list[Callable[[], Check | list[Check]]] = [
    _python,
    _requirements,
    _grpc_in_step,
    _protoc,
    _arrow_flight,
    _loopback,
    _widgets_extension,
]


def check() -> list[Check]:
    """Run every check; a check that crashes is reported as a failed check."""
    results: list[Check] = []
    for fn in CHECKS:
        try:
            outcome = fn()
        except Exception as exc:  # a broken install can break a check itself
            outcome = Check(
                fn.__name__.strip("_"), False, f"{type(exc).__name__}: {exc}", FIX_INSTALL
            )
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results


def report(results: list[Check] | None = None, out: Callable[[str], None] = print) -> bool:
    """Print one line per check, and what to do for each failure; return whether all passed."""
    results = check() if results is None else results
    width = max(len(r.name) for r in results)
    for r in results:
        out(f"{'ok ' if r.ok else 'BAD'}  {r.name:<{width}}  {r.detail}")
    bad = [r for r in results if not r.ok]
    if bad:
        out("")
        out(f"{len(bad)} problem(s). What to do:")
        for r in bad:
            out(f"  - {r.name}: {r.fix}")
    else:
        out("")
        out("All good: every notebook in RPC Lab can run here.")
    return not bad
