"""The measurement harness behind notebook 13 and `rpclab bench`: echo servers on every stack,
timed the same way.

Notebook 05 uses it for a short run (raw sockets against the socket RPC); 13 for all of them.

* ``harness`` -- settings, rounds, results, tables, the command line (re-exported here);
* ``echo``    -- an echo server and client for each transport;
* ``profile`` -- where the time of one call goes (cProfile by category, a thread hand-off).
"""

from rpclab.bench.harness import *  # noqa: F403 -- the harness's public API is this package's
from rpclab.bench.harness import __all__  # noqa: F401
