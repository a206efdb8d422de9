"""The key-value store served over other people's RPC systems (XML-RPC, Apache Thrift, REST), and
called by programs that are not Python: curl, the C client rpcgen makes, Node.js clients of gRPC
and of Apache Thrift; with a byte key to Thrift messages and schema evolution tried across versions.

Part III: taught in notebook 12; measured in 13.
"""
