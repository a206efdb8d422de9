"""The key-value store served over other people's RPC systems (XML-RPC, and later Thrift, REST)."""
