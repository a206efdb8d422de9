"""The key-value store served over other people's RPC systems: XML-RPC, Apache Thrift, REST, and a
Node.js gRPC client.

Part III: taught in notebook 12; measured in 13.
"""
