"""The local executor: trials on this machine, latency always measured while nothing trains here.

``executor.workers: 1`` (the default): one trial at a time in this process, latency then training.

``executor.workers: N > 1``: N trainings at once in N worker processes of this machine (on one GPU they
share it: small proxy trainings do not fill a GPU). Processes, not threads: each has its own CUDA context
and its own interpreter lock. Latency is measured in this process, in windows when no worker trains: the
trials submitted while trainings run wait until every running training has finished, are then timed one
after the other on a quiet machine, and start training together. So trainings overlap only each other,
never a timing; the cost is waiting for the slowest training of a wave before the next one starts. A
backend that times nothing here (a device agent, ``remote:URL``; a lookup table, ``lut:PATH``) needs no
window: each trial is measured and starts training as soon as a worker is free.

A worker process that dies (out of memory, a crash in a native library) fails only the trial it was
training, and is replaced. Worker processes watch their parent: when the search process is killed
(kill -9), they exit within a second, and ``--resume`` re-runs the trials that were in flight (the store
says which).
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mnas.run.config import ExecutorConfig
from mnas.run.trial import (LatencyMeasurement, TrialJob, _phase, combine, error_line, failed, measure_latency,
                            run_trial, worker_name)
from mnas.store import Trial

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")


class LocalExecutor:
    def __init__(self, cfg: ExecutorConfig | None = None) -> None:
        self.capacity = (cfg or ExecutorConfig()).workers
        self._queue: deque[TrialJob] = deque()  # submitted, latency not measured yet
        self._slots: list[_Slot] = []  # worker processes (workers > 1 only), started on first use
        self._running: dict[int, _Running] = {}  # slot index -> what it trains

    def submit(self, job: TrialJob) -> None:
        self._queue.append(job)

    def in_flight(self) -> int:
        return len(self._queue) + len(self._running)

    def wait(self, timeout: float | None = None) -> list[Trial]:
        if self.capacity == 1:
            return [run_trial(self._queue.popleft())] if self._queue else []
        deadline = None if timeout is None else time.monotonic() + timeout
        done: list[Trial] = []
        while True:
            if self._queue and (not self._running or not times_here(self._queue[0])):
                done += self._latency_window()
            if done or not self._running:
                return done
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done += self._collect(left)
            if done or (deadline is not None and time.monotonic() >= deadline):
                return done

    def _latency_window(self) -> list[Trial]:
        """Nothing trains (or the latencies are not timed here): measure every queued trial that has a free
        worker, then start their trainings."""
        failures, timed = [], []
        while self._queue and len(timed) + len(self._running) < self.capacity:
            job = self._queue.popleft()
            started = time.time()
            _phase(job.trial_id, "measuring")
            try:
                timed.append(_Running(job, measure_latency(job.arch, job.latency), started))
            except Exception as exc:  # noqa: BLE001 - the trial fails with its error; the search goes on
                _phase(job.trial_id, "done")
                failures.append(failed(job, error_line(exc), started))
        for run in timed:  # only now: no timing above overlapped a training
            self._dispatch(run)
        return failures

    def _dispatch(self, run: _Running) -> None:
        if not self._slots:
            self._slots = [_Slot.start() for _ in range(self.capacity)]
        index = next(i for i in range(len(self._slots)) if i not in self._running)
        slot = self._slots[index]
        if slot.proc.poll() is not None:  # died since its last trial: a fresh one
            slot.close()
            slot = self._slots[index] = _Slot.start()
        try:
            slot.send((run.job.arch, run.job.proxy, run.job.seed, run.job.pruning))
        except OSError:  # died just now: _collect reads the EOF and fails the trial
            pass
        self._running[index] = run
        _phase(run.job.trial_id, "training")

    def _collect(self, timeout: float | None) -> list[Trial]:
        """The trials whose trainings finished within ``timeout`` (None: at least one)."""
        fds = {self._slots[i].reader: i for i in self._running}
        ready, _, _ = select.select(list(fds), [], [], timeout)
        done = []
        for fd in ready:
            index = fds[fd]
            run, slot = self._running.pop(index), self._slots[index]
            reply = slot.receive()
            if reply is None:
                code = slot.proc.wait()
                slot.close()
                self._slots[index] = _Slot.start()
                why = "killed: out of memory?" if code == -9 else "its error is on the search's stderr"
                trial = failed(run.job, f"WorkerDied: the training process exited with code {code} ({why})",
                               run.started, worker=f"train:{slot.name}")
            elif "error" in reply:
                trial = failed(run.job, reply["error"], run.started, worker=f"train:{slot.name}")
            else:
                trial = combine(run.job, run.lat, reply["train"], run.started,
                                worker=f"train:{slot.name} latency:{worker_name()}")
            _phase(run.job.trial_id, "done")
            done.append(trial)
        return done

    def shutdown(self) -> None:
        self._queue.clear()
        self._running.clear()
        for slot in self._slots:
            slot.close()
        self._slots = []


# Latency backends that time nothing on this machine: a device agent's (remote:URL) measures on its own
# device, a lookup table (lut:PATH) predicts. Their trials start as soon as a worker is free.
NOT_TIMED_HERE = ("remote", "lut")


def times_here(job: TrialJob) -> bool:
    """Whether the trial's latency is timed on this machine (then never while a training runs here). A
    lookup table times its reference models here when its speed factor is due (at the search's start and
    then periodically)."""
    prefix = job.latency.backend.partition(":")[0]
    if prefix == "lut":
        from mnas.latency import get_backend

        return get_backend(job.latency.backend).speed_due()
    return prefix not in NOT_TIMED_HERE


@dataclass
class _Running:
    job: TrialJob
    lat: LatencyMeasurement
    started: float


@dataclass
class _Slot:
    """One worker process: jobs go to its stdin, results come back on its stdout (length-prefixed pickles;
    whatever the training prints goes to stderr)."""

    proc: subprocess.Popen
    name: str

    @classmethod
    def start(cls) -> _Slot:
        # the worker imports mnas from where this process did (a checkout run with PYTHONPATH, or installed)
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        proc = subprocess.Popen([sys.executable, "-m", "mnas.run._worker", str(os.getpid())], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)
        return cls(proc, f"{worker_name().rsplit(':', 1)[0]}:{proc.pid}")

    @property
    def reader(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, message: object) -> None:
        _write(self.proc.stdin, message)

    def receive(self) -> dict | None:
        return _read(self.proc.stdout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def _write(f, message: object) -> None:
    data = pickle.dumps(message)
    f.write(_HEADER.pack(len(data)) + data)
    f.flush()


def _read(f) -> object | None:
    """One message, or None at end of file (the other side exited)."""
    header = f.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(header)
    data = f.read(n)
    return pickle.loads(data) if len(data) == n else None


def _watch_parent(parent: int) -> None:
    """Exit when the process that started this one is gone (kill -9 leaves no one to read the result)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _serve(parent: int) -> None:
    """A worker process's loop: train each job read from stdin, write its result to stdout."""
    import mnas.train.trainer  # noqa: F401 - torch and the trainer loaded before the first job arrives
    from mnas.run.trial import train_proxy_job

    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the search's to handle: it stops the workers
    _watch_parent(parent)
    inbox, outbox = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a print in a library must not garble the replies
    sys.stdout = sys.stderr
    while True:
        job = _read(inbox)
        if job is None:
            return
        arch, proxy, seed, pruning = job
        try:
            reply = {"train": train_proxy_job(arch, proxy, seed, pruning)}
        except Exception as exc:  # noqa: BLE001 - the trial's error, one line (tracebacks stay here)
            reply = {"error": error_line(exc)}
        _write(outbox, reply)
