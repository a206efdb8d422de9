"""Lower layers of lib/rpclab never import higher ones (docs/architecture.md draws the layers).

Layers rank packages, not modules: a module may import anything in its own package or in a
lower-ranked one. A new package or top-level module must be ranked here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"

# Rank of every package (and top-level module), bottom up.
LAYERS: dict[int, set[str]] = {
    0: {
        "rpclab",
        "kv",
        "checks",
        "tokens",
    },  # the running example and plain helpers: no servers, no threads of their own
    1: {"runtime"},  # how a server lives in the kernel: background threads, the asyncio loop
    2: {"byhand"},  # Part I: the RPC built by hand
    3: {"grpcstack"},  # Part II: gRPC
    4: {"adapters"},  # Part III: the same store over other stacks
    5: {"faults"},  # breaking calls on purpose, over any stack
    6: {"lab"},  # instruments that watch and time any transport
    7: {
        "bench",
        "capstone",
        "bigdata",
        "realtime",
        "grading",
        "classroom",
        "classserver",
        "exercises",
        "doctor",
    },  # measurements and systems built from the transports
    8: {
        "widgets",
        "cli",
        "socketrpc",
        "background",
    },  # what people touch; the short names for notebooks
}
RANK = {name: rank for rank, names in LAYERS.items() for name in names}


def _unit(module: str) -> str:
    """The ranked unit of a module: its package (``byhand.framing`` -> ``byhand``), or itself."""
    return module.split(".")[0]


def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((LIB / "rpclab").rglob("*.py")):
        parts = path.relative_to(LIB / "rpclab").with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "rpclab"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] == "rpclab"
            ):
                if node.module == "rpclab":
                    deps |= {alias.name for alias in node.names}
                else:
                    deps.add(node.module.removeprefix("rpclab."))
            elif isinstance(node, ast.Import):
                deps |= {
                    a.name.removeprefix("rpclab.")
                    for a in node.names
                    if a.name.split(".")[0] == "rpclab"
                }
        graph[name] = deps - {name}
    return graph


def test_every_package_has_a_layer():
    missing = sorted({_unit(m) for m in _modules()} - set(RANK))
    assert not missing, f"rank these in tests/test_layers.py and docs/architecture.md: {missing}"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} (layer {RANK[_unit(module)]}) imports {dep} (layer {RANK[_unit(dep)]})"
        for module, deps in _modules().items()
        if _unit(module) in RANK
        for dep in deps
        if _unit(dep) in RANK and RANK[_unit(dep)] > RANK[_unit(module)]
    ]
    assert not upward, "\n".join(upward)


def test_the_library_never_imports_the_short_names():
    """``rpclab.socketrpc`` and ``rpclab.background`` are for notebooks and outside code only."""
    users = [
        f"{module} imports rpclab.{dep}"
        for module, deps in _modules().items()
        if module not in ("socketrpc", "background")
        for dep in deps
        if dep in ("socketrpc", "background")
    ]
    assert not users, "\n".join(users)


def test_the_short_names_are_the_modules_themselves():
    from rpclab import background, socketrpc
    from rpclab.byhand import socketrpc as real_socketrpc
    from rpclab.runtime import background as real_background

    assert socketrpc is real_socketrpc and background is real_background
    import rpclab.background
    import rpclab.socketrpc

    assert rpclab.socketrpc is real_socketrpc and rpclab.background is real_background


LONG_MODULE = 420  # lines; "no module over about 400 lines without a reason written at its top"


def test_a_long_module_says_at_its_top_why_it_is_long():
    unexplained = []
    for path in sorted((LIB / "rpclab").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines <= LONG_MODULE:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        said = re.search(r"about ([\d,]+) lines", docstring, re.IGNORECASE)
        if not said or abs(int(said.group(1).replace(",", "")) - lines) > 0.25 * lines:
            unexplained.append(f"{path.relative_to(LIB)} ({lines} lines)")
    assert not unexplained, (
        f"modules over {LONG_MODULE} lines whose docstring does not say 'About N lines: why' "
        f"(N within 25%): {', '.join(unexplained)}"
    )
