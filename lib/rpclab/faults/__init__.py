"""Everything that breaks calls on purpose, in one vocabulary: ``Faults``, named and seeded.

* ``vocabulary`` -- the Faults description, its names, and the seed rule (re-exported here);
* ``proxy``      -- a TCP proxy that delays, drops, duplicates or resets traffic, or only taps
  it (notebooks 01, 05, 07, 08, 10, 12, 13, 15; assignment A3), re-exported here; ``pumps``
  carries its connections;
* ``flaky``      -- a gRPC server interceptor that fails attempts (notebooks 09, 15).

::

    from rpclab import faults
    lossy = faults.Faults(drop=0.2, seed=2024)
    proxy = faults.serve_proxy("lossy", server, lossy)         # the socket RPC, 05
    flaky = faults.Flaky(faults.Faults(fail=0.3, seed=9))      # a gRPC server, 09
    shop.fail("orders", faults.Faults(fail=0.05, seed=6))      # the capstone, 15
"""

from typing import Any

from rpclab.faults.proxy import *  # noqa: F403
from rpclab.faults.proxy import __all__ as _proxy_names
from rpclab.faults.vocabulary import *  # noqa: F403
from rpclab.faults.vocabulary import __all__ as _vocabulary_names

__all__ = [*_vocabulary_names, *_proxy_names, "Flaky"]  # noqa: F405 (Flaky: __getattr__ below)


def __getattr__(name: str) -> Any:
    """``faults.Flaky``, imported when first asked for: it needs grpc, which the proxy does not."""
    if name == "Flaky":
        from rpclab.faults.flaky import Flaky

        return Flaky
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
