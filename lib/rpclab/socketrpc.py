"""Short name for rpclab.byhand.socketrpc: ``from rpclab import socketrpc`` keeps working.

Notebooks 04-06 and outside code import it by this name.

The module itself lives in Part I's package; this name is the same module object, not a copy.
"""

import sys

from rpclab.byhand import socketrpc as _module

sys.modules[__name__] = _module
