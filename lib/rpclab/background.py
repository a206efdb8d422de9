"""Short name for rpclab.runtime.background: ``from rpclab import background`` keeps working.

Every notebook (00-15) imports it by this name.

The module itself lives in the runtime package; this name is the same module object, not a copy.
"""

import sys

from rpclab.runtime import background as _module

sys.modules[__name__] = _module
