"""Optional TensorBoard scalars (``tensorboard: true`` in a config): per finished trial, by trial id, the reward,
accuracy, latency and the best reward so far, and the strategy's policy entropy where it has one, written to
``EXPERIMENT/tensorboard`` with torch's ``SummaryWriter``. ``tensorboard --logdir EXPERIMENT/tensorboard`` shows them.

Like the Optuna mirror it is a view, not the record: a write that fails is logged and skipped; a trial that
finished during a kill -9 may be missing from it (the store has it).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.store import Trial, TrialStatus

log = logging.getLogger(__name__)

LOG_DIR = "tensorboard"
INSTALL = "pip install 'mnas[tensorboard]'"


class ScalarLog:
    def __init__(self, directory: str | Path) -> None:
        try:
            import tensorboard  # noqa: F401  (SummaryWriter needs it, and says so less clearly)
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MnasError(f"tensorboard: true needs the tensorboard package: {INSTALL}, or set tensorboard: "
                            "false") from None
        self.writer = SummaryWriter(log_dir=str(Path(directory) / LOG_DIR))
        self.best = -math.inf

    def add(self, trial: Trial, diagnostics: dict[str, Any] | None = None) -> None:
        try:
            if trial.status is TrialStatus.COMPLETED and trial.reward is not None:
                self.best = max(self.best, trial.reward)
                for name, value in (("reward", trial.reward), ("best_reward", self.best),
                                    ("accuracy", trial.accuracy), ("latency_ms", trial.latency_ms)):
                    if value is not None:
                        self.writer.add_scalar(f"trial/{name}", value, trial.id)
            entropy = (diagnostics or {}).get("entropy")
            if isinstance(entropy, (int, float)):
                self.writer.add_scalar("strategy/entropy", entropy, trial.id)
            self.writer.flush()
        except Exception as e:  # noqa: BLE001 - a view must never stop the search
            log.warning("tensorboard: trial %d not written (%s)", trial.id, e)

    def close(self) -> None:
        self.writer.close()
