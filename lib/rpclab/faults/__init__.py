"""Everything that breaks calls on purpose: the TCP fault proxy and the gRPC Flaky interceptor.

* ``proxy`` -- a TCP proxy that delays, drops, duplicates or resets traffic (notebooks 01, 05, 13);
* ``flaky`` -- a gRPC server interceptor that fails attempts (notebooks 09, 15).

The proxy's API is re-exported here: ``from rpclab import faults; faults.serve_proxy(...)``.
"""

from rpclab.faults.proxy import *  # noqa: F403
from rpclab.faults.proxy import __all__  # noqa: F401
