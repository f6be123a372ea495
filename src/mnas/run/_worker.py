"""``python -m mnas.run._worker PARENT_PID``: a worker process of the local executor (local.py)."""

import sys

from mnas.run.local import _serve

_serve(int(sys.argv[1]))
