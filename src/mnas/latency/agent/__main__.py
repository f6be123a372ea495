"""``python -m mnas.latency.agent``: run the device agent (server.py's ``main``)."""

import sys

from mnas.latency.agent.server import main

sys.exit(main())
