"""Trials on a Ray cluster: proxy training as Ray tasks with per-trial resources, latency where it is honest.

Where latency is measured (docs/ray.md says the same to users):

* ``device_resource`` set (e.g. ``device:pi5``): a measurement task needs one unit of that custom resource, so
  it runs on the node holding the device, and a node that offers exactly 1 unit measures one model at a time.
  The task also takes every CPU that node offers, so Ray never runs a training there while it times (a
  device node joined with ``--num-cpus 0`` needs none). Training and timing of one trial run concurrently.
* no device resource: latencies are measured in the driver process, in windows when no training runs
  anywhere. Training starts for a submitted trial only while no window is due; a window opens as soon as a
  trained trial waits for its latency and closes when every training in flight has finished and every
  waiting trial is measured. So a batch trains in parallel, is then timed on a quiet machine, and the driver
  hears the batch's results together; the cost is waiting for the batch's slowest training.

Node loss: Ray re-runs a task whose node or worker process dies, up to ``max_retries`` times, on any node
that fits. Exceptions raised by our own code are not retried: they come back as the trial's error. When
Ray gives up, the trial comes back failed with Ray's error: the driver records it, nothing is lost.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from mnas import MnasError
from mnas.run.config import ExecutorConfig
from mnas.run.trial import (LatencyJob, TrialJob, combine, error_line, failed, measure_latency, train_proxy_job,
                            worker_name)
from mnas.store import Trial
from mnas.train import TrainTask

log = logging.getLogger(__name__)

# Light Ray defaults for a local instance: this project runs on small shared machines.
LOCAL_OBJECT_STORE_BYTES = 100_000_000
LIVENESS_CHECK_S = 10.0  # how often a wait with nothing finished asks whether the needed nodes still exist


def _where() -> str:
    import ray

    try:  # the address the node joined with (--node-ip-address), not a guess from the routing table
        ip = ray._private.worker.global_worker.node_ip_address
    except Exception:  # noqa: BLE001 - a private attribute: fall back to Ray's public guess
        ip = ray.util.get_node_ip_address()
    return f"{worker_name()}@{ip}"


def _threads(n: int) -> None:
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)


def _train_remote(arch: str, proxy: TrainTask, seed: int, threads: int, pruning: Any = None) -> dict[str, Any]:
    """Runs in a Ray worker. Our own exceptions are returned, not raised, so Ray retries only system failures
    (a dead node or worker process), never a trial that fails by itself."""
    started = time.time()
    _threads(threads)
    try:
        return {"train": train_proxy_job(arch, proxy, seed, pruning), "where": _where(), "started": started}
    except Exception as exc:  # noqa: BLE001 - the trial's error (made here: tracebacks do not pickle)
        return {"error": error_line(exc), "where": _where(), "started": started}


def _measure_remote(arch: str, job: LatencyJob) -> dict[str, Any]:
    started = time.time()
    _threads(job.settings.threads)
    try:
        return {"lat": measure_latency(arch, job), "where": _where(), "started": started}
    except Exception as exc:  # noqa: BLE001
        return {"error": error_line(exc), "where": _where(), "started": started}


@dataclass
class _Trial:
    job: TrialJob
    train_ref: Any = None
    lat_ref: Any = None
    train: dict[str, Any] | None = None
    lat: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)


class RayExecutor:
    def __init__(self, cfg: ExecutorConfig) -> None:
        os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
        import ray

        self.cfg = cfg
        self.capacity = cfg.workers
        self.threads = max(1, int(cfg.cpus_per_trial))
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            self._connect()
        try:
            self._check_fits()
            self._train_fn = ray.remote(_train_remote).options(
                num_cpus=cfg.cpus_per_trial, num_gpus=cfg.gpus_per_trial, max_retries=cfg.max_retries,
                retry_exceptions=False)
            self._measure_fn = None
            if cfg.device_resource:
                cpus = self._device_cpus(cfg.device_resource)
                self._measure_fn = ray.remote(_measure_remote).options(
                    num_cpus=cpus, resources={cfg.device_resource: 1}, max_retries=cfg.max_retries,
                    retry_exceptions=False)
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise
        self._trials: dict[int, _Trial] = {}
        self._held: deque[int] = deque()  # submitted, training not started (a latency window is due)
        self._need_latency: list[int] = []  # trained, waiting for the next latency window
        self._warned_cpu = False

    # -- connection
    def _connect(self) -> None:
        ray, cfg = self._ray, self.cfg
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
        try:
            if cfg.address:
                # only the cluster the config names: "auto" is the one `ray start` began on this machine
                ray.init(address=cfg.address, **quiet)
            else:
                # "local" starts a private instance and never joins a cluster found in the environment;
                # one CPU unit per worker process, so `workers` trainings run at once. (Ray turns a loopback
                # node address into the routable one, so none is given; its token guards the instance.)
                resources = {cfg.device_resource: 1} if cfg.device_resource else None
                # GPUs: Ray counts the real ones (declaring more would schedule GPU trials onto none).
                ray.init(address="local", num_cpus=math.ceil(cfg.workers * cfg.cpus_per_trial),
                         num_gpus=None if cfg.gpus_per_trial else 0, resources=resources,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
        except ConnectionError as e:
            raise MnasError(f"cannot reach the Ray cluster at {cfg.address!r} ({e}); start it with "
                            "`ray start --head` and give executor.address as HOST:PORT") from None
        self._owns_ray = True

    def _check_fits(self) -> None:
        """A task no node can hold waits forever in Ray: say so now instead."""
        need = {"CPU": self.cfg.cpus_per_trial, "GPU": self.cfg.gpus_per_trial}
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        if not any(all(r.get(k, 0.0) >= v for k, v in need.items() if v) for r in nodes):
            have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no nodes"
            raise MnasError(f"no Ray node can run a trial needing {need['CPU']:g} CPU and {need['GPU']:g} GPU "
                            f"(nodes: {have}); lower executor.cpus_per_trial / gpus_per_trial")

    def _device_cpus(self, resource: str) -> float:
        """The CPUs a measurement claims: all of the device node's, so no training overlaps a timing."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive") and n["Resources"].get(resource, 0) > 0]
        if not nodes:
            raise MnasError(f"no node of the Ray cluster offers the resource {resource!r}: join the device "
                            f"node with `ray start --address HEAD --resources '{{\"{resource}\": 1}}'`")
        return min(n["Resources"].get("CPU", 0.0) for n in nodes)

    # -- the protocol
    def submit(self, job: TrialJob) -> None:
        trial = _Trial(job)
        self._trials[job.trial_id] = trial
        if self._measure_fn is not None:
            # a remote device cannot see the driver's latency cache; it measures every model it is sent
            trial.lat_ref = self._measure_fn.remote(job.arch, replace(job.latency, cache=None))
            self._start_training(trial)
        elif self._need_latency:
            self._held.append(job.trial_id)
        else:
            self._start_training(trial)

    def _start_training(self, trial: _Trial) -> None:
        job = trial.job
        # the trainer uses the CPUs Ray gave the task where the config kept the defaults: its threads, and for
        # streamed data one CPU less in loader processes (one stays with the training loop). Compared with the
        # default, not "was it set": a resumed config has every field written out.
        fit = {"threads": self.threads, "workers": max(0, math.floor(self.cfg.cpus_per_trial) - 1)}
        proxy = job.proxy.model_copy(update={k: v for k, v in fit.items()
                                             if getattr(job.proxy, k) == TrainTask.default(k)})
        trial.train_ref = self._train_fn.remote(job.arch, proxy, job.seed, self.threads, job.pruning)

    def in_flight(self) -> int:
        return len(self._trials)

    def wait(self, timeout: float | None = None) -> list[Trial]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._trials:
            if self._window_due():
                return self._latency_window()
            refs = {}
            for tid, tr in self._trials.items():
                if tr.train_ref is not None and tr.train is None:
                    refs[tr.train_ref] = (tid, "train")
                if tr.lat_ref is not None and tr.lat is None:
                    refs[tr.lat_ref] = (tid, "lat")
            if not refs:  # nothing running: held trials start now
                self._release_held()
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = self._ray.wait(list(refs), num_returns=1,
                                      timeout=LIVENESS_CHECK_S if left is None else min(left, LIVENESS_CHECK_S))
            if not ready:
                stranded = self._stranded(refs)
                if stranded:
                    return stranded
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                continue
            ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=0)
            done: list[Trial] = []
            for ref in ready:
                tid, kind = refs[ref]
                tr = self._trials[tid]
                value = self._get(ref)
                if kind == "train":
                    tr.train = value
                    if self._measure_fn is None and "error" not in value:
                        self._need_latency.append(tid)
                else:
                    tr.lat = value
                outcome = self._finished(tr)
                if outcome is not None:
                    del self._trials[tid]
                    done.append(outcome)
            if done:
                return done
        return []

    def _stranded(self, refs: dict[Any, tuple[int, str]]) -> list[Trial]:
        """Ray keeps a task that no live node can run waiting forever (the only device node, or every
        training node, is gone): such trials come back failed instead, so the search ends and
        ``--retry-failed`` can run them once the nodes are back."""
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        need_train = {"CPU": self.cfg.cpus_per_trial, "GPU": self.cfg.gpus_per_trial}
        can_train = any(all(r.get(k, 0.0) >= v for k, v in need_train.items() if v) for r in nodes)
        can_measure = self._measure_fn is None or any(r.get(self.cfg.device_resource, 0) > 0 for r in nodes)
        lost = {tid for tid, kind in refs.values() if not (can_train if kind == "train" else can_measure)}
        done = []
        for tid in sorted(lost):
            tr = self._trials.pop(tid)
            self._cancel(tr)
            what = "no live node can train it" if not can_train else \
                f"no live node offers {self.cfg.device_resource}"
            done.append(failed(tr.job, f"NodesLost: {what}", tr.started, worker="ray"))
        return done

    def _get(self, ref: Any) -> dict[str, Any]:
        try:
            return self._ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - Ray gave up (node lost beyond max_retries, ...)
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            return {"error": f"{type(exc).__name__}: {first}", "where": "ray", "started": time.time()}

    def _finished(self, tr: _Trial) -> Trial | None:
        for part in (tr.train, tr.lat):
            if part is not None and "error" in part:
                self._cancel(tr)
                return failed(tr.job, part["error"], tr.started,
                              worker=f"{'train' if part is tr.train else 'latency'}:{part['where']}")
        if tr.train is None or tr.lat is None:
            return None
        self._check_gpu_used(tr)
        worker = f"train:{tr.train['where']} latency:{tr.lat['where']}"
        return combine(tr.job, tr.lat["lat"], tr.train["train"], tr.started, worker=worker)

    def _check_gpu_used(self, tr: _Trial) -> None:
        """A trial given a GPU share that trained on a CPU: Ray schedules by the GPUs a node declares, and a
        node may declare GPUs that torch cannot use (none there, or a CPU-only torch). The device ``auto``
        then trains on the CPU, slowly but correctly; the driver says so once (``device: cuda`` would fail
        such trials instead)."""
        device = tr.train["train"].get("device", "")
        if self.cfg.gpus_per_trial and not device.startswith("cuda") and not self._warned_cpu:
            self._warned_cpu = True
            log.warning("trial %d was given %g GPU by Ray but trained on %s at %s: torch there sees no CUDA "
                        "device (Ray counts the GPUs a node declares); set proxy.device: cuda to fail such "
                        "trials instead", tr.job.trial_id, self.cfg.gpus_per_trial, device or "the CPU",
                        tr.train["where"])

    def _cancel(self, tr: _Trial) -> None:
        """Stop the half of a trial still running (the other half failed, or the search stops)."""
        for ref, result in ((tr.train_ref, tr.train), (tr.lat_ref, tr.lat)):
            if ref is not None and result is None:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished, or its node is gone
                    pass

    # -- latency windows (no device resource)
    def _window_due(self) -> bool:
        if not self._need_latency:
            return False
        return not any(tr.train_ref is not None and tr.train is None for tr in self._trials.values())

    def _latency_window(self) -> list[Trial]:
        """Nothing trains now: time every waiting trial here, one after the other."""
        done = []
        for tid in self._need_latency:
            tr = self._trials.pop(tid)
            started = time.time()
            try:
                tr.lat = {"lat": measure_latency(tr.job.arch, tr.job.latency),
                          "where": worker_name() + "@driver", "started": started}
            except Exception as exc:  # noqa: BLE001
                tr.lat = {"error": error_line(exc), "where": worker_name() + "@driver",
                          "started": started}
            done.append(self._finished(tr))
        self._need_latency = []
        self._release_held()
        return done

    def _release_held(self) -> None:
        while self._held:
            self._start_training(self._trials[self._held.popleft()])

    def shutdown(self) -> None:
        for tr in self._trials.values():
            self._cancel(tr)
        self._trials.clear()
        self._held.clear()
        self._need_latency = []
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
