"""mnas: platform-aware neural architecture search (MnasNet, reproduced).

``import mnas`` is the Python API (each name loads its module on first use, so the import itself is fast):

* An experiment: ``mnas.open_experiment(dir)`` -> ``Experiment`` (``trials()``, ``best()``, ``pareto()``,
  ``train()``, ``export()``); ``mnas.api.search(config, dir)`` runs a search as ``mnas search`` does.
* Ask/tell with your own training, in Optuna's shape: ``study = mnas.create_study(dir, target=T_ms or a model
  name, reward="soft"|"hard", pruner="none"|"median"|"asha")``; ``trial = study.ask()`` (``trial.arch``,
  ``trial.latency_ms`` measured by mnas, ``trial.build_model(num_classes=...)``); ``trial.report(step,
  accuracy)``, ``trial.should_prune()`` (raise ``mnas.TrialPruned``); ``study.tell(trial, accuracy=...)``;
  ``study.optimize(objective, n_trials, callbacks=[...])``; ``mnas.load_study(dir)`` continues it. A study is an
  experiment: ``mnas report``, ``mnas export`` and the optuna-dashboard mirror work on it.
* One architecture: ``mnas.architecture(name)``, ``mnas.build(arch)``, ``mnas.measure(arch, backend)``,
  ``mnas.api.train(arch, dataset)`` (``mnas.search`` and ``mnas.train`` are the packages of those layers, so
  those two functions are reached through ``mnas.api``, or ``import mnas.api as mnas``).
* ``mnas.MnasError``: every user-facing error (one line).

docs/api.md shows each with examples that run in the test suite.
"""

import importlib

__version__ = "0.1.0"


class MnasError(ValueError):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


# name -> the module that defines it, imported on first access (module __getattr__, PEP 562)
_API = {**{n: "mnas.api" for n in ("Experiment", "open_experiment", "measure", "architecture", "build")},
        **{n: "mnas.study" for n in ("Study", "StudyTrial", "create_study", "load_study")}}

__all__ = ["MnasError", "TrialPruned", *_API]


def __getattr__(name: str):
    if name == "TrialPruned":  # Optuna's own: an objective written for Optuna raises the same one
        from optuna import TrialPruned

        return TrialPruned
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
