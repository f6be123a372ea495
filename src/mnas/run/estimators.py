"""Where a trial's accuracy comes from (``proxy.estimator``): a protocol and a registry of sources.

``None`` (the default) or ``train``: the proxy training of each trial (``mnas.train``). ``supernet:DIR``: the
trial's sub-network of a trained supernet, its BatchNorm statistics recalibrated (``mnas.supernet``), seconds
a candidate. A spec is ``NAME`` or ``NAME:ARG``; plugins add entries through the ``mnas.estimators``
entry-point group or ``ESTIMATORS.register``. The registry imports none of its entries.
"""

from __future__ import annotations

from typing import Any, Protocol

from mnas import MnasError
from mnas.registry import Registry
from mnas.train import TrainTask


class Estimator(Protocol):
    """Made from the spec's ARG (``""`` when there is none)."""

    def check(self, space: Any) -> None:
        """Before the first trial: refuse, in one line, what would fail every trial (a missing file, a
        supernet of another space)."""

    def evaluate(self, arch_text: str, proxy: TrainTask, seed: int) -> dict[str, Any]:
        """A result shaped like ``TrainResult.to_dict()`` (at least ``status`` and ``top1``)."""


class ProxyTraining:
    """The default: train the trial's proxy model (``mnas.train.train_architecture``)."""

    def __init__(self, arg: str = "") -> None:
        if arg:
            raise MnasError(f"proxy.estimator train takes no argument, got train:{arg}")

    def check(self, space: Any) -> None:
        pass

    def evaluate(self, arch_text: str, proxy: TrainTask, seed: int) -> dict[str, Any]:
        from mnas.space import Architecture
        from mnas.train import train_architecture

        return train_architecture(Architecture.parse(arch_text), proxy, seed).to_dict()


ESTIMATORS: Registry = Registry("accuracy estimator", "mnas.estimators", {
    "train": "mnas.run.estimators:ProxyTraining",
    "supernet": "mnas.supernet.evaluate:SupernetEstimator",
}, hint="Write NAME or NAME:ARG, e.g. supernet:DIR (mnas supernet train SPACE --dir DIR).")

_made: dict[str, Estimator] = {}


def estimator(spec: str | None) -> Estimator:
    """The estimator of a spec, made once per process."""
    spec = spec or "train"
    if spec not in _made:
        name, _, arg = spec.partition(":")
        _made[spec] = ESTIMATORS.get(name.strip())(arg.strip())
    return _made[spec]
