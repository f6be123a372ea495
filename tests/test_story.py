"""The demo's story: reference models scored on the search's own proxy (``references.score``), never counted
as trials; the report's end, the winner against MobileNetV2 at equal latency, and the commands that come next."""

from __future__ import annotations

import json
import shlex

import pytest

from mnas.report.story import next_commands, reference_rows, versus_reference
from mnas.search import driver
from mnas.search.config import config_from_dict, config_from_stored
from mnas.search.reward import RewardConfig, reward
from mnas.store import Store
from mnas.testing import run_cli, scripted_search, tiny

SCRIPT = [(0.30, 0.9), (0.40, 0.5), (0.20, 3.0)]  # (accuracy, latency ms) of the three trials


def _timed(job, references):
    """Two MobileNetV2 widths as ``measure_references`` records them, at made-up latencies around the
    scripted winner's 0.5 ms (the timing itself is tested on the session's real search, test_report.py)."""
    from mnas.space import resolve_arch

    return [{"name": f"mobilenet-v2 {w}", "model": "mobilenet-v2", "width": w,
             "arch": resolve_arch("mobilenet-v2", w)[1].canonical, "latency_ms": lat, "params": 10, "macs": 10}
            for w, lat in ((0.5, 0.4), (1.0, 0.8))]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A 3-trial scripted search whose two references were trained on its proxy for real."""
    out = tmp_path_factory.mktemp("story") / "exp"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(driver, "measure_references", _timed)
        state = scripted_search(out, SCRIPT, references={"score": True}, **{"proxy.train_limit": 64})
    return out, state


def test_references_are_scored_on_the_proxy_and_are_not_trials(scored):
    out, state = scored
    assert state.total == state.completed == len(SCRIPT)  # the budget of 3 trials, all three the strategy's
    with Store(out, readonly=True) as store:
        assert len(store.trials()) == len(SCRIPT)
        reward_cfg = RewardConfig.from_dict(store.meta().reward)
    s = json.loads(run_cli("report", out, "--json", "--no-plots", "--no-html", check=True).stdout)
    assert s["trials"] == len(SCRIPT)
    refs = {r["name"]: r for r in s["references"]}
    assert set(refs) == {"mobilenet-v2 0.5", "mobilenet-v2 1.0"}
    for r in refs.values():
        assert r["kind"] == "reference" and 0 <= r["accuracy"] <= 1 and r["latency_ms"] > 0 and r["seconds"] > 0
        assert r["reward"] == pytest.approx(reward(r["accuracy"], r["latency_ms"], reward_cfg))
    assert s["references_scored"] == {"scored": 2, "failed": 0, "seconds": s["references_scored"]["seconds"],
                                      "counted_in_trial_budget": False}
    # the winner (rank 1: accuracy 0.4 at 0.5 ms) against MobileNetV2 interpolated at 0.5 ms
    v, (a, b) = s["versus"], (refs["mobilenet-v2 0.5"], refs["mobilenet-v2 1.0"])
    assert v["found"]["latency_ms"] == 0.5 and v["found"]["accuracy"] == 0.4 and v["equal_latency"]["interpolated"]
    assert v["equal_latency"]["accuracy"] == pytest.approx(a["accuracy"] + (b["accuracy"] - a["accuracy"]) / 4)


def test_the_report_ends_with_the_comparison_and_the_next_commands(scored):
    out, _ = scored
    r = run_cli("report", out, "--no-plots", "--no-html", "--top", "1", check=True)
    tail = r.stdout[r.stdout.index("the found model against MobileNetV2 at equal latency"):]
    assert "found: trial 2 (rank 1)" in tail and "MobileNetV2 at 0.5 ms (x0.5-x1.0, interpolated)" in tail
    assert "margin: found - MobileNetV2 at equal latency" in tail
    assert "scored on the same proxy: 2 in" in r.stdout  # the references' table says what they cost
    commands = [line.split(": ", 1)[1] for line in tail.splitlines() if line.startswith("  ")]
    assert commands == [c["command"] for c in next_commands(out)]
    train, export = (shlex.split(c) for c in commands[-2:])
    assert train[:4] == ["mnas", "train", str(out), "--rank"] and train[-2:] == ["--dir", str(out / "winner")]
    assert export[:2] == ["mnas", "export"] and export[export.index("--weights") + 1] == str(out / "winner")
    # each parses as its command does: only the missing checkpoint stops the export, with its own message
    e = run_cli(*export[1:])
    assert e.code == 2 and "winner" in e.stderr and "Traceback" not in e.stderr


def _ref(name, width, acc, lat):
    return {"name": name, "model": name.split(" ")[0], "width": width, "arch": "a", "accuracy": acc,
            "latency_ms": lat, "reward": acc, "params": 1, "macs": 1}


SOFT = RewardConfig.from_preset("soft", target_ms=2.0).to_dict()


def test_mobilenet_v2_at_equal_latency_is_interpolated_never_extrapolated():
    rows = reference_rows([_ref("mobilenet-v2 1.0", 1.0, 0.50, 2.0), _ref("mobilenet-v2 0.5", 0.5, 0.30, 1.0),
                           _ref("mnasnet-a1", 1.0, 0.90, 1.5)])  # another family: not on the curve
    v = versus_reference({"id": 7, "accuracy": 0.45, "latency_ms": 1.6, "reward": 0.46}, rows, SOFT)
    assert v["equal_latency"]["accuracy"] == pytest.approx(0.42) and v["equal_latency"]["interpolated"]
    assert v["equal_latency"]["reward"] == pytest.approx(reward(0.42, 1.6, RewardConfig.from_dict(SOFT)))
    assert v["margin"]["accuracy_points"] == pytest.approx(3.0) and v["margin"]["latency_ms"] == 0
    assert v["reference"]["latency_ms"] == 2.0  # the scored width nearest in latency
    far = versus_reference({"id": 8, "accuracy": 0.6, "latency_ms": 4.0, "reward": 0.5}, rows, SOFT)
    assert not far["equal_latency"]["interpolated"] and "slower than every MobileNetV2 width" in far["note"]
    assert far["equal_latency"]["accuracy"] == 0.50 and far["margin"]["latency_percent"] == pytest.approx(100)
    timed_only = [{**r, "accuracy": None, "reward": None} for r in rows]
    assert versus_reference({"id": 7, "accuracy": 0.45, "latency_ms": 1.5}, timed_only, SOFT) is None


def test_a_reference_whose_training_fails_is_recorded_and_the_rest_are_scored(monkeypatch):
    import mnas.run.trial
    from mnas.search.references import score_references

    def training(arch, proxy, seed):
        if arch == "broken":
            raise RuntimeError("out of memory")
        return {"status": "ok", "top1": 0.25}

    monkeypatch.setattr(mnas.run.trial, "train_proxy_job", training)
    refs = [_ref("mobilenet-v2 0.5", 0.5, None, 1.0), {**_ref("mobilenet-v2 1.0", 1.0, None, 2.0), "arch": "broken"},
            _ref("mnasnet-a1", 1.0, 0.9, 1.5)]  # scored already (by a run that stopped): not trained again
    saved = []
    done = score_references(refs, None, 0, RewardConfig.from_dict(SOFT), saved.append)
    assert [r.get("accuracy") for r in done] == [0.25, None, 0.9] and "out of memory" in done[1]["error"]
    assert len(saved) == 2 and saved[-1] == done  # stored after each one: a stop keeps what was scored
    assert score_references(done, None, 0, RewardConfig.from_dict(SOFT), saved.append) == done  # nothing left


def test_references_config_takes_the_old_boolean_and_refuses_a_score_without_timing():
    assert config_from_stored(tiny(references=True)).references.enabled  # what older stores recorded
    assert not config_from_dict(tiny()).references.score
    cfg = config_from_dict(tiny(), overrides={"references.score": True})
    assert cfg.references.enabled and cfg.references.score
    with pytest.raises(Exception, match="references.score needs the references timed"):
        config_from_dict(tiny(references={"enabled": False, "score": True}))
