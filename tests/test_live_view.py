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
    mirrored = {t.user_attrs["mnas_trial_id"]: t for t in study.get_trials()}
    assert sorted(mirrored) == [t.id for t in trials]
    for t in trials:
        m = mirrored[t.id]
        assert m.state == optuna.trial.TrialState.COMPLETE and t.status is TrialStatus.COMPLETED
        assert m.value == pytest.approx(t.reward)
        assert m.user_attrs["accuracy"] == pytest.approx(t.accuracy)
        assert m.user_attrs["latency_ms"] == pytest.approx(t.latency_ms) and m.user_attrs["arch"] == t.arch
        assert [m.params[d.name] for d in load_space().decisions] == t.tokens


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_a_mirror_missing_trials_is_completed_on_resume(tiny_search_copy, tiny_search_config):
    (tiny_search_copy / "optuna.db").unlink()  # e.g. deleted, or a kill -9 before the mirror was written
    with Search.open(config_from_dict(dict(tiny_search_config, trials=4)), tiny_search_copy, resume=True) as run:
        run.run()
    open_files = {p.resolve() for p in Path("/proc/self/fd").iterdir() if p.exists()}
    assert tiny_search_copy.resolve() / "optuna.db" not in open_files  # the closed search let go of its mirror
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(tiny_search_copy))
    assert sorted(t.user_attrs["mnas_trial_id"] for t in study.get_trials()) == [1, 2, 3, 4]


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
        page = run_chromium(exe, tmp_path, "--virtual-time-budget=20000", "--dump-dom",
                            f"{base}/dashboard/studies/{sid}/trials").stdout
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", page, flags=re.S)))
        assert "3 Trials" in text, text[:500]
        assert all(f"Trial {n} Complete" in text for n in range(3))
        with Store(run, readonly=True) as store:
            first = store.trial(1)
        assert first.arch in text and "latency_ms" in text  # the selected (first) trial shows our attributes
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
