"""The local executor with several worker processes (``executor.workers: N``): trainings overlap, results do
not change, latency is never measured while a training runs, and kill -9 then --resume loses nothing."""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mnas.run import ExecutorConfig, LatencyJob, TrialJob
from mnas.run.local import LocalExecutor
from mnas.search.config import config_from_dict
from mnas.space import zoo
from mnas.train import TrainTask
from mnas.search.driver import Search
from mnas.store import Store
from mnas.testing import cpu_seconds, run_cli, tiny, wait_for, write_config

# long enough (16 steps) that two trainings started together are still running when the other one starts
LONGER = {"proxy.train_limit": 512, "proxy.epochs": 2}


def search(tmp_path: Path, name: str, workers: int, trials: int = 4):
    cfg = config_from_dict(tiny(trials=trials, executor={"kind": "local", "workers": workers}, **LONGER))
    with Search.open(cfg, tmp_path / name) as exp:
        state = exp.run()
        return state, exp.store.trials()


def training_span(t) -> tuple[float, float]:
    start = t.train["started"]
    return start, start + t.train["train_seconds"] + t.train["eval_seconds"]


@pytest.mark.slow
def test_two_workers_overlap_trainings_and_give_the_same_results(tmp_path):
    state, trials = search(tmp_path, "two", workers=2)
    assert state.completed == 4 and state.failed == 0, [t.error for t in trials]
    spans = [training_span(t) for t in trials]
    # at most two at once (two processes); that both of a wave are in flight at once is checked without
    # a clock in test_a_wave_dispatches_one_training_per_worker_at_once (a busy machine may start one
    # worker late enough that its short training no longer overlaps the other's)
    assert max(sum(s <= start < e for s, e in spans) for start, _ in spans) <= 2
    trainers = {t.worker.split()[0] for t in trials}
    assert len(trainers) == 2 and all(t.worker.split()[1].startswith("latency:") for t in trials)
    # latencies were measured in this process while no training ran: before each wave's trainings began
    for t in trials:
        assert t.started <= training_span(t)[0]
    wave2_timed = min(t.started for t in trials[2:])
    assert wave2_timed >= max(e for _, e in spans[:2])

    _, alone = search(tmp_path, "one", workers=1)
    same_seed = {t.arch: (t.accuracy, t.train["loss_curve"]) for t in alone}
    assert {t.arch: (t.accuracy, t.train["loss_curve"]) for t in trials} == same_seed


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_trial_only(monkeypatch):
    """A training process killed by the system (out of memory) fails the trial it trained; the slot gets a
    fresh process and the next trial trains there."""
    from mnas.run import local

    lat = local.LatencyMeasurement({}, 1.0, 1, 1)
    monkeypatch.setattr(local, "measure_latency", lambda arch, job: lat)
    ex = LocalExecutor(ExecutorConfig(workers=2))
    # a training of minutes: killed while it runs, whenever the kill lands
    long = TrainTask(dataset="digits", resolution=16, width_multiplier=0.25, epochs=500, device="cpu")
    job = TrialJob(1, zoo.get("mobilenet-v2").canonical, LatencyJob("onnxruntime", None), long, 0)
    try:
        ex.submit(job)
        ex._latency_window()
        (slot,) = [ex._slots[i] for i in ex._running]
        slot.proc.send_signal(signal.SIGKILL)
        (trial,) = ex.wait()
        assert trial.status == "failed" and "WorkerDied" in trial.error and "-9" in trial.error
        assert all(s.proc.poll() is None for s in ex._slots)  # replaced
        ex.submit(TrialJob(2, "not an architecture", job.latency, long, 0))
        (trial,) = ex.wait()
        assert trial.status == "failed" and "WorkerDied" not in trial.error  # the trainer's own error, one line
    finally:
        ex.shutdown()
    assert all(s.proc.poll() is not None for s in [slot])


@pytest.mark.slow
def test_latencies_timed_elsewhere_need_no_window(monkeypatch):
    """A device agent's latency (remote:URL) is not timed here, so a trial starts training as soon as a
    worker is free, while another still trains; with a local backend it would wait for that one."""
    from mnas.run import local

    lat = local.LatencyMeasurement({}, 1.0, 1, 1)
    monkeypatch.setattr(local, "measure_latency", lambda arch, job: lat)
    arch = zoo.get("mnasnet-small").canonical
    task = dict(dataset="digits", resolution=16, width_multiplier=0.25, device="cpu", batch_size=32)
    short, long = TrainTask(**task, epochs=1, train_limit=64), TrainTask(**task, epochs=25, train_limit=512)
    remote = LatencyJob("remote:http://device.invalid:8765", None)
    assert not local.times_here(TrialJob(1, arch, remote, short)) and local.times_here(
        TrialJob(1, arch, LatencyJob("onnxruntime", None), short))
    ex = LocalExecutor(ExecutorConfig(workers=2))
    try:
        ex.submit(TrialJob(1, arch, remote, short))
        ex.submit(TrialJob(2, arch, remote, long))
        (first,) = ex.wait()
        assert first.id == 1, first.error
        ex.submit(TrialJob(3, arch, remote, short))
        assert ex.wait(timeout=0) == []
        # trial 2 trains 200 times trial 1's images, so it still trains: trial 3 started beside it
        assert sorted(r.job.trial_id for r in ex._running.values()) == [2, 3]
        trials = {t.id: t for t in ex.wait() + ex.wait()}
    finally:
        ex.shutdown()
    assert {t.status for t in trials.values()} == {"completed"}, [t.error for t in trials.values()]


@pytest.mark.slow
def test_a_wave_dispatches_one_training_per_worker_at_once(monkeypatch):
    """Two queued trials with a free worker each are both sent to training, to two processes, before
    either finishes; a third whose latency is timed here waits for the wave to end."""
    from mnas.run import local

    lat = local.LatencyMeasurement({}, 1.0, 1, 1)
    monkeypatch.setattr(local, "measure_latency", lambda arch, job: lat)
    arch = zoo.get("mnasnet-small").canonical
    long = TrainTask(dataset="digits", resolution=16, width_multiplier=0.25, device="cpu", epochs=500)
    here = LatencyJob("onnxruntime", None)
    ex = LocalExecutor(ExecutorConfig(workers=2))
    try:
        for i in (1, 2, 3):
            ex.submit(TrialJob(i, arch, here, long))
        assert ex.wait(timeout=0) == []  # trainings of minutes: none can be done yet
        running = ex._running
        assert sorted(r.job.trial_id for r in running.values()) == [1, 2]
        procs = [ex._slots[i].proc for i in running]
        assert len({p.pid for p in procs}) == 2 and all(p.poll() is None for p in procs)
        assert [j.trial_id for j in ex._queue] == [3]  # its latency would be timed beside two trainings
        assert ex.wait(timeout=0) == [] and [j.trial_id for j in ex._queue] == [3]
    finally:
        ex.shutdown()


def children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.slow
def test_kill_9_with_two_workers_then_resume_loses_nothing(tmp_path):
    cfg = tiny(trials=6, executor={"kind": "local", "workers": 2}, **LONGER)
    path = write_config(tmp_path, cfg)
    proc = subprocess.Popen([sys.executable, "-m", "mnas", "search", str(tmp_path / "run"), "--config", str(path)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = tmp_path / "run" / "experiment.db"

    def states() -> list[str]:
        if not db.exists():
            return []
        try:
            with sqlite3.connect(db, timeout=1) as c:
                return [s for (s,) in c.execute("SELECT status FROM trials ORDER BY id")]
        except sqlite3.OperationalError:
            return []

    wait_for(lambda: proc.poll() is not None or (states().count("completed") >= 2 and "running" in states()),
             progress=[states, lambda: cpu_seconds(proc.pid)], what="2 completed trials and more in flight")
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # orphaned workers notice and exit instead of training for no one
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text()
                             .rsplit(")", 1)[1].split()[0] for p in workers), what="the orphaned workers to exit")
    before = states()
    assert "running" in before and before.count("completed") < 6
    r = run_cli("search", tmp_path / "run", "--config", path, "--resume")
    assert r.code == 0, r.stderr
    with Store(tmp_path / "run", create=False) as store:
        after = store.trials()
    assert len(after) == 6 and all(t.status == "completed" for t in after)
    assert len({t.arch for t in after}) == 6
