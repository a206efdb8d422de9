"""Lower layers of lib/rpclab never import higher ones (docs/architecture.md draws the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"

# Layer of every module, bottom up. A new module must be placed here.
LAYERS: dict[int, set[str]] = {
    0: {  # pure building blocks: no servers, no background threads of their own
        "rpclab", "kv", "framing", "jsonrpc", "timing", "latency", "process", "protowire", "retrybudget",
        "wiretap", "tls", "protos", "interceptors", "tracing", "explorer", "doctor", "plots",
    },
    1: {"background"},  # the one way a server runs in the kernel
    2: {  # transports, servicers and network tools, each a server or client over layer 0-1
        "socketrpc", "faults", "balancer", "aio", "aioservices", "grading", "grpcextras",
        "adapters", "adapters.xml_rpc", "adapters.thrift", "adapters.rest", "adapters.node_client",
        "grpcservices", "grpcservices.greeter", "grpcservices.kv_service", "grpcservices.route_guide",
        "grpcservices.route_guide_db",
    },
    3: {"anatomy", "shop", "echo", "bench", "callprofile"},  # systems and measurements built from transports
    4: {"widgets", "widgets.latency_explorer", "widgets.wire_inspector", "widgets.fault_panel",
        "widgets.call_explorer", "cli"},  # what people touch
}
RANK = {name: rank for rank, names in LAYERS.items() for name in names}


def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((LIB / "rpclab").rglob("*.py")):
        parts = path.relative_to(LIB / "rpclab").with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "rpclab"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rpclab":
                if node.module == "rpclab":
                    deps |= {alias.name for alias in node.names}
                else:
                    deps.add(node.module.removeprefix("rpclab."))
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("rpclab.") for a in node.names if a.name.split(".")[0] == "rpclab"}
        graph[name] = deps - {name}
    return graph


def test_every_module_has_a_layer():
    missing = sorted(set(_modules()) - set(RANK))
    assert not missing, f"place these modules in a layer in tests/test_layers.py and docs/architecture.md: {missing}"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} (layer {RANK[module]}) imports {dep} (layer {RANK[dep]})"
        for module, deps in _modules().items() if module in RANK
        for dep in deps if dep in RANK and RANK[dep] > RANK[module]
    ]
    assert not upward, "\n".join(upward)
