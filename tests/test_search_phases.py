"""What a running search is doing: every in-process trial announces its phases (measuring, training, done),
and the CLI's bar shows the running trials with their phase beside the best so far."""

from __future__ import annotations

import mnas.api
from mnas.cli.search_cmds import _SearchBar
from mnas.run.trial import phases
from mnas.search.driver import SearchState
from mnas.store import Trial
from mnas.testing import tiny


def test_each_trial_announces_measuring_then_training_then_done(tmp_path):
    seen: list[tuple[int, str]] = []
    with phases(lambda tid, phase: seen.append((tid, phase))):
        exp = mnas.api.search(tiny(trials=2), tmp_path / "exp")
    ids = [t.id for t in exp.trials(as_frame=False)]
    assert seen == [(i, p) for i in ids for p in ("measuring", "training", "done")]


def test_the_bar_shows_running_trials_and_their_phase():
    lines: list[tuple[int, str]] = []

    class Run:
        executor = None

    bar = _SearchBar(lambda done, description: lines.append((done, description)), Run())
    bar.on_phase(3, "measuring")
    assert lines[-1] == (0, "failed 0, dup 0 | trial 3 measuring | no result yet")
    bar.on_phase(3, "training")
    best = Trial(id=2, arch="a", tokens=[], status="completed", accuracy=0.5, latency_ms=4.0, reward=0.45)
    bar.on_state(SearchState(total=3, completed=2, failed=0, duplicates=1, best=best))
    assert lines[-1] == (2, "failed 0, dup 1 | trial 3 training | best reward 0.4500 acc 0.500 lat 4.00 ms")
    bar.on_phase(3, "done")
    assert "0 in flight" in lines[-1][1]
