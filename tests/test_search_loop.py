"""Real searches end to end on tiny settings: digits proxy, real onnxruntime timings, a real SQLite file."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mnas import MnasError
from mnas.search.config import config_from_dict, load_config
from mnas.store import Store
from mnas.search.driver import Search
from mnas.testing import cpu_seconds, run_cli as mnas, tiny, wait_for, write_config


def test_search_records_every_trial_with_reward(tmp_path):
    exp = Search.open(config_from_dict(tiny(trials=4)), tmp_path / "run")
    state = exp.run()
    assert state.total == 4 and state.completed == 4 and state.failed == 0
    trials = exp.store.trials()
    assert len({t.arch for t in trials}) == 4
    for t in trials:
        assert 0 <= t.accuracy <= 1 and t.latency_ms > 0 and t.params > 0 and t.macs > 0
        # reward recomputed from the stored numbers: soft constraint, T = 1 ms
        assert t.reward == pytest.approx(t.accuracy * (t.latency_ms / 1.0) ** -0.07)
        assert t.latency["backend"] == "onnxruntime" and t.latency["resolution"] == 32
    assert exp.store.latest_checkpoint()["strategy"]["strategy"] == "random"


def test_trials_cli_json_and_second_run_refused(tiny_search_copy, tiny_search_config, tmp_path):
    run = tiny_search_copy  # a finished 3-trial search
    records = json.loads(mnas("trials", run, "--json").stdout)
    assert len(records) == 3 and {"arch", "status", "accuracy", "latency_ms", "reward"} <= records[0].keys()
    cfg = write_config(tmp_path, tiny_search_config)
    again = mnas("search", run, "--config", cfg)
    assert again.returncode == 2 and "--resume" in again.stderr and len(again.stderr.splitlines()) == 1


def test_nan_loss_fails_the_trial_not_the_search(tmp_path):
    cfg = config_from_dict(tiny(trials=2, **{"proxy.lr": 1e30, "proxy.optimizer": "sgd"}))
    with Search.open(cfg, tmp_path / "run") as run:  # closed: the store's lock goes with it
        state = run.run()
    assert state.total == 2 and state.failed == 2
    with Store(tmp_path / "run", create=False) as store:
        assert all("not finite" in (t.error or "") for t in store.trials())


@pytest.mark.slow
def test_kill_9_then_resume_loses_nothing_and_keeps_the_controller(tmp_path):
    """Accuracy-only reward (no T) makes the whole search deterministic, so a killed-and-resumed PPO
    search must propose exactly the architectures an uninterrupted one does."""
    # screen 0: the controller alone (its latency screen times up to 20 candidates per proposal for real,
    # minutes in all here; the screen's own resume is tested in test_surrogate.py)
    cfg = tiny(trials=6, **{"strategy": {"name": "ppo", "settings": {"batch_size": 2, "screen": 0}},
                            "reward": {"preset": "soft"}})
    path = write_config(tmp_path, cfg)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mnas", "search", str(tmp_path / "killed"),
                             "--config", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = tmp_path / "killed" / "experiment.db"

    def completed() -> int:
        if not db.exists():  # connecting would create it
            return 0
        try:
            with sqlite3.connect(db, timeout=1) as c:
                return c.execute("SELECT COUNT(*) FROM trials WHERE status='completed'").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet, or busy
            return 0

    wait_for(lambda: proc.poll() is not None or completed() >= 3, progress=[completed, lambda: cpu_seconds(proc.pid)],
             what="3 completed trials")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        before = c.execute("SELECT id, arch, status, reward FROM trials ORDER BY id").fetchall()
    assert 3 <= sum(s == "completed" for _, _, s, _ in before) < 6
    r = mnas("search", tmp_path / "killed", "--config", path, "--resume")
    assert r.returncode == 0, r.stderr
    with Store(tmp_path / "killed", create=False) as store:
        after = store.trials()
    assert len(after) == 6 and all(t.status == "completed" for t in after)
    assert len({t.arch for t in after}) == 6
    kept = {(i, a, rw) for i, a, s, rw in before if s == "completed"}
    assert kept <= {(t.id, t.arch, t.reward) for t in after}  # no completed trial lost or redone

    with Search.open(config_from_dict(cfg), tmp_path / "straight") as run:
        run.run()
    with Store(tmp_path / "straight", create=False) as store:
        straight = [t.arch for t in store.trials()]
    assert [t.arch for t in after] == straight


@pytest.mark.parametrize("change,needle", [
    ({"rewrd": {}}, "rewrd"),
    ({"reward": {"alpha": "steep"}}, "reward.alpha"),
    ({"trials": 0}, "trials"),
    ({"latency": {"resolution": 2}}, "latency.resolution"),
    ({"reward": {"target_ms": 5, "target_model": "mobilenet-v2"}}, "not both"),
])
def test_config_errors_name_the_key(tmp_path, change, needle):
    cfg = {**tiny(), **change}
    with pytest.raises(MnasError, match=needle):
        config_from_dict(cfg)
    r = mnas("search", tmp_path / "x", "--config", write_config(tmp_path, cfg))
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_shipped_configs_validate():
    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo", "mnasnet-imagenet"):
        assert load_config(configs / f"{name}.yaml").trials
    assert load_config(configs / "mnasnet-imagenet.yaml").reward.target_ms == 75


def test_resume_refuses_a_changed_config_and_bad_outs_fail_in_one_line(tiny_search_copy, tiny_search_config,
                                                                      tmp_path):
    changed = write_config(tmp_path, {**tiny_search_config, "seed": 5}, "changed.yaml")
    r = mnas("search", tiny_search_copy, "--config", changed, "--resume")
    assert r.returncode == 2 and "'seed' differs" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "experiment.db").write_bytes(b"not a database at all" * 100)
    for args, needle in [(["search", tmp_path / "file", "--config", changed], "is a file"),
                         (["trials", tmp_path / "junk"], "not a usable experiment database")]:
        r = mnas(*args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_the_predictor_screens_candidates_by_latency_in_the_real_loop(tmp_path):
    """The driver gives latency-screening strategies a real oracle: candidates are timed (and cached) before
    one is trained, and the queries are counted apart from the trainings."""
    # screen 2: the two trials after the initial ones are each chosen among 2 x 2 timed candidates (the
    # default, 20 per training, would time all 10 candidates of every batch: a minute here)
    cfg = tiny(trials=4, **{"strategy": {"name": "predictor",
                                         "settings": {"initial": 2, "batch_size": 2, "candidates": 10, "screen": 2}}})
    run = Search.open(config_from_dict(cfg), tmp_path / "run")
    state = run.run()
    run.close()
    assert state.completed == 4
    with Store(tmp_path / "run", readonly=True) as store:
        queries = [d.get("latency_queries", 0) for d in store.diagnostics()]
    assert queries[-1] > state.completed  # more candidates timed than trained: 2 initial, then 4 for 2 chosen
