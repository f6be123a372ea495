"""What the driver checks so a mistake never costs a search its budget: everything a trial needs, once,
before the first one (``preflight``), and every result before it is rewarded (``check_result``)."""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mnas import MnasError
from mnas.run import EXECUTORS
from mnas.search.config import ExperimentConfig
from mnas.search.strategies import make_strategy
from mnas.space import load_space
from mnas.store import Trial, TrialStatus

log = logging.getLogger(__name__)


def preflight(cfg: ExperimentConfig) -> None:
    """Check once, before the first trial, what every trial needs: the latency backend (and its runtime or
    agent), the proxy's device and dataset, and a model of the space at the proxy's and at the deployed
    size that this machine's memory can hold. A mistake here would otherwise fail every trial."""
    from mnas.latency import get_backend
    from mnas.space import Architecture
    from mnas.train import load_proxy_data

    started = time.perf_counter()
    space = load_space(cfg.space)
    make_strategy(cfg.strategy.name, space, seed=cfg.seed, **cfg.strategy.settings)  # unknown options: one line
    EXECUTORS.get(cfg.executor.kind)  # an unknown kind, or Ray not installed: one line, before anything is stored
    if cfg.tensorboard:  # the run would refuse without it: so does a dry run
        from mnas.search.tensorboard import require

        require()
    with _one_line(f"latency backend {cfg.latency.backend!r} is not usable"):
        get_backend(cfg.latency.backend).identity(cfg.latency.settings())
    if cfg.executor.kind == "local":  # other executors train on their own machines' devices
        from mnas.train.trainer import resolve_device

        resolve_device(cfg.proxy.device)
    largest = space.decode([len(d) - 1 for d in space.decisions])  # the largest choices in the built-in space
    try:
        arch = Architecture.parse(largest.canonical)
    except MnasError as e:
        raise MnasError(f"space {space.name}: trials build MnasNet-style models, not "
                        f"{largest.canonical[:60]!r}") from e
    try:
        proxy_arch = arch.scaled(cfg.proxy.width_multiplier)
    except MnasError as e:  # past the widths any network of the space could have
        raise MnasError(f"proxy.width_multiplier {cfg.proxy.width_multiplier:g}: {e}") from e
    # before the dataset: an absurd resolution would first blow up the resized images. Only for the local
    # executor: elsewhere trials train on other machines (GPU nodes), whose memory this one cannot judge
    if cfg.executor.kind == "local":
        _check_memory(f"the proxy model (width {cfg.proxy.width_multiplier:g}, {cfg.proxy.resolution} px, batch "
                      f"{cfg.proxy.batch_size}, training)", proxy_arch, cfg.proxy.resolution, cfg.proxy.batch_size,
                      3, 1000, training=True)
    _check_memory(f"the deployed model ({cfg.latency.resolution} px, batch {cfg.latency.batch})", arch,
                  cfg.latency.resolution, cfg.latency.batch, cfg.latency.in_chans, cfg.latency.num_classes,
                  training=False)
    if cfg.proxy.estimator:  # a supernet that is missing or covers another space would fail every trial
        from mnas.run.estimators import estimator

        with _one_line(f"proxy.estimator {cfg.proxy.estimator!r} is not usable"):
            estimator(cfg.proxy.estimator).check(space)
    with _one_line(f"proxy dataset {cfg.proxy.dataset!r} does not load"):
        load_proxy_data(cfg.proxy, cfg.seed)  # what every trial loads (kept in-process for the local executor)
    log.info("preflight checks passed in %.1f s", time.perf_counter() - started)


@contextmanager
def _one_line(what: str) -> Iterator[None]:
    """A library's own exception (a runtime that does not import, an unreadable file) as a one-line error."""
    try:
        yield
    except MnasError:
        raise
    except Exception as e:
        raise MnasError(f"{what}: {type(e).__name__}: {e}") from e


def _check_memory(what: str, arch: Any, resolution: int, batch: int, in_chans: int, num_classes: int,
                  training: bool) -> None:
    """Refuse ``arch`` when weights and activations would not fit in this machine's memory. Training keeps
    weights, gradients, optimizer and EMA copies (4x) and every activation for the backward pass plus its
    gradient (2x); inference the weights and the largest layer."""
    from mnas.model.memory import BYTES_PER_VALUE, check_fits, footprint

    try:
        f = footprint(arch, (batch, in_chans, resolution, resolution), num_classes)
    except MnasError as e:
        raise MnasError(f"{what}: {e}") from e
    values = 2 * f.total_values if training else f.peak_values
    check_fits(what, BYTES_PER_VALUE * (f.weights * (4 if training else 1) + values), "lower its size")


def check_result(trial: Trial) -> None:
    """A completed trial whose accuracy is not in [0, 1] or whose latency is not a positive finite number
    becomes failed with the reason (the bad number is not kept): an executor, a device agent or a plugin
    may send anything, and such a number must never be rewarded or ranked."""
    if trial.status not in (TrialStatus.COMPLETED, TrialStatus.PRUNED):
        return
    problems = []
    accuracy: float | None = _real(trial.accuracy)
    latency: float | None = _real(trial.latency_ms)
    if trial.status is TrialStatus.PRUNED and trial.accuracy is None:  # stopped before any report: no number
        accuracy = None
    elif not 0.0 <= accuracy <= 1.0:  # NaN fails every comparison
        problems.append(f"accuracy {trial.accuracy!r} is not in [0, 1]")
        accuracy = None
    if not 0.0 < latency < math.inf:
        problems.append(f"latency {trial.latency_ms!r} ms is not a positive finite number")
        latency = None
    trial.accuracy, trial.latency_ms = accuracy, latency
    if problems:
        trial.status, trial.error = TrialStatus.FAILED, f"invalid result from {trial.worker}: {'; '.join(problems)}"


def _real(x: Any) -> float:
    """``x`` as a float (numpy scalars too); NaN for what is not a real number (None, a string, a bool)."""
    return float(x) if isinstance(x, numbers.Real) and not isinstance(x, bool) else math.nan
