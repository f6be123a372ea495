"""The live view: every finished trial is mirrored into an Optuna study beside the experiment, read back here
with Optuna's own API (what optuna-dashboard reads)."""

import json
import re
from pathlib import Path

import optuna
import pytest

from mnas.search.config import config_from_dict
from mnas.search.driver import Search
from mnas.search.mirror import STUDY_NAME, storage_url
from mnas.space import load_space
from mnas.store import Store, TrialStatus
from mnas.testing import cpu_seconds, wait_for


def test_every_trial_is_mirrored_with_its_values(tiny_search_copy):
    run = tiny_search_copy  # a finished search through the CLI, mirrored as it ran
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(run))
    with Store(run, readonly=True) as store:
        trials = store.trials()
    assert len(trials) == 3
    mirrored = {t.number: t for t in study.get_trials() if "placeholder" not in t.user_attrs}
    assert sorted(mirrored) == [t.id for t in trials]  # Optuna's trial N is mnas trial N
    for t in trials:
        m = mirrored[t.id]
        assert m.state == optuna.trial.TrialState.COMPLETE and t.status is TrialStatus.COMPLETED
        assert m.values == pytest.approx([t.accuracy, t.latency_ms]) and m.user_attrs["mnas_trial_id"] == t.id
        assert m.user_attrs["reward"] == pytest.approx(t.reward) and m.user_attrs["arch"] == t.arch
        assert m.params == load_space().values(t.tokens)


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_a_mirror_missing_trials_is_completed_on_resume(tiny_search_copy, tiny_search_config):
    (tiny_search_copy / "optuna.db").unlink()  # e.g. deleted, or a kill -9 before the mirror was written
    with Search.open(config_from_dict(dict(tiny_search_config, trials=4)), tiny_search_copy, resume=True) as run:
        run.run()
    open_files = {p.resolve() for p in Path("/proc/self/fd").iterdir() if p.exists()}
    assert tiny_search_copy.resolve() / "optuna.db" not in open_files  # the closed search let go of its mirror
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(tiny_search_copy))
    assert [t.user_attrs.get("mnas_trial_id") for t in study.get_trials()] == [None, 1, 2, 3, 4]


@pytest.mark.browser
def test_optuna_dashboard_lists_the_trials_in_a_browser(tiny_search_copy, tmp_path):
    """The one documented command (optuna-dashboard sqlite:///RUN/optuna.db) serves the search, and its page,
    rendered by headless Chromium, lists every trial."""
    import shutil
    import socket
    import subprocess
    import sys
    import urllib.request

    from test_report_html import chromium, run_chromium

    pytest.importorskip("optuna_dashboard", reason="the live extra (make setup installs it)")
    exe = chromium()
    run = tiny_search_copy  # 3 trials, mirrored as they finished
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    server = subprocess.Popen([cli, storage_url(run), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"

        def listed():
            try:
                return json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=5).read())
            except OSError:
                return None

        studies = wait_for(lambda: server.poll() is not None or listed(), progress=[lambda: cpu_seconds(server.pid)],
                           poll_s=0.3, what="optuna-dashboard to answer")
        assert isinstance(studies, dict), "optuna-dashboard exited"
        sid = next(s["study_id"] for s in studies["study_summaries"] if s["study_name"] == STUDY_NAME)
        def page(query=""):
            html = run_chromium(exe, tmp_path, "--virtual-time-budget=20000", "--dump-dom",
                                f"{base}/dashboard/studies/{sid}/trials{query}").stdout
            return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", html, flags=re.S)))

        detail = json.loads(urllib.request.urlopen(f"{base}/api/studies/{sid}", timeout=30).read())
        assert detail["objective_names"] == ["accuracy", "latency_ms"]  # named objectives, not "Objective 0"
        assert detail["directions"] == ["maximize", "minimize"] and detail["best_trials"]  # the Pareto front
        text = page()
        assert "4 Trials" in text, text[:500]  # trial 0 is the placeholder that aligns the numbers with the ids
        assert all(f"Trial {n} Complete" in text for n in (1, 2, 3))
        assert "mnas trial ids start at 1" in text  # the first trial shown says what it is
        with Store(run, readonly=True) as store:
            first = store.trial(1)
        text = page("?numbers=1")  # Optuna's trial 1 is mnas trial 1, with our attributes and named objectives
        assert "Trial 1 (trial_id=" in text and first.arch in text and "latency_ms" in text, text[:800]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_scalars_per_trial(tiny_search):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (make setup installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tiny_search  # a PPO search of 3 trials, with tensorboard: true where the extra is installed
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    with Store(run, readonly=True) as store:
        trials = {t.id: t for t in store.trials()}
    reward = {e.step: e.value for e in events.Scalars("trial/reward")}
    assert reward == pytest.approx({i: t.reward for i, t in trials.items()})
    latency = {e.step: e.value for e in events.Scalars("trial/latency_ms")}
    assert latency == pytest.approx({i: t.latency_ms for i, t in trials.items()}, rel=1e-6)
    best = [e.value for e in events.Scalars("trial/best_reward")]
    assert best == sorted(best) and best[-1] == pytest.approx(max(t.reward for t in trials.values()))
    assert len(events.Scalars("strategy/entropy")) == 3  # PPO reports its policy's entropy after each tell


KILL_BEFORE_THE_LOG = """
import os, signal, sys
import mnas.search.tensorboard as tb

add = tb.ScalarLog.add


def add_or_die(self, trial, diagnostics=None):
    if trial.id == 2:  # the store has committed trial 2; the log has not seen it: the worst moment
        os.kill(os.getpid(), signal.SIGKILL)
    add(self, trial, diagnostics)


tb.ScalarLog.add = add_or_die
sys.argv = ["mnas", *sys.argv[1:]]
from mnas.cli import entry
entry()
"""


@pytest.mark.slow
def test_tensorboard_gets_the_trials_a_kill_9_left_out_on_resume(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (make setup installs it)")
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mnas.testing import tiny, write_config

    cfg = write_config(tmp_path, tiny(trials=3, tensorboard=True, live_view=False))
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_THE_LOG, "search", str(run), "--config", str(cfg)],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr  # a real SIGKILL, after trial 2 was committed
    with Store(run, readonly=True) as store:
        assert [t.id for t in store.trials() if t.status is TrialStatus.COMPLETED] == [1, 2]
    r = subprocess.run([sys.executable, "-m", "mnas", "search", str(run), "--config", str(cfg), "--resume"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with Store(run, readonly=True) as store:
        trials = {t.id: t for t in store.trials()}
    assert len(trials) == 3 and all(t.status is TrialStatus.COMPLETED for t in trials.values())
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    reward = {e.step: e.value for e in events.Scalars("trial/reward")}
    assert reward == pytest.approx({i: t.reward for i, t in trials.items()})
    best = {e.step: e.value for e in events.Scalars("trial/best_reward")}
    by_finish = sorted(trials.values(), key=lambda t: t.finished)
    assert best == pytest.approx({t.id: max(u.reward for u in by_finish[:k + 1]) for k, t in enumerate(by_finish)})


def test_tensorboard_sync_writes_only_what_the_log_lacks(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (make setup installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mnas.search.tensorboard import ScalarLog
    from mnas.store import Trial

    trials = [Trial(i, f"a{i}", TrialStatus.COMPLETED, accuracy=0.5, latency_ms=1.0, reward=r, finished=float(i))
              for i, r in ((1, 0.3), (2, 0.5), (3, 0.4))] + [Trial(4, "a4", TrialStatus.FAILED, finished=4.0)]
    first = ScalarLog(tmp_path)
    for t in (trials[0], trials[2]):  # trial 2 finished in the store, killed before its log line
        first.add(t)
    first.close()
    again = ScalarLog(tmp_path)
    assert again.logged == {1, 3}
    assert again.sync(trials) == 1 and again.best == 0.5
    assert again.sync(trials) == 0
    again.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(e.step for e in events.Scalars("trial/reward")) == [1, 2, 3]
    assert {e.step: e.value for e in events.Scalars("trial/best_reward")}[2] == pytest.approx(0.5)


# -- the mirror as an Optuna user reads it: a real Optuna SQLite study, written from trial records

def _small_space():
    """Two of mnasnet's decisions: each parameter of a mirrored trial is a row Optuna writes on its own."""
    from types import SimpleNamespace

    return SimpleNamespace(decisions=load_space().decisions[:2])


def _trials(space=None) -> list:
    from mnas.store import Trial

    space = space or load_space()
    t0 = 1_800_000_000.0
    tokens = [[(i + k) % len(d) for k, d in enumerate(space.decisions)] for i in range(3)]
    return [Trial(1, "a1", TrialStatus.COMPLETED, tokens[0], accuracy=0.6, latency_ms=3.0, reward=0.55,
                  created=t0, started=t0 + 1, finished=t0 + 31),
            Trial(2, "a2", TrialStatus.FAILED, tokens[1], latency_ms=2.0, error="boom", created=t0 + 31,
                  started=t0 + 32, finished=t0 + 40),
            Trial(3, "a3", TrialStatus.COMPLETED, tokens[2], accuracy=0.5, latency_ms=1.0, reward=0.52,
                  created=t0 + 40, started=t0 + 41, finished=t0 + 101)]


def _study(directory):
    return optuna.load_study(study_name=STUDY_NAME, storage=storage_url(directory))


def test_the_mirror_has_named_objectives_labels_aligned_numbers_and_real_times(tmp_path):
    from datetime import datetime

    from mnas.search.mirror import OptunaMirror

    space, trials = load_space(), _trials()
    mirror = OptunaMirror(tmp_path, space)
    assert mirror.sync(trials) == 3
    mirror.close()
    study = _study(tmp_path)
    assert study.metric_names == ["accuracy", "latency_ms"]
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    by_number = {t.number: t for t in study.get_trials()}
    assert sorted(by_number) == [0, 1, 2, 3] and "placeholder" in by_number[0].user_attrs
    for t in trials:
        m = by_number[t.id]  # Optuna's trial N is mnas trial N
        assert m.user_attrs["mnas_trial_id"] == t.id and m.user_attrs["arch"] == t.arch
        assert m.params == space.values(t.tokens)  # labels (b1.op = 'mb6'), not indices
        assert m.datetime_start == datetime.fromtimestamp(t.started)
        assert m.datetime_complete == datetime.fromtimestamp(t.finished)
    assert by_number[1].values == [0.6, 3.0] and by_number[1].user_attrs["reward"] == 0.55
    assert by_number[2].state == optuna.trial.TrialState.FAIL and by_number[2].user_attrs["error"] == "boom"
    assert {t.number for t in study.best_trials} == {1, 3}  # the Pareto front the dashboard draws


def test_a_trial_that_finishes_early_waits_for_the_one_before_it(tmp_path):
    from mnas.search.mirror import OptunaMirror

    space = _small_space()
    first, running, third = _trials(space)
    (tmp_path / "gap").mkdir()
    mirror = OptunaMirror(tmp_path, space)
    mirror.sync([first, replace_status(running, TrialStatus.RUNNING)])
    mirror.add(third)  # finished while trial 2 still runs
    assert [t.number for t in mirror.study.get_trials()] == [0, 1]
    mirror.add(running)
    mirror.add(replace_status(running, TrialStatus.COMPLETED, accuracy=0.7, reward=0.6))  # retried: rewritten
    mirror.close()
    study = _study(tmp_path)
    assert [t.user_attrs.get("mnas_trial_id") for t in study.get_trials()] == [None, 1, 2, 3]
    assert study.trials[2].state == optuna.trial.TrialState.COMPLETE and study.trials[2].values[0] == 0.7

    gap = OptunaMirror(tmp_path / "gap", space)  # a store without trial 1: a placeholder, no stall
    assert gap.sync([running, third]) == 2
    assert [t.user_attrs.get("mnas_trial_id") for t in gap.study.get_trials()] == [None, None, 2, 3]
    gap.close()


def replace_status(t, status, **fields):
    from dataclasses import replace

    return replace(t, status=status, **fields)


def test_an_older_mirror_is_rebuilt_and_a_broken_one_is_skipped_in_one_line(tmp_path, caplog):
    from mnas.search.mirror import close_mirror, open_mirror

    space = _small_space()
    trials = _trials(space)
    old = optuna.create_study(storage=storage_url(tmp_path), study_name=STUDY_NAME, direction="maximize")
    indices = optuna.distributions.CategoricalDistribution(list(range(len(space.decisions[0]))))
    for t in trials:  # as mnas wrote it before: the reward only, token indices, Optuna number = id - 1
        old.add_trial(optuna.trial.create_trial(value=t.reward or 0.0, params={"b1.op": t.tokens[0]},
                                                distributions={"b1.op": indices}, user_attrs={"mnas_trial_id": t.id}))
    mirror = open_mirror(tmp_path, space, trials)
    assert mirror is not None and mirror.rebuilt
    close_mirror(mirror)
    study = _study(tmp_path)
    assert study.metric_names == ["accuracy", "latency_ms"] and len(study.directions) == 2
    assert [t.user_attrs.get("mnas_trial_id") for t in study.get_trials()] == [None, 1, 2, 3]
    assert study.trials[1].params == {"b1.op": "conv", "b1.kernel": 5}  # labels of tokens (0, 1)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "optuna.db").write_text("not a database")
    caplog.clear()
    assert open_mirror(broken, space, trials) is None
    [record] = [r for r in caplog.records if "live view" in r.getMessage()]
    assert "\n" not in record.getMessage() and record.exc_info is None
