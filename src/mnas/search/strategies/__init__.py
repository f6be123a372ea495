"""Search strategies behind one ask/tell interface; see ``base`` for the contract."""

from mnas.search.strategies.base import STRATEGIES, Strategy, make_strategy

__all__ = ["STRATEGIES", "Strategy", "make_strategy"]
