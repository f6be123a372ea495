"""The Python API: what the ``mnas`` command does, as functions (docs/api.md shows each one; its examples run
in the test suite).

    import mnas.api as mnas
    exp = mnas.search("configs/demo.yaml", "runs/x")      # run (or resume=True) a search
    exp.trials()                                         # every trial, a pandas DataFrame when pandas is installed
    exp.best(), exp.pareto()                             # the rank-1 trial, the accuracy/latency Pareto front
    exp.train("runs/x/best", rank=1)                     # train the rank-1 trial as deployed (full training)
    exp.export("best.onnx", rank=1, weights="runs/x/best")  # write a trial's model in a runtime's format
    mnas.measure("mnasnet-a1", backend="onnxruntime")    # real latency of an architecture
    mnas.train("mnasnet-a1", dataset="digits", epochs=1)   # proxy training
    study = mnas.create_study("runs/mine", target=20.0)  # ask/tell with your own training (mnas.study)

This layer sits above ``mnas.deploy`` and ``mnas.retrain`` and below ``mnas.cli``. Beside calling the workflows
it adds what a Python user needs and a command does not: ``Experiment`` (a read-only handle on an experiment
directory, its trials as Trial records or a DataFrame) and keyword arguments in place of config files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from mnas import MnasError
from mnas.schema import Schema
from mnas.search.config import ExperimentConfig, config_from_dict, load_config, stored_config
from mnas.store import Store, Trial, TrialStatus

from mnas.study import Study, StudyTrial, create_study, load_study

__all__ = ["Experiment", "search", "open_experiment", "measure", "train", "architecture", "build", "create_study",
           "load_study", "Study", "StudyTrial"]


class _Choice(Schema):
    """The arguments of the functions below that no config schema holds, checked as the CLI's options are
    (``mnas report --top``, ``mnas export --rank``, ``mnas trials --status``): one ``MnasError`` line."""

    top: int = Field(10, ge=1)
    rank: int = Field(1, ge=1)
    status: Optional[TrialStatus] = None


class Experiment:
    """A read-only view of an experiment directory (the writer is the search itself)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._store().close()  # a clear error now if there is no experiment here

    def _store(self) -> Store:
        return Store(self.dir, readonly=True)  # never the writer's lock: a running search may own it

    @property
    def config(self) -> ExperimentConfig:
        with self._store() as store:
            return stored_config(store)

    def trials(self, as_frame: bool = True, status: TrialStatus | str | None = None) -> Any:
        """Every trial (or those with ``status``): a pandas DataFrame indexed by trial id when pandas is
        installed and ``as_frame``, else a list of ``mnas.store.Trial``."""
        status = _Choice(status=status).status
        with self._store() as store:
            records = store.trials(status)
        if not as_frame:
            return records
        try:
            import pandas as pd
        except ImportError:
            return records
        return pd.DataFrame([t.to_dict() for t in records]).set_index("id") if records else pd.DataFrame()

    def best(self) -> Trial | None:
        """The rank-1 trial, ranked as ``mnas report`` and ``mnas export --rank`` rank."""
        from mnas.store.query import best_trial

        with self._store() as store:
            return best_trial(store)

    def pareto(self) -> list[Trial]:
        """Completed trials no other trial beats on both accuracy and latency, fastest first."""
        from mnas.search.pareto import pareto_front
        from mnas.store.query import trial_table

        with self._store() as store:
            table = trial_table(store)
            done = [int(i) for i in table.completed.nonzero()[0]]
            front = pareto_front(table.latency_ms[done], table.accuracy[done])
            return [store.trial(int(table.id[done[int(j)]])) for j in front]

    def summary(self, top: int = 10) -> dict[str, Any]:
        """What ``mnas report --json`` prints, without writing plots or the HTML page."""
        from mnas.report.build import make_report

        top = _Choice(top=top).top
        return make_report(self.dir, top=top, plots=False, html=False)

    def export(self, out: str | Path, rank: int = 1, fmt: str = "onnx", measure: bool = False,
               weights: str | Path | None = None, random_weights: bool = False, quantize: str | None = None,
               dynamic_batch: bool = False) -> dict[str, Any]:
        """Write the trial at ``rank`` as ``fmt`` (onnx, tflite, torchscript) with the trained ``weights`` (a
        ``mnas train --dir`` / ``mnas retrain`` checkpoint of its architecture, top-1 checked in the file's
        runtime) or, only when asked by ``random_weights``, freshly initialised; with ``measure``, time it.
        ``quantize="int8"`` and ``dynamic_batch``: as ``mnas export --quantize int8 --dynamic-batch``."""
        from mnas.deploy.export import export_trial

        rank = _Choice(rank=rank).rank
        if (weights is None) == (not random_weights):
            raise MnasError("export needs the trained weights (weights=CHECKPOINT) or, for a file to time only, "
                            "random_weights=True: exactly one of the two")
        _, result = export_trial(self.dir, rank, fmt, out, measure=measure, weights=weights, quantize=quantize,
                                 dynamic_batch=dynamic_batch)
        return result.to_dict()

    def train(self, out: str | Path, rank: int | None = None, trial: int | None = None, resume: bool = False,
              **task: Any):
        """Train the trial at ``rank`` (default 1) or with id ``trial`` as it is deployed (as ``mnas train
        EXPERIMENT --rank K --dir OUT``): the searched architecture at width 1.0, on the search's dataset, at
        the resolution its latency was measured at, with the full-training recipe of ``mnas retrain``, into
        the folder ``out`` (a checkpoint per epoch; ``resume`` continues it). ``task``: any TrainTask field
        (epochs, lr, ...). Returns the ``FitResult``; ``export(..., weights=out)`` exports it."""
        from mnas.retrain.winner import trial_training
        from mnas.train import load_proxy_data
        from mnas.train.full import train_full

        rank = None if rank is None else _Choice(rank=rank).rank
        chosen = trial_training(self.dir, rank, trial, **task)
        cfg = chosen.task
        return train_full(chosen.arch, load_proxy_data(cfg, cfg.seed), cfg, out, name=chosen.label, resume=resume)


def search(config: str | Path | dict[str, Any], out: str | Path, resume: bool = False,
           retry_failed: bool = False, **overrides: Any) -> Experiment:
    """Run a search (a YAML path or a config dict) into ``out``, or continue it with ``resume``; returns the
    experiment once the budget is spent. ``overrides``: dotted keys with ``__`` for dots
    (``proxy__epochs=2``) or plain top-level keys (``trials=10``)."""
    from mnas.search.driver import Search

    dotted = {k.replace("__", "."): v for k, v in overrides.items()}
    cfg = config_from_dict(config, "config", dotted) if isinstance(config, dict) else load_config(config, dotted)
    run = Search.open(cfg, out, resume=resume)
    try:
        run.run(retry_failed=retry_failed)
    finally:
        run.close()
    return Experiment(out)


def open_experiment(directory: str | Path) -> Experiment:
    return Experiment(directory)


def architecture(name: str, width_multiplier: float = 1.0):
    """A zoo name (``NAME@WIDTH``: at that width), canonical string or TPU/timm block strings ->
    ``mnas.space.Architecture``."""
    from mnas.space import resolve_arch

    return resolve_arch(name, width_multiplier)[1]


def build(arch: Any, num_classes: int = 1000, in_chans: int = 3):
    """The PyTorch model of an architecture (or of a name ``architecture`` accepts)."""
    from mnas.latency import LatencySettings
    from mnas.model import build as build_model

    checked = LatencySettings(num_classes=num_classes, in_chans=in_chans)  # the same bounds as everywhere
    return build_model(_arch(arch), num_classes=checked.num_classes, in_chans=checked.in_chans)


def measure(arch: Any, backend: str = "onnxruntime", cache: str | Path | None = None, **settings: Any):
    """Real latency of an architecture on ``backend``; ``settings``: any LatencySettings field
    (resolution, threads, runs, ...). Returns a ``LatencyResult`` (``.median_ms``, ``.cv``, ...)."""
    from mnas.latency import LatencySettings
    from mnas.latency import measure as measure_arch

    return measure_arch(_arch(arch), backend, LatencySettings(**settings), cache=cache)


def train(arch: Any, dataset: str = "animal-mnist", seed: int = 0, **proxy: Any):
    """Proxy-train an architecture; ``proxy``: any TrainTask field (recipe, epochs, resolution, ...)."""
    from mnas.space import resolve_arch, split_width
    from mnas.train import TrainTask, train_architecture

    if isinstance(arch, str) and split_width(arch)[1] is not None:  # NAME@WIDTH: trained at that width
        arch = resolve_arch(arch, proxy.pop("width_multiplier", None) or 1.0)[1]
        proxy["width_multiplier"] = 1.0
    task = TrainTask(dataset=dataset, seed=seed, **proxy)  # the seed validated with the rest
    return train_architecture(_arch(arch), task, task.seed)


def _arch(arch: Any):
    if isinstance(arch, str):
        return architecture(arch)
    if not hasattr(arch, "canonical"):
        raise MnasError(f"expected an architecture or its name, got {type(arch).__name__}")
    return arch
