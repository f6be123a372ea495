"""The store's records and its one ranking."""

import math
import random

import numpy as np

from mnas.store import Store, Trial, TrialStatus
from mnas.store.query import ranked_trials, trial_table


def test_ranking_is_one_order_in_sql_and_over_arrays(tmp_path):
    rng = random.Random(0)
    with Store(tmp_path / "run") as store:
        for i in range(60):
            tid = store.add_trial(f"arch{i % 45}", [i])
            status = rng.choice([TrialStatus.COMPLETED] * 4 + [TrialStatus.FAILED, TrialStatus.RUNNING])
            if status is TrialStatus.RUNNING:
                continue
            acc = rng.choice([0.5, 0.6, 0.7])  # ties on accuracy, and on reward below
            store.finish_trial(Trial(tid, f"arch{i % 45}", status, accuracy=acc, latency_ms=rng.uniform(1, 9),
                                     reward=rng.choice([None, 0.4, 0.5, acc]), started=0.0, finished=1.0))
        table = trial_table(store)
        by_arrays = [int(table.id[i]) for i in table.ranking()]
        by_sql = [t.id for t in ranked_trials(store)]
    assert by_arrays == by_sql and len(by_sql) > 30
    assert np.all(np.diff([t for t in table.reward[table.ranking()] if np.isfinite(t)]) <= 0)


def test_a_trial_round_trips_with_its_status(tmp_path):
    with Store(tmp_path / "run") as store:
        tid = store.add_trial("a", [1, 2])
        assert store.trial(tid).status is TrialStatus.RUNNING
        store.finish_trial(Trial(tid, "a", "failed", error="boom", started=1.0, finished=3.5))
        t = store.trial(tid)
    assert t.status is TrialStatus.FAILED and t.error == "boom" and t.seconds == 2.5 and t.tokens == [1, 2]
    assert t.to_dict()["status"] == "failed"


def test_unusable_numbers_never_rank_even_when_stored_as_completed(tmp_path):
    """A store written some other way (an older mnas, a plugin) may hold them as completed."""
    with Store(tmp_path / "run") as store:
        for i, (acc, lat) in enumerate([(0.5, 2.0), (1.5, 1.0), (0.9, float("inf")), (0.9, -1.0), (0.9, 0.0),
                                        (float("nan"), 1.0)]):
            tid = store.add_trial(f"arch{i}", [i])
            store.finish_trial(Trial(tid, f"arch{i}", TrialStatus.COMPLETED, accuracy=acc, latency_ms=lat,
                                     reward=None if math.isnan(acc) else acc))
        table = trial_table(store)
        assert [t.id for t in ranked_trials(store)] == [1] == [int(table.id[i]) for i in table.ranking()]
