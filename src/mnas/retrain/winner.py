"""``mnas train EXPERIMENT --rank K | --trial ID``: one searched trial's training task, as it is deployed.

The search trains a small proxy (the proxy's width multiplier, its resolution, a few epochs) only to rank
the trials; what is exported and deployed is the architecture as searched (width 1.0) at the resolution the
search measured its latency at. This builds the training task of that network: the searched architecture
unscaled, the search's dataset, the latency's resolution and a full-training recipe. Anything the caller
sets (the usual ``mnas train`` options) wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnas import MnasError
from mnas.retrain.config import RetrainConfig
from mnas.train import TrainTask

if TYPE_CHECKING:  # the CLI imports this module at start-up: the store's readers load on first use
    from mnas.space import Architecture
    from mnas.store.query import RankedTrial

# The full-training recipe ``mnas retrain`` trains every model with (chosen on CIFAR-10: docs/results/
# 2026-11-27-cifar-recipe.md), so that the winner trained alone matches its row in the retrain table.
DEPLOYED_RECIPE: str = RetrainConfig.default("recipe")


@dataclass(frozen=True)
class TrialTraining:
    """A trial, its name in the checkpoint, its architecture (width 1.0) and the task that trains it."""

    ranked: RankedTrial
    label: str
    arch: Architecture
    task: TrainTask


def trial_training(directory: str | Path, rank: int | None = None, trial_id: int | None = None,
                   **overrides: Any) -> TrialTraining:
    """The trial at ``rank`` (default 1) or with id ``trial_id`` of the experiment in ``directory``, and the
    training task that trains it as deployed; ``overrides``: TrainTask fields (None: not set)."""
    from mnas.search.config import stored_config
    from mnas.space import Architecture
    from mnas.store import Store
    from mnas.store.query import trial_by_id, trial_by_rank

    if rank is not None and trial_id is not None:
        raise MnasError("give --rank or --trial, not both")
    with Store(directory, readonly=True) as store:
        ranked = trial_by_id(store, trial_id) if trial_id is not None else trial_by_rank(store, rank or 1)
        exp = stored_config(store)
    given = {k: v for k, v in overrides.items() if v is not None}
    task = TrainTask(**{"recipe": DEPLOYED_RECIPE, "dataset": exp.proxy.dataset,
                        "resolution": exp.latency.resolution, "width_multiplier": 1.0, **given})
    return TrialTraining(ranked, f"trial {ranked.trial.id}", Architecture.parse(ranked.trial.arch), task)


def is_experiment(path: str | Path) -> bool:
    """``path`` is an experiment directory (it holds a store), not an architecture string."""
    from mnas.store.sqlite import DB_NAME

    p = Path(path).expanduser()
    return p.is_dir() and (p / DB_NAME).is_file()
