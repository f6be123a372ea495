"""Search strategies behind one ask/tell interface; see ``base`` for the contract, ``registry`` for names."""

from mnas.search.strategies.base import Strategy
from mnas.search.strategies.registry import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "Strategy", "make_strategy"]
