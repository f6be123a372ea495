"""Optional TensorBoard scalars (``tensorboard: true`` in a config): per finished trial, by trial id, the reward,
accuracy, latency and the best reward so far, and the strategy's policy entropy where it has one, written to
``EXPERIMENT/tensorboard`` with torch's ``SummaryWriter``. ``tensorboard --logdir EXPERIMENT/tensorboard`` shows them.

Like the Optuna mirror it is a view, not the record: a write that fails is logged and skipped. A trial the
store has and the log lacks (a kill -9 between the store's commit and the log's write) is written on the next
start (``sync``), read back from the event files; its entropy, a value of the strategy at that moment, is not.
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


def require() -> Any:
    """torch's ``SummaryWriter``, or the one line a search refuses with (``preflight``: a dry run too)."""
    try:
        import tensorboard  # noqa: F401  (SummaryWriter needs it, and says so less clearly)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MnasError(f"tensorboard: true needs the tensorboard package: {INSTALL}, or set tensorboard: "
                        "false") from None
    return SummaryWriter


class ScalarLog:
    def __init__(self, directory: str | Path) -> None:
        SummaryWriter = require()
        self.log_dir = Path(directory) / LOG_DIR
        self.logged = logged_trials(self.log_dir)  # before this writer adds its own (empty) event file
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.best = -math.inf

    def sync(self, trials: list[Trial]) -> int:
        """Write the completed trials of ``trials`` (the store's) that the event files lack, their best reward
        so far as it was when they finished; returns how many were written."""
        done = sorted((t for t in trials if t.status is TrialStatus.COMPLETED and t.reward is not None),
                      key=lambda t: (t.finished or 0.0, t.id))
        missing = 0
        for t in done:
            self.best = max(self.best, t.reward)
            if t.id not in self.logged:
                self._scalars(t)
                missing += 1
        if missing:
            log.info("tensorboard: %d trial(s) the store has and the log lacked written", missing)
            self._flush()
        return missing

    def add(self, trial: Trial, diagnostics: dict[str, Any] | None = None) -> None:
        try:
            if trial.status is TrialStatus.COMPLETED and trial.reward is not None:
                self.best = max(self.best, trial.reward)
                self._scalars(trial)
            entropy = (diagnostics or {}).get("entropy")
            if isinstance(entropy, (int, float)):
                self.writer.add_scalar("strategy/entropy", entropy, trial.id)
            self.writer.flush()
        except Exception as e:  # noqa: BLE001 - a view must never stop the search
            log.warning("tensorboard: trial %d not written (%s)", trial.id, e)

    def _scalars(self, trial: Trial) -> None:
        try:
            for name, value in (("reward", trial.reward), ("best_reward", self.best),
                                ("accuracy", trial.accuracy), ("latency_ms", trial.latency_ms)):
                if value is not None:
                    self.writer.add_scalar(f"trial/{name}", value, trial.id)
            self.logged.add(trial.id)
        except Exception as e:  # noqa: BLE001 - a view must never stop the search
            log.warning("tensorboard: trial %d not written (%s)", trial.id, e)

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except Exception as e:  # noqa: BLE001
            log.warning("tensorboard: not flushed (%s)", e)

    def close(self) -> None:
        self.writer.close()


def logged_trials(log_dir: Path) -> set[int]:
    """The trial ids with a reward in the event files under ``log_dir`` (none if there are none, or if they
    cannot be read: then every trial is written again, which TensorBoard shows as one point)."""
    if not log_dir.is_dir():
        return set()
    try:
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

        events = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})  # 0: keep every point
        events.Reload()
        if "trial/reward" not in events.Tags().get(SCALARS, []):
            return set()
        return {int(e.step) for e in events.Scalars("trial/reward")}
    except Exception as e:  # noqa: BLE001 - a view: a damaged event file must never stop the search
        log.warning("tensorboard: the event files in %s could not be read (%s)", log_dir, e)
        return set()
