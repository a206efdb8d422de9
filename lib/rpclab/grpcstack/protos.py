"""Compile a .proto file inside this process and import the code protoc generates.

Taught in notebook 06 (code generation in the notebook); used in 07, 10 (compiling
reflected .proto text), 12, 14 and 15.

``load("kv")`` runs protoc (from grpcio-tools) on ``protos/kv.proto``, writes
``kv_pb2.py`` (the messages) and ``kv_pb2_grpc.py`` (the stub and servicer
classes) into a cache folder, imports both and returns them::

    kv_pb2, kv_pb2_grpc = protos.load("kv")
    kv_pb2.GetRequest(key="colour")

Nothing generated is committed to the repository: the .proto file is the one
source. ``describe(text)`` compiles .proto text into its descriptor (what protoc understood)
without loading anything, and ``load_descriptor(file_proto)`` loads code generated from a
descriptor built in Python: assignment A4 checks a learner's .proto with the first and serves
the contract's own copy with the second, so that a .proto that does not compile costs its own
points only. ``generate("kv", "generated")`` writes protoc's files (with ``.pyi``
type stubs) to a folder of your choice, to read them.

Protobuf keeps one descriptor pool per process, and the pool refuses a second,
different file under a name it already holds. So a .proto edited after it was
loaded cannot be loaded again in the same process: ``load`` says so with a
:class:`ProtoError` (restart the kernel), instead of protobuf's ``TypeError``.

About 460 lines: running protoc, caching what it generates and importing it as a package of
its own (the generated modules import each other by absolute names) are one job.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Union

__all__ = [
    "ProtoError",
    "load",
    "generate",
    "describe",
    "load_descriptor",
    "protos_dir",
    "find",
    "available",
    "ENV_VAR",
]

ENV_VAR = "RPCLAB_PROTOS"  # a folder of .proto files to use instead of the repository's protos/

StrPath = Union[str, "os.PathLike[str]"]


class ProtoError(Exception):
    """A .proto file could not be found, compiled or imported."""


@dataclass(frozen=True)
class _Loaded:
    digest: str
    path: Path
    pb2: ModuleType
    pb2_grpc: ModuleType


_loaded: dict[
    str, _Loaded
] = {}  # file name as protobuf's pool knows it ("kv.proto") -> its modules
_lock = threading.RLock()


# --------------------------------------------------------------------------- finding .proto files


_SOURCE_PROTOS = Path(__file__).resolve().parents[3] / "protos"  # the repository's, beside lib/


def protos_dir() -> Path:
    """The folder that names are looked up in.

    $RPCLAB_PROTOS if set; else the repository's protos/ (an editable
    install, as ``make`` does); else the copy an installed package carries,
    in ``<sys.prefix>/share/rpclab/protos``.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    if _SOURCE_PROTOS.is_dir():
        return _SOURCE_PROTOS
    installed = Path(sys.prefix, "share", "rpclab", "protos")
    return installed if installed.is_dir() else _SOURCE_PROTOS


def available() -> list[str]:
    """Names of the .proto files in :func:`protos_dir`, sorted (``["helloworld", "kv", ...]``)."""
    folder = protos_dir()
    return sorted(p.stem for p in folder.glob("*.proto")) if folder.is_dir() else []


def find(name_or_path: StrPath) -> Path:
    """The .proto file meant by a name (``"kv"``, ``"kv.proto"``) or a path (``"tmp/kv.proto"``)."""
    if isinstance(name_or_path, (str, os.PathLike)):
        text = os.fspath(name_or_path)
    else:
        raise TypeError(f"expected a proto name or path, not {type(name_or_path).__name__}")
    if not text:
        raise ProtoError("expected a proto name such as 'kv' or a path to a .proto file, got ''")
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    if (
        isinstance(name_or_path, os.PathLike)
        or any(sep in text for sep in separators)
        or text.startswith("~")
    ):
        path = Path(text).expanduser().resolve()
    else:
        folder = protos_dir()
        path = folder / (text if text.endswith(".proto") else f"{text}.proto")
    if path.suffix != ".proto":
        raise ProtoError(f"{path} is not a .proto file")
    if not path.is_file():
        names = ", ".join(available()) or "none"
        raise ProtoError(
            f"no such proto file: {path} (protos in {protos_dir()}: {names}; "
            f"set {ENV_VAR} to use another folder)"
        )
    return path


# --------------------------------------------------------------------------- running protoc


def _protoc_include() -> str:
    """The folder of the well-known types (google/protobuf/*.proto) shipped with grpcio-tools."""
    import grpc_tools

    return str(Path(grpc_tools.__file__).resolve().parent / "_proto")


@contextlib.contextmanager
def _stderr_captured() -> Iterator[IO[bytes]]:
    """Send file descriptor 2 to a temporary file: protoc (C++) writes its errors there, not to
    sys.stderr."""
    with tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2: run without capturing
            yield sink
            return
        try:
            os.dup2(sink.fileno(), 2)
            yield sink
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _protoc(args: list[str]) -> tuple[int, str]:
    """Run protoc in this process; (exit status, what it wrote to stderr)."""
    from grpc_tools import protoc

    with _lock, _stderr_captured() as sink:
        code = protoc.main(["grpc_tools.protoc", *args])
        sink.seek(0)
        return code, sink.read().decode("utf-8", "replace").strip()


def _run_protoc(proto: Path, out_dir: Path, shown_as: Path | None = None) -> None:
    """Compile ``proto`` into ``out_dir`` (messages, stubs, type stubs); ProtoError with protoc's
    message.

    ``shown_as``: the path to name in messages, when ``proto`` is a working copy of it.
    """
    out = str(out_dir)
    folders = dict.fromkeys([proto.parent, *([shown_as.parent] if shown_as is not None else [])])
    args = [
        *[f"-I{folder}" for folder in folders],  # the file's own folder first, then the original's
        f"-I{_protoc_include()}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(proto),
    ]
    code, message = _protoc(args)
    if shown_as is not None:
        message = message.replace(str(proto), str(shown_as))
    if code != 0:
        detail = message or f"protoc exited with status {code}"
        raise ProtoError(f"protoc could not compile {proto.name}:\n{detail}")
    if message:
        warnings.warn(f"protoc, compiling {(shown_as or proto).name}: {message}", stacklevel=2)


def generate(name_or_path: StrPath, out_dir: StrPath) -> list[Path]:
    """Write the files protoc generates for a .proto into ``out_dir``; return their paths, sorted.

    The files are protoc's output, unchanged: ``<name>_pb2.py`` (messages),
    ``<name>_pb2.pyi`` (their types, easier to read) and ``<name>_pb2_grpc.py``
    (the client stub, the servicer base class and ``add_..._to_server``).
    """
    proto = find(name_or_path)
    target = Path(out_dir).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rpclab-protoc-") as tmp:
        _run_protoc(proto, Path(tmp))
        written = []
        for made in sorted(Path(tmp).iterdir()):
            destination = target / made.name
            shutil.copyfile(made, destination)
            written.append(destination)
    return written


# --------------------------------------------------------------------------- loading


def load(name_or_path: StrPath) -> tuple[ModuleType, ModuleType]:
    """Compile a .proto and import its generated code: ``(pb2, pb2_grpc)``.

    ``name_or_path`` is a name in :func:`protos_dir` (``"kv"`` or
    ``"kv.proto"``) or a path to a .proto file. Loading the same file again
    returns the same module objects. The generated code is cached on disk,
    keyed by the file's content and the grpcio-tools version.
    """
    proto = find(name_or_path)
    source = proto.read_bytes()
    digest = _digest(proto.name, source)
    with _lock:
        earlier = _loaded.get(proto.name)
        if earlier is not None:
            if earlier.digest == digest:
                return earlier.pb2, earlier.pb2_grpc
            if earlier.path == proto:
                raise ProtoError(
                    f"{proto.name} changed since it was loaded in this kernel; protobuf's "
                    "descriptor pool "
                    "refuses a second file of the same name: restart the kernel to load the new "
                    "version"
                )
            raise ProtoError(
                f"a different {proto.name} (from {earlier.path}) was loaded in this kernel; "
                "protobuf's "
                "descriptor pool refuses a second file of the same name: restart the kernel to "
                f"load {proto}"
            )
        folder = _generated_folder(proto, source, digest)
        pb2, pb2_grpc = _import_generated(proto, folder, digest)
        _loaded[proto.name] = _Loaded(digest, proto, pb2, pb2_grpc)
        return pb2, pb2_grpc


def _digest(file_name: str, source: bytes) -> str:
    from grpc_tools import grpc_version

    h = hashlib.sha256()
    for part in (file_name.encode(), b"\0", grpc_version.VERSION.encode(), b"\0", source):
        h.update(part)
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    """A folder of this user's in the temporary directory; a private fresh one if that is unsafe."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    root = Path(tempfile.gettempdir()) / f"rpclab-protos-{uid if uid is not None else 'user'}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.stat()
        if uid is None or (info.st_uid == uid and not info.st_mode & 0o022):
            return root
    except OSError:
        pass
    # Someone else owns it, or others may write to it: code imported from there could be theirs.
    return Path(tempfile.mkdtemp(prefix="rpclab-protos-"))


def _generated_folder(proto: Path, source: bytes, digest: str) -> Path:
    """The cache folder holding the generated code for this content, made if missing."""
    root = _cache_root()
    folder = root / f"{proto.stem}-{digest}"
    if (folder / "__init__.py").is_file():
        return folder
    work = Path(tempfile.mkdtemp(prefix=f".{proto.stem}-", dir=root))
    try:
        (work / proto.name).write_bytes(source)  # compile the bytes that were hashed
        _run_protoc(work / proto.name, work, shown_as=proto)
        _make_imports_relative(work)
        (work / "__init__.py").write_text(f'"""Code generated by protoc from {proto.name}."""\n')
        try:
            work.rename(folder)  # atomic: another process may have made it meanwhile
        except OSError:
            if not (folder / "__init__.py").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


_PB2_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def _make_imports_relative(folder: Path) -> None:
    """Make ``import kv_pb2 as ...`` in kv_pb2_grpc.py import the sibling module of the same
    package."""
    local = {p.stem for p in folder.glob("*_pb2.py")}
    for path in folder.glob("*_pb2_grpc.py"):
        text = path.read_text()
        fixed = _PB2_IMPORT.sub(
            lambda m: f"from . import {m[1]} as {m[2]}" if m[1] in local else m[0], text
        )
        path.write_text(fixed)


def _import_generated(proto: Path, folder: Path, digest: str) -> tuple[ModuleType, ModuleType]:
    """Import the folder as a package of its own (unique name), then its _pb2 and _pb2_grpc
    modules."""
    stem = re.sub(r"\W", "_", proto.stem)
    package = f"_rpclab_protos.{stem}_{digest}"
    try:
        pb2_file = next(folder.glob("*_pb2.py"))
        grpc_file = next(folder.glob("*_pb2_grpc.py"))
    except StopIteration:
        raise ProtoError(f"protoc made no Python modules for {proto.name} in {folder}") from None
    _ensure_package("_rpclab_protos", None)
    _ensure_package(package, folder)
    try:
        pb2 = importlib.import_module(f"{package}.{pb2_file.stem}")
        pb2_grpc = importlib.import_module(f"{package}.{grpc_file.stem}")
    except TypeError as exc:  # protobuf's pool refused the file
        for name in [n for n in sys.modules if n.startswith(package + ".")]:
            del sys.modules[name]
        raise ProtoError(
            f"cannot load {proto.name}: protobuf's descriptor pool already holds a different "
            f"definition ({exc}). Another file of that name, or one declaring the same package "
            f"and messages, was loaded in this kernel: restart the kernel, or rename the package."
        ) from exc
    except ModuleNotFoundError as exc:
        raise ProtoError(
            f"cannot load {proto.name}: its generated code imports {exc.name!r}. "
            "rpclab.grpcstack.protos loads "
            "one file at a time: imports of google/protobuf/*.proto work, imports of other protos "
            "do not."
        ) from exc
    return pb2, pb2_grpc


def _ensure_package(name: str, folder: Path | None) -> None:
    """Register an importable package ``name`` whose modules live in ``folder`` (None: an empty
    namespace)."""
    if name in sys.modules:
        return
    if folder is None:
        module = ModuleType(name, "Packages of code generated by rpclab.grpcstack.protos.")
        module.__path__ = []
    else:
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ProtoError(f"cannot import generated code from {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return
    sys.modules[name] = module


# --------------------------------------------------------------------------- descriptors

MAX_PROTO_TEXT = 1_000_000  # characters of .proto text describe() accepts


def describe(text: str, file_name: str = "file.proto"):
    """Compile .proto text into its ``FileDescriptorProto`` without loading it into this process.

    Protobuf's descriptor pool holds one definition per name, so a learner's draft cannot be
    loaded beside the real thing; its descriptor can be read instead (messages, fields, numbers,
    types, services, streaming). ProtoError carries protoc's message when the text does not
    compile.
    """
    from google.protobuf import descriptor_pb2

    if not isinstance(text, str):
        raise TypeError(f"expected the .proto text as a str, not {type(text).__name__}")
    if len(text) > MAX_PROTO_TEXT:
        raise ProtoError(f"{len(text)} characters of .proto text: more than {MAX_PROTO_TEXT}")
    if not re.fullmatch(r"\w+\.proto", file_name):
        raise ProtoError(f"file_name must look like name.proto, not {file_name!r}")
    with tempfile.TemporaryDirectory(prefix="rpclab-describe-") as tmp:
        (Path(tmp) / file_name).write_text(text)
        out = Path(tmp) / "descriptor.pb"
        code, message = _protoc(
            [f"-I{tmp}", f"-I{_protoc_include()}", f"--descriptor_set_out={out}", file_name]
        )
        if code != 0:
            detail = (message or f"protoc exited with status {code}").replace(f"{tmp}/", "")
            raise ProtoError(f"protoc could not compile {file_name}:\n{detail}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return next(f for f in files if f.name == file_name)


def load_descriptor(file_proto) -> tuple[ModuleType, ModuleType]:
    """Generate and import the code for a ``FileDescriptorProto``: ``(pb2, pb2_grpc)``.

    The same as :func:`load` for a .proto file, for a descriptor built in Python (protoc reads it
    with ``--descriptor_set_in``). Loading the same descriptor again returns the same modules.
    """
    from google.protobuf import descriptor_pb2

    if not isinstance(file_proto, descriptor_pb2.FileDescriptorProto):
        raise TypeError(f"expected a FileDescriptorProto, not {type(file_proto).__name__}")
    name = file_proto.name
    if not re.fullmatch(r"\w+\.proto", name):
        raise ProtoError(f"the descriptor's name must look like name.proto, not {name!r}")
    data = descriptor_pb2.FileDescriptorSet(file=[file_proto]).SerializeToString(deterministic=True)
    digest = _digest(name, data)
    with _lock:
        earlier = _loaded.get(name)
        if earlier is not None:
            if earlier.digest == digest:
                return earlier.pb2, earlier.pb2_grpc
            raise ProtoError(
                f"a different {name} was loaded in this kernel; protobuf's descriptor pool "
                "refuses a second file of the same name: restart the kernel"
            )
        stem = Path(name).stem
        folder = _cache_root() / f"{stem}-{digest}"
        if not (folder / "__init__.py").is_file():
            work = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=_cache_root()))
            try:
                (work / "descriptor.pb").write_bytes(data)
                code, message = _protoc(
                    [
                        f"--descriptor_set_in={work / 'descriptor.pb'}",
                        f"--python_out={work}",
                        f"--grpc_python_out={work}",
                        name,
                    ]
                )
                if code != 0:
                    raise ProtoError(f"protoc could not generate code for {name}:\n{message}")
                _make_imports_relative(work)
                (work / "__init__.py").write_text(f'"""Code generated by protoc from {name}."""\n')
                try:
                    work.rename(folder)
                except OSError:
                    if not (folder / "__init__.py").is_file():
                        raise
            finally:
                shutil.rmtree(work, ignore_errors=True)
        pb2, pb2_grpc = _import_generated(Path(name), folder, digest)
        _loaded[name] = _Loaded(digest, Path(name), pb2, pb2_grpc)
        return pb2, pb2_grpc
