"""Notebook 14, big data: one table of readings moved three ways -- protobuf over plain gRPC, JSON
over the hand-built socket RPC, Arrow record batches over Arrow Flight -- and measured side by side.

* ``table``     -- the table (``make_table``), its schema and its size in bytes;
* ``flight``    -- a Flight server in a background thread (DoGet, DoPut, several endpoints);
* ``over_grpc`` -- the table as protobuf messages: repeated fields, or one message per row;
* ``over_json`` -- the table as JSON over rpclab's socket RPC, in slices under its frame limit;
* ``encodings`` -- the same rows as bytes each way, without a network: sizes and times per row;
* ``transfer``  -- the measurement: rounds, a fresh connection each, every round kept;
* ``exercise``  -- the check of notebook 14's exercise (a DoPut that appends, a filtered DoGet).
"""
