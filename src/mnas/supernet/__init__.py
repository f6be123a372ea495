"""A weight-sharing supernet over a MnasNet-style space (issue 29): train once with the sandwich rule, then
read each candidate's accuracy from its inherited weights in seconds (``mnas supernet``)."""

from __future__ import annotations

from mnas.supernet.net import SuperNet, sandwich, space_identity

__all__ = ["SuperNet", "sandwich", "space_identity"]
