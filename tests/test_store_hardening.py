"""Issue 12, the experiment store and the search driver: one writer per directory, no silent restarts,
readers that never write, validation before the first trial, checked results, a full disk.

Trials here come from scripted executors (instant, with the numbers a broken worker or agent might send),
so only the tests that need a real process pay for one."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from mnas import MnasError
from mnas.search.config import config_from_dict
from mnas.search.driver import Search
from mnas.store import Store, Trial, TrialStatus
from mnas.store.query import best_trial, ranked_trials
from mnas.store.sqlite import SCHEMA_VERSION
from mnas.testing import (ScriptedExecutor, cpu_seconds, install_plugin, plugins_on_path, run_cli as mnas,
                          scripted_search, tiny as _tiny, wait_for, write_config)


def tiny(**changes):
    return _tiny(**{"trials": 4, **changes})


def sql(db, *statements):
    """Run statements in their own connection, closed after (so the WAL is folded into the file)."""
    c = sqlite3.connect(db)
    try:
        for statement, *params in statements:
            c.execute(statement, *params)
        c.commit()
    finally:
        c.close()


def one_line_error(r, needle):
    lines = r.stderr.strip().splitlines()
    return r.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-trial experiment to copy: build it once."""
    run = tmp_path_factory.mktemp("finished") / "run"
    scripted_search(run, [(0.5, 1.0), (0.6, 2.0), (0.7, 0.5), (0.4, 3.0)])
    return run


def copy_of(finished, tmp_path):
    return Path(shutil.copytree(finished, tmp_path / "run"))


# -- 1. one writer per experiment directory

def wait_for_holder(lock: Path, pid: int) -> None:
    def named() -> bool:
        try:
            return json.loads(lock.read_text())["pid"] == pid
        except (OSError, ValueError, KeyError):
            return False

    wait_for(named, progress=[lambda: cpu_seconds(pid)], what=f"{lock} to name process {pid}")


def test_a_second_writer_is_refused_naming_the_first_and_kill_9_frees_the_directory(tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path, tiny(trials=1000))
    holder = subprocess.Popen([sys.executable, "-m", "mnas", "search", str(run), "--config", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_holder(run / "experiment.lock", holder.pid)
        for extra in ([], ["--resume"]):
            r = mnas("search", run, "--config", cfg, *extra)
            assert one_line_error(r, f"in use by process {holder.pid} (mnas search {run} --config"), r.stderr
        with pytest.raises(MnasError, match=f"in use by process {holder.pid} .* since 20"):
            Store(run, create=False)
        with Store(run, readonly=True) as reader:  # readers need no lock and do not wait for one
            reader.counts()
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel alone drops the lock
        holder.wait()
    with Store(run, create=False) as store:
        assert store.get_meta("schema_version") == SCHEMA_VERSION


def test_the_lock_is_held_for_the_writers_life_only(tmp_path):
    with Store(tmp_path / "run") as first:
        with pytest.raises(MnasError, match=f"in use by process {os.getpid()}"):
            Store(tmp_path / "run", create=False)
        first.add_trial("a", [0])
    with Store(tmp_path / "run", create=False) as second:
        assert second.counts()["total"] == 1


# -- 2. no silent restarts

def test_resume_needs_an_existing_started_experiment(tmp_path):
    cfg = config_from_dict(tiny())
    with pytest.raises(MnasError, match="does not exist"):
        Search.open(cfg, tmp_path / "missing", resume=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(MnasError, match="experiment.db missing"):
        Search.open(cfg, tmp_path / "empty", resume=True)
    Store(tmp_path / "not-started").close()  # a first run that failed before its first trial
    with pytest.raises(MnasError, match="no started experiment to resume"):
        Search.open(cfg, tmp_path / "not-started", resume=True)


@pytest.mark.parametrize("content,needle", [(b"", r"empty \(0 bytes\)"),
                                            (b"SQLite format 3\x00" + b"\xff" * 5000, "not a usable"),
                                            (b"not a database at all" * 100, "not a usable")])
def test_an_empty_or_damaged_database_is_never_started_over(tmp_path, content, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.db").write_bytes(content)
    for resume in (False, True):
        with pytest.raises(MnasError, match=needle):
            Search.open(config_from_dict(tiny()), run, resume=resume)
    assert (run / "experiment.db").read_bytes() == content


def test_only_a_new_or_empty_directory_starts_an_experiment(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(MnasError, match="not empty and holds no experiment"):
        Search.open(config_from_dict(tiny()), tmp_path / "busy")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["experiment.lock", "notes.txt"]
    (tmp_path / "mkdired").mkdir()
    assert scripted_search(tmp_path / "mkdired", [(0.5, 1.0)]).completed == 1


def test_resume_refuses_a_store_whose_checkpoints_are_gone(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    sql(run / "experiment.db", ("DELETE FROM checkpoints",))
    with pytest.raises(MnasError, match="4 trials but no controller checkpoint"):
        Search.open(config_from_dict(tiny()), run, resume=True, executor=ScriptedExecutor())


def test_a_damaged_page_or_json_gives_one_line_everywhere(tmp_path):
    run = tmp_path / "run"
    scripted_search(run, [(0.5, 1.0)] * 40)
    db = run / "experiment.db"
    sql(db, ("UPDATE trials SET train = ?", (json.dumps({"log": "x" * 3000}),)))  # the trials fill most pages
    json_damaged = Path(shutil.copytree(run, tmp_path / "json"))
    sql(json_damaged / "experiment.db", ("UPDATE trials SET tokens = '[1, 2' WHERE id = 7",),
        ("UPDATE meta SET value = '{\"alpha\": ' WHERE key = 'reward'",))
    data = bytearray(db.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")  # from the file header
    pages = len(data) // page_size
    data[pages // 2 * page_size:(pages // 2 + 1) * page_size] = b"\xa5" * page_size  # not a b-tree page
    db.write_bytes(bytes(data))
    for directory, needle in ((run, "not a usable experiment database"), (json_damaged, "not valid JSON")):
        for args in (["trials", directory], ["report", directory, "--json", "--no-plots", "--no-html"]):
            assert one_line_error(mnas(*args), needle)
        with pytest.raises(MnasError, match=needle):
            Search.open(config_from_dict(tiny(trials=40)), directory, resume=True, executor=ScriptedExecutor())


# -- 3. readers never write

def test_a_foreign_sqlite_file_is_not_an_experiment_and_is_left_as_it_was(tmp_path):
    run = tmp_path / "foreign"
    run.mkdir()
    sql(run / "experiment.db", ("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",),
        ("INSERT INTO invoices (total) VALUES (9.5)",))
    before = (run / "experiment.db").read_bytes()
    for args in (["trials", run], ["report", run, "--json"],
                 ["export", run, "--random-weights", "--out", tmp_path / "m.onnx"]):
        assert one_line_error(mnas(*args), "not an mnas experiment")
    assert sorted(p.name for p in run.iterdir()) == ["experiment.db"]  # not even a plots folder
    for resume in (False, True):  # a writer refuses it too, before it writes a byte
        with pytest.raises(MnasError, match="not an mnas experiment"):
            Search.open(config_from_dict(tiny()), run, resume=resume)
    assert (run / "experiment.db").read_bytes() == before


def test_a_reader_cannot_write(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    before = (run / "experiment.db").read_bytes()
    with Store(run, readonly=True) as store:
        assert store.counts()["completed"] == 4
        with pytest.raises(MnasError, match="cannot be written"):
            store.add_trial("stem32:head1280", [0])
    assert (run / "experiment.db").read_bytes() == before


def test_a_reader_sees_a_running_writers_commits(tmp_path):
    with Store(tmp_path / "run") as writer:
        writer.add_trial("a", [0])
        with Store(tmp_path / "run", readonly=True) as reader:
            assert reader.counts()["running"] == 1
            writer.add_trial("b", [1])
            assert reader.counts()["running"] == 2


@contextmanager
def read_only_mount(source: Path, target: Path):
    target.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True).returncode != 0:
        pytest.skip("a read-only bind mount needs root (mount --bind)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True, capture_output=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_readers_work_on_a_read_only_mount(finished, tmp_path):
    with read_only_mount(copy_of(finished, tmp_path), tmp_path / "ro") as ro:
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")
        records = json.loads(mnas("trials", ro, "--json").stdout)
        assert len(records) == 4 and all(t["status"] == "completed" for t in records)
        r = mnas("report", ro, "--json", "--no-plots", "--no-html")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["best"]["accuracy"] == 0.7
        assert one_line_error(mnas("report", ro), "add --no-plots --no-html")  # its outputs cannot go there


# -- 4. validation before the first trial

@pytest.mark.parametrize("change,needle", [
    ({"latency.backend": "nosuch"}, "unknown latency backend 'nosuch'"),
    ({"proxy.dataset": "nosuch"}, "unknown dataset 'nosuch'"),
    ({"proxy.dataset": "npz:/nonexistent/data.npz"}, "not found"),
    ({"proxy.device": "tpu"}, "unknown device 'tpu'"),
    ({"proxy.width_multiplier": 1e9}, r"proxy.width_multiplier 1e\+09: .* over the maximum"),
    ({"proxy.batch_size": 10_000_000}, r"the proxy model .* needs about [\d,.]+ GiB"),
    ({"proxy.resolution": 200_000}, r"the proxy model .* needs about [\d,.]+ GiB"),
    ({"latency.resolution": 200_000}, r"the deployed model .* needs about [\d,.]+ GiB"),
])
def test_a_config_that_would_fail_every_trial_is_refused_before_the_first(tmp_path, change, needle):
    cfg = config_from_dict(tiny(**change))
    executor = ScriptedExecutor()
    with pytest.raises(MnasError, match=needle):
        Search.open(cfg, tmp_path / "run", executor=executor)
    assert not executor.attempts
    with Store(tmp_path / "run", readonly=True) as store:
        assert store.counts()["total"] == 0 and store.get_meta("config") is None


def test_the_cli_refuses_an_absurd_size_in_one_line_and_the_fixed_config_starts(tmp_path):
    cfg = write_config(tmp_path, tiny(**{"proxy.width_multiplier": 1e9}))
    r = mnas("search", tmp_path / "run", "--config", cfg)
    assert one_line_error(r, "proxy.width_multiplier 1e+09")
    assert scripted_search(tmp_path / "run", [(0.5, 1.0)]).completed == 1  # the same --out, no --resume


# -- 5. results are checked

def test_unusable_results_fail_their_trial_and_never_rank(tmp_path):
    script = [(0.55, 2.0), (float("nan"), 1.0), (1.5, 1.0), (-0.1, 1.0), (float("inf"), 1.0), (None, 1.0),
              (0.9, float("nan")), (0.9, 0.0), (0.9, -3.0), (0.9, float("inf")), (0.9, "fast")]
    state = scripted_search(tmp_path / "run", script)
    assert (state.completed, state.failed) == (1, len(script) - 1)
    with Store(tmp_path / "run", readonly=True) as store:
        trials = store.trials()
        best = best_trial(store)
        assert [t.id for t in ranked_trials(store)] == [best.id]
    assert (best.accuracy, best.latency_ms) == (0.55, 2.0)
    for t in trials[1:]:
        assert t.status is TrialStatus.FAILED and t.reward is None
        assert t.error.startswith("invalid result from scripted: ")
        assert ("accuracy" in t.error) == (t.accuracy is None) and ("latency" in t.error) == (t.latency_ms is None)
    report = json.loads(mnas("report", tmp_path / "run", "--json", "--no-plots", "--no-html").stdout)
    assert report["best"]["id"] == best.id and report["failed"] == len(script) - 1


def test_failed_trials_are_retried_on_resume(tmp_path):
    cfg = config_from_dict(tiny(trials=3))
    s = Search.open(cfg, tmp_path / "run", executor=ScriptedExecutor(fail_first=True))
    assert s.run().failed == 3
    s.close()
    s = Search.open(cfg, tmp_path / "run", resume=True, executor=ScriptedExecutor())
    state = s.run(retry_failed=True)
    s.close()
    assert (state.completed, state.failed, state.total) == (3, 0, 3)
    with Store(tmp_path / "run", readonly=True) as store:
        assert all(t.attempts == 2 for t in store.trials())


# -- a full disk

FILLER = '''
import time

from mnas.run.local import LocalExecutor
from mnas.store import Trial, TrialStatus


class Filler(LocalExecutor):
    """Instant trials with a bulky training record: a small disk fills after a few."""

    def wait(self, timeout=None):
        job = self._queue.popleft()
        return [Trial(job.trial_id, job.arch, TrialStatus.COMPLETED, accuracy=0.5, latency_ms=1.0, params=1,
                      macs=1, train={"log": "x" * 100_000}, worker="filler", started=time.time(),
                      finished=time.time())]
'''


@contextmanager
def small_disk(target: Path, size: str):
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                      capture_output=True).returncode != 0:
        pytest.skip("a small disk needs root (mount -t tmpfs)")
    try:
        yield target
    finally:
        # not lazy: a search that ran in this process must have released every file it opened there
        subprocess.run(["umount", str(target)], check=True)


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_a_full_disk_stops_the_search_in_one_line_and_resume_continues(tmp_path):
    plugin = install_plugin(tmp_path / "site", "filler", FILLER, {"mnas.executors": {"filler": "filler:Filler"}})
    cfg = write_config(tmp_path, tiny(trials=60, **{"executor.kind": "filler"}))
    with small_disk(tmp_path / "disk", "2m") as disk:
        with plugins_on_path(plugin):
            r = mnas("search", disk / "run", "--config", cfg)
        last = r.stderr.strip().splitlines()[-1]  # after the progress bar of the trials that ran
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert last.startswith("error: disk full while writing") and last.endswith("continue with --resume")
        with Store(disk / "run", readonly=True) as store:
            before = {t.id: t.arch for t in store.trials(TrialStatus.COMPLETED)}
        assert 3 <= len(before) < 60
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
        with plugins_on_path(plugin):
            r = mnas("search", disk / "run", "--config", cfg, "--resume")
        assert r.returncode == 0, r.stderr
        with Store(disk / "run", readonly=True) as store:
            after = store.trials()
    assert len(after) == 60 and all(t.status is TrialStatus.COMPLETED for t in after)
    assert before.items() <= {t.id: t.arch for t in after}.items()
