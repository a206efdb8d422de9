"""JSON-RPC 2.0 over TCP, built by hand: a threaded server and a client stub.

Built by hand in notebook 04 (rpclab.byhand.reference is that notebook's design as one
module); failures, retries and at-most-once in 05; the mistakes no IDL catches, in 06; measured
in 13; moving a big table as JSON in 14; served by ``rpclab serve socket``. Each message is one
frame (rpclab.byhand.framing: a 4-byte big-endian length, then UTF-8 JSON)::

    from rpclab import socketrpc
    server = socketrpc.serve(handlers)              # server stub + runtime, in a background thread
    client = socketrpc.connect(server.address)      # user stub + runtime
    client.subtract(42, 23)                         # -> 19, as if it were local
    client.subtract(minuend=42, subtrahend=23)      # keyword arguments travel as named params
    client.close(); server.stop()

The pieces follow Birrell and Nelson's picture of an RPC system, read in this order:

* ``client``    -- the user stub: ``connect``, ``Client`` (``client.subtract(42, 23)``), ``Batch``;
* ``reader``    -- the client's runtime: one connection shared by many threads, replies
  matched to callers by id, retries (leader/follower: no reader thread);
* ``server``    -- the server's runtime: ``serve``, one thread per connection, the limits
  (frame size, stalled peers, ``workers=N``); the server stub is jsonrpc.Dispatcher;
* ``limits``    -- what one learner may hold of a server a class shares (``limits=Limits(...)``:
  connections, calls at once, idle time), and the error over a limit;
* ``dedup``     -- at-most-once: replies remembered by caller and request id
  (``at_most_once=True``);
* ``transport`` -- what both ends share: the ``on_frame`` hook, kernel socket timeouts;
* ``fastcall``  -- speed work: one caller's call done with the least work; same answers.

Both sides can show every frame: ``on_frame(direction, payload)`` is called with ``"sent"``
or ``"received"`` and the frame's JSON bytes (the wire inspector records these).
"""

from rpclab.byhand.jsonrpc import RemoteError
from rpclab.byhand.socketrpc.client import Batch, Client, connect
from rpclab.byhand.socketrpc.dedup import DEDUP_BYTES, DEDUP_SIZE, DedupTable
from rpclab.byhand.socketrpc.limits import LIMIT_EXCEEDED, Limits
from rpclab.byhand.socketrpc.reader import CallTimeout, ConnectionLost
from rpclab.byhand.socketrpc.server import FRAME_TIMEOUT, Server, serve

__all__ = [
    "serve",
    "connect",
    "Server",
    "Client",
    "Batch",
    "DedupTable",
    "Limits",
    "LIMIT_EXCEEDED",
    "RemoteError",
    "CallTimeout",
    "ConnectionLost",
    "FRAME_TIMEOUT",
    "DEDUP_SIZE",
    "DEDUP_BYTES",
]
