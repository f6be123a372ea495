"""The live view: every finished trial is mirrored into an Optuna study beside the experiment, read back here
with Optuna's own API (what optuna-dashboard reads)."""

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
