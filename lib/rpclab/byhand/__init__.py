"""Part I (notebooks 02-06): the RPC built by hand over TCP -- framing, JSON-RPC, the socket RPC,
the protobuf wire, and ONC RPC (Sun RPC: XDR and RFC 5531, used again in notebook 12)."""
