"""RPC Lab: remote procedure calls from the ground up.

The package holds everything the notebooks import, layered as Birrell and
Nelson drew an RPC system: the key-value store (`kv`) is the server's work;
`framing` and `jsonrpc` are the runtime's wire; `socketrpc` and the gRPC
servicers are the stubs; `background` runs any server in this process.
"""

__version__ = "0.1.0"
