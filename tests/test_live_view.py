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
from search_helpers import tiny

TINY = tiny(trials=3)


def test_every_trial_is_mirrored_with_its_values(tmp_path):
    run = Search.open(config_from_dict(TINY), tmp_path / "run")
    run.run()
    run.close()
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(tmp_path / "run"))
    with Store(tmp_path / "run", readonly=True) as store:
        trials = store.trials()
    mirrored = {t.user_attrs["mnas_trial_id"]: t for t in study.get_trials()}
    assert sorted(mirrored) == [t.id for t in trials]
    for t in trials:
        m = mirrored[t.id]
        assert m.state == optuna.trial.TrialState.COMPLETE and t.status is TrialStatus.COMPLETED
        assert m.value == pytest.approx(t.reward)
        assert m.user_attrs["accuracy"] == pytest.approx(t.accuracy)
        assert m.user_attrs["latency_ms"] == pytest.approx(t.latency_ms) and m.user_attrs["arch"] == t.arch
        assert [m.params[d.name] for d in load_space().decisions] == t.tokens


def test_a_mirror_missing_trials_is_completed_on_resume(tmp_path):
    run = Search.open(config_from_dict(TINY), tmp_path / "run")
    run.run()
    run.close()
    (tmp_path / "run" / "optuna.db").unlink()  # e.g. deleted, or a kill -9 before the mirror was written
    run = Search.open(config_from_dict(dict(TINY, trials=4)), tmp_path / "run", resume=True)
    run.run()
    run.close()
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(tmp_path / "run"))
    assert sorted(t.user_attrs["mnas_trial_id"] for t in study.get_trials()) == [1, 2, 3, 4]


def test_optuna_dashboard_lists_the_trials_in_a_browser(tmp_path):
    """The one documented command (optuna-dashboard sqlite:///RUN/optuna.db) serves the search, and its page,
    rendered by headless Chromium, lists every trial."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from test_report_html import chromium, run_chromium

    pytest.importorskip("optuna_dashboard", reason="the live extra (make setup installs it)")
    exe = chromium()
    run = Search.open(config_from_dict(TINY), tmp_path / "run")
    run.run()
    run.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    server = subprocess.Popen([cli, storage_url(tmp_path / "run"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base, deadline, studies = f"http://127.0.0.1:{port}", time.time() + 60, None
        while studies is None and time.time() < deadline:
            try:
                studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=5).read())
            except OSError:
                time.sleep(0.3)
        assert studies, "optuna-dashboard did not answer"
        sid = next(s["study_id"] for s in studies["study_summaries"] if s["study_name"] == STUDY_NAME)
        page = run_chromium(exe, tmp_path, "--virtual-time-budget=20000", "--dump-dom",
                            f"{base}/dashboard/studies/{sid}/trials").stdout
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", page, flags=re.S)))
        assert "3 Trials" in text, text[:500]
        assert all(f"Trial {n} Complete" in text for n in range(3))
        with Store(tmp_path / "run", readonly=True) as store:
            first = store.trial(1)
        assert first.arch in text and "latency_ms" in text  # the selected (first) trial shows our attributes
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_scalars_per_trial(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (make setup installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny(trials=3, tensorboard=True, **{"strategy.name": "ppo"})
    run = Search.open(config_from_dict(cfg), tmp_path / "run")
    run.run()
    run.close()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    with Store(tmp_path / "run", readonly=True) as store:
        trials = {t.id: t for t in store.trials()}
    reward = {e.step: e.value for e in events.Scalars("trial/reward")}
    assert reward == pytest.approx({i: t.reward for i, t in trials.items()})
    latency = {e.step: e.value for e in events.Scalars("trial/latency_ms")}
    assert latency == pytest.approx({i: t.latency_ms for i, t in trials.items()}, rel=1e-6)
    best = [e.value for e in events.Scalars("trial/best_reward")]
    assert best == sorted(best) and best[-1] == pytest.approx(max(t.reward for t in trials.values()))
    assert len(events.Scalars("strategy/entropy")) == 3  # PPO reports its policy's entropy after each tell
