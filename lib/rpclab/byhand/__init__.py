"""Part I (notebooks 02-06): the RPC built by hand over TCP.

* ``framing``   -- frames on a byte stream, record marking, a whole-frame deadline (02);
* ``framing_checks``, ``marshalling_checks`` -- the checks of the exercises of 02 and 03;
* ``call_checks`` -- the checks of the exercises of 04 and 05 (stub, deadline, retries, table);
* ``reference`` -- notebook 04's design as one module: dispatcher, server, stub (04);
* ``jsonrpc``   -- the JSON-RPC 2.0 messages, bounded codec and dispatcher (04-05);
* ``socketrpc`` -- the same design finished: limits, timeouts, retries, at-most-once (04-06);
* ``protowire`` -- the protobuf wire format, by hand (06);
* ``oncrpc``    -- Sun's RPC: XDR (RFC 4506), RFC 5531's messages, a server, a client (06, 12);
* ``dcerpc``    -- Microsoft RPC: a bind and ``ept_lookup`` by hand (06).

In ``jsonrpc`` and ``socketrpc`` the design reads first; the speed work stands apart in
``jsonrpc/fastpath.py`` and ``socketrpc/fastcall.py``.
"""
