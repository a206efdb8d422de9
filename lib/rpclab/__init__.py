"""RPC Lab: remote procedure calls from the ground up.

The library is laid out as the course is, one package per part (docs/architecture.md has the map):

* ``kv``        -- the running example, a key-value store every transport serves (01-15);
* ``runtime``   -- how servers live in a kernel: background threads, the asyncio loop;
* ``byhand``    -- Part I (02-06): framing, JSON-RPC, the socket RPC, the protobuf wire, by hand;
* ``grpcstack`` -- Part II (06-11): gRPC, one concept per module;
* ``adapters``  -- Part III (12): the same store over XML-RPC, Thrift, REST, and a Node.js client;
* ``faults``    -- everything that breaks calls on purpose, in one seeded vocabulary;
* ``lab``       -- instruments that watch and time any transport;
* ``bench``     -- the measurement harness (13);
* ``capstone``  -- notebook 15's services;
* ``widgets``, ``cli``, ``doctor``, ``grading`` -- what people touch;
* ``checks``    -- one way to check arguments.

``from rpclab import socketrpc`` and ``from rpclab import background`` keep working: they are
short names for ``rpclab.byhand.socketrpc`` and ``rpclab.runtime.background``.
"""

__version__ = "0.1.0"
