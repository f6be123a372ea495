"""Ask/tell studies (mnas.study), pruning (mnas.run.pruning) in the study and in the search loop, and the
ask/tell example of docs/api.md. Latency is faked (a function of the architecture) except in the doc example,
which measures it for real, so the file stays within a few seconds."""

import doctest
import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import mnas
from mnas import MnasError
from mnas.run.pruning import Decider, PrunerConfig, TrialCurve
from mnas.run.trial import LatencyMeasurement
from mnas.search.config import config_from_dict
from mnas.search.driver import Search, claim_experiment
from mnas.search.reward import reward
from mnas.store import Store, Trial, TrialStatus
from mnas.testing import ScriptedExecutor, run_cli, tiny

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture
def fake_latency(monkeypatch):
    """Latency as a function of the architecture string (measuring costs a second per model)."""
    def measure(arch: str, job) -> LatencyMeasurement:
        return LatencyMeasurement({"median_ms": fake_ms(arch)}, fake_ms(arch), 1000, 2000)

    monkeypatch.setattr("mnas.study.measure_latency", measure)
    return measure


def fake_ms(arch: str) -> float:
    return 0.5 + (sum(map(ord, arch)) % 1000) / 1000


def study(path, **kw):
    args = dict(target=1.0, strategy="random", references=False, live_view=False)
    return mnas.create_study(path, **{**args, **kw})


def test_import_mnas_is_light_and_its_help_shows_the_study_api():
    code = ("import sys, mnas; heavy = [m for m in ('torch', 'optuna', 'onnxruntime') if m in sys.modules]; "
            "assert not heavy, heavy; help(mnas)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(Path(mnas.__file__).parents[1]), "PAGER": "cat", "TERM": "dumb"})
    assert r.returncode == 0, r.stderr
    for name in ("create_study(", "load_study(", "class Study", "ask(self)", "tell(self", "should_prune(self)",
                 "class TrialPruned", "open_experiment("):
        assert name in r.stdout, name


def test_pruners_stop_a_clearly_bad_curve_and_keep_the_best():
    history = [TrialCurve("completed", {1: a, 2: a + 0.05, 3: a + 0.1}, {"completed_rung_0": a}, a + 0.1)
               for a in (0.5, 0.55, 0.6, 0.65)]  # the rungs as a Decider records them
    for cfg in (PrunerConfig(name="median", startup_trials=2), PrunerConfig(name="asha", min_resource=1)):
        bad, best = Decider(cfg, history), Decider(cfg, history)
        bad.report(1, 0.1)
        best.report(1, 0.9)
        assert bad.should_prune() and not best.should_prune(), cfg.name
    off = Decider(PrunerConfig(), history)
    off.report(1, 0.0)
    assert not off.should_prune()


def test_ask_tell_records_the_measured_latency_and_the_reward(tmp_path, fake_latency):
    with study(tmp_path / "s", reward="hard") as s:
        trial = s.ask()
        assert trial.latency_ms == fake_ms(trial.arch.canonical)
        assert trial.build_model(num_classes=3).classifier.out_features == 3
        record = s.tell(trial, accuracy=0.8)
        stored = s.trials[0]
        assert stored.status is TrialStatus.COMPLETED and stored.accuracy == 0.8
        assert stored.latency_ms == trial.latency_ms and stored.reward == record.reward
        assert math.isclose(stored.reward, reward(0.8, trial.latency_ms, s._search.reward_cfg))
        assert s.config.reward.preset == "hard" and s.target_ms == 1.0


def test_tell_refuses_a_bad_accuracy_or_trial_in_one_line(tmp_path, fake_latency):
    with study(tmp_path / "s") as s:
        trial = s.ask()
        for bad, why in ((float("nan"), "got nan"), (1.5, "got 1.5"), (87, "pass 0.87"), ("0.5", "got '0.5'"),
                         (None, "needs its accuracy")):
            with pytest.raises(MnasError, match=why) as e:
                s.tell(trial, accuracy=bad)
            assert "\n" not in str(e.value)
        with pytest.raises(MnasError, match="trial 99 is not an asked"):
            s.tell(99, accuracy=0.5)
        with pytest.raises(MnasError, match="unknown state"):
            s.tell(trial, accuracy=0.5, state="done")
        s.tell(trial, accuracy=0.5)
        with pytest.raises(MnasError, match=f"trial {trial.id} is not an asked"):  # told twice
            s.tell(trial, accuracy=0.5)
        with pytest.raises(MnasError, match="step must be an integer"):
            s.ask().report(-1, 0.5)
    import optuna

    with study(tmp_path / "s2") as s:  # Optuna's own states, as its users pass them
        assert s.tell(s.ask(), state=optuna.trial.TrialState.FAIL).status is TrialStatus.FAILED
        assert s.tell(s.ask(), accuracy=0.4, state=optuna.trial.TrialState.COMPLETE).accuracy == 0.4


def test_a_pruned_trial_keeps_its_last_value_without_reward_and_fails_for_the_strategy(tmp_path, fake_latency):
    with study(tmp_path / "s", pruner={"name": "median", "startup_trials": 1}) as s:
        def objective(trial):
            good = trial.id == 1
            for step in range(3):
                trial.report(step, (0.6 if good else 0.1) + step / 100)
                if trial.should_prune():
                    raise mnas.TrialPruned()
            return 0.7

        seen = []
        s.optimize(objective, n_trials=2, callbacks=[lambda st, rec: seen.append(rec.status)])
        assert seen == [TrialStatus.COMPLETED, TrialStatus.PRUNED]
        pruned = s.trials[1]
        assert pruned.accuracy == 0.1 and pruned.reward is None
        assert pruned.train["pruning"]["intermediate"] == [[0, 0.1]]
        assert s._search.strategy.n_failed == 1  # told as a failed trial, not as a finished one


def test_a_study_resumes_from_its_folder_and_keeps_its_budget(tmp_path, fake_latency):
    folder = tmp_path / "s"
    with study(folder, n_trials=2) as s:
        s.tell(s.ask(), accuracy=0.4)
        untold = s.ask()  # the process stops before telling it
    with mnas.load_study(folder) as s:
        again = s.ask()  # offered again first
        assert again.id == untold.id and again.arch.canonical == untold.arch.canonical
        s.tell(again, accuracy=0.6)
        with pytest.raises(MnasError, match="trial budget reached"):
            s.ask()
    with mnas.load_study(folder, n_trials=3) as s:
        s.tell(s.ask(), accuracy=0.5)
        assert [t.id for t in s.trials] == [1, 2, 3] and s.best_trial.accuracy == 0.6
    with pytest.raises(MnasError, match="already holds an experiment"):
        study(folder)


class _PruningExecutor(ScriptedExecutor):
    """Answers as ScriptedExecutor; the trials with ids in ``prune`` come back pruned, as the trainer reports
    them. Keeps every job it was given."""

    def __init__(self, prune):
        super().__init__()
        self.prune, self.jobs = prune, []

    def submit(self, job):
        self.jobs.append(job)
        super().submit(job)

    def wait(self, timeout=None):
        (trial,) = super().wait(timeout)
        curve = [[1, 0.2], [2, 0.3]] if trial.id in self.prune else [[1, 0.4], [2, 0.5], [3, 0.6]]
        trial.train = {"pruning": {"intermediate": curve, "rungs": {"completed_rung_0": curve[0][1]}}}
        if trial.id in self.prune:
            trial.status, trial.accuracy = TrialStatus.PRUNED, curve[-1][1]
        return [trial]


def test_the_search_loop_gives_each_trial_the_curves_and_stores_pruned_ones(tmp_path):
    cfg = config_from_dict(tiny(trials=3, live_view=False, pruner={"name": "asha"}))
    executor = _PruningExecutor(prune={2})
    store, cfg = claim_experiment(cfg, tmp_path / "run")  # Search.open less its preflight (seconds)
    with Search(store, cfg, 1.0, executor) as search:
        state = search.run()
        assert search.strategy.n_failed == 1 and (state.completed, state.pruned, state.failed) == (2, 1, 0)
    first, second, third = (job.pruning for job in executor.jobs)
    assert first.pruner.name == "asha" and first.history == ()
    assert [c.state for c in third.history] == ["completed", "pruned"]
    assert third.history[1].intermediate == {1: 0.2, 2: 0.3} and third.history[0].value == 0.5
    with Store(tmp_path / "run", readonly=True) as store:
        statuses = [(t.status, t.reward is None) for t in store.trials()]
    assert statuses == [(TrialStatus.COMPLETED, False), (TrialStatus.PRUNED, True), (TrialStatus.COMPLETED, False)]
    summary = json.loads(run_cli("report", tmp_path / "run", "--json", "--no-plots", "--no-html", check=True).stdout)
    assert summary["pruned"] == 1 and summary["completed"] == 2


def test_a_watched_training_stops_where_its_watch_says():
    from mnas.api import architecture
    from mnas.train import TrainTask, train_architecture
    from mnas.train.trainer import Watch

    task = TrainTask(dataset="digits", resolution=16, width_multiplier=0.25, epochs=2, batch_size=32,
                     train_limit=128)
    seen = []
    result = train_architecture(architecture("mnasnet-a1"), task, 0,
                                Watch(0.5, lambda step, top1: seen.append((step, top1)) or step >= 2))
    assert result.status == "pruned" and [s for s, _ in seen] == [1, 2]
    assert result.steps == 4 < 8 and result.top1 == seen[-1][1] and result.intermediate == [list(s) for s in seen]


def test_a_version_1_store_takes_pruned_trials_after_a_writer_opens_it(tmp_path):
    with Store(tmp_path / "run") as store:
        store.add_trial("a", [0])
    db = sqlite3.connect(tmp_path / "run" / "experiment.db")  # as mnas wrote it before pruning existed
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'trials'").fetchone()[0]
    with db:
        db.execute("ALTER TABLE trials RENAME TO old")
        db.execute(sql.replace(", 'pruned')", ")"))
        db.execute("INSERT INTO trials SELECT * FROM old")
        db.execute("DROP TABLE old")
        for column in ("latency_ratio", "latency_abs_ms", "retimed", "retimed_ms"):  # schema 3's
            db.execute(f"ALTER TABLE trials DROP COLUMN {column}")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    with Store(tmp_path / "run", create=False) as store:
        store.finish_trial(Trial(1, "a", TrialStatus.PRUNED, accuracy=0.1, latency_ms=1.0))
        assert store.trial(1).status is TrialStatus.PRUNED and store.get_meta("schema_version") == 3


@pytest.mark.slow  # two real latency measurements and the dashboard mirror: seconds
def test_the_ask_tell_example_of_the_api_page_runs_and_opens_in_report_and_the_dashboard():
    text = DOC.read_text()
    section = text[text.index("## Ask/tell"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    test = doctest.DocTestParser().get_doctest(section, {}, "api.md ask/tell", str(DOC), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, clear_globs=False)
    assert runner.failures == 0 and runner.tries >= 12
    folder = test.globs["folder"]
    summary = json.loads(run_cli("report", folder, "--json", "--no-plots", "--no-html", check=True).stdout)
    assert (summary["trials"], summary["completed"], summary["pruned"]) == (2, 1, 1)
    assert summary["best"]["id"] == 1

    import optuna

    from mnas.search.mirror import PLACEHOLDER_ATTR

    mirrored = optuna.load_study(study_name="mnas", storage=f"sqlite:///{folder / 'optuna.db'}").trials
    assert PLACEHOLDER_ATTR in mirrored[0].user_attrs  # Optuna's trial 0: numbers then match mnas's ids
    mirrored = mirrored[1:]
    assert [t.state.name for t in mirrored] == ["COMPLETE", "PRUNED"]
    stored = mnas.open_experiment(folder).trials(as_frame=False)
    assert [t.number for t in mirrored] == [t.id for t in stored]
    assert mirrored[0].values == [stored[0].accuracy, stored[0].latency_ms] and mirrored[1].values is None
    assert [t.user_attrs.get("reward") for t in mirrored] == [t.reward for t in stored]
    assert mirrored[1].intermediate_values == {k: v for k, v in stored[1].train["pruning"]["intermediate"]}
