"""Part I (notebooks 02-06): the RPC built by hand over TCP -- framing, JSON-RPC, the socket RPC,
the protobuf wire."""
