"""The measurement harness behind notebook 13 and `rpclab bench`: echo servers on every stack,
timed the same way, in rounds, in stated arrangements.

Notebook 05 uses it for a short run (raw sockets against the socket RPC); 13 for all of them.

* ``harness``        -- settings, the transports, the timing loops, the run (re-exported here);
* ``results``        -- rounds, results and summaries (re-exported here through harness);
* ``report``         -- tables, verdicts, JSON and the command (re-exported here);
* ``echo``           -- an echo server and client for each transport;
* ``placement``      -- client and server pinned to one CPU, two, or left free;
* ``server_process`` -- the echo servers in a child process of their own;
* ``load``           -- open-loop and closed-loop load: latency against offered rate;
* ``profile``        -- where the time of one call goes (cProfile by category, a thread hand-off).
"""

from rpclab.bench.harness import *  # noqa: F403 -- the harness's public API is this package's
from rpclab.bench.harness import __all__ as _harness_all
from rpclab.bench.report import *  # noqa: F403
from rpclab.bench.report import __all__ as _report_all

__all__ = [*_harness_all, *_report_all]
