"""The timing protocol: statistics, the re-measure path, and the small pieces around it."""

from __future__ import annotations

import pytest

from mnas import MnasError
from mnas.latency import LatencyConfig, LatencyResult, LatencySettings
from mnas.latency.fingerprint import fingerprint
from mnas.latency.protocol import percentile, summarize, time_calls, time_interleaved


class Script:
    """A callable whose n-th call 'takes' durations[n] ms on an injected clock (deterministic noise)."""

    def __init__(self, durations_ms: list[float]) -> None:
        self.durations = list(durations_ms)
        self.now_ns = 0
        self.calls = 0

    def clock(self) -> int:
        return self.now_ns

    def __call__(self) -> None:
        self.now_ns += int(self.durations[self.calls] * 1e6)
        self.calls += 1


def settings(**kw) -> LatencySettings:
    return LatencySettings(**{"runs": 6, "rounds": 3, "warmup": 2, "cv_threshold": 0.05, "max_remeasures": 2, **kw})


def test_quiet_first_attempt_is_kept_without_remeasuring():
    s = Script([50, 50] + [10.0] * 6)
    t = time_calls(s, settings(), s.clock)
    assert t.remeasures == 0 and t.median_ms == pytest.approx(10.0) and t.cv == 0
    assert s.calls == 8  # the warm-up runs are not timed


def test_noisy_attempt_is_remeasured_and_the_quiet_one_kept():
    noisy = [10, 10, 20, 20, 30, 30]  # round medians 10/20/30: cv ~ 41%
    quiet = [10, 10.1, 10, 10.2, 10.1, 10]
    s = Script([1, 1] + noisy + quiet)
    t = time_calls(s, settings(), s.clock)
    assert t.remeasures == 1 and t.cv < 0.05 and t.median_ms == pytest.approx(10.05, abs=0.06)


def test_remeasures_are_bounded_and_the_best_attempt_wins():
    attempts = [[10, 10, 20, 20, 30, 30], [10, 10, 12, 12, 14, 14], [10, 10, 40, 40, 50, 50]]
    s = Script([1, 1] + [x for a in attempts for x in a] + [99] * 20)
    t = time_calls(s, settings(max_remeasures=2), s.clock)
    assert s.calls == 2 + 18  # three attempts, no fourth
    assert t.remeasures == 2 and t.round_medians_ms == [10, 12, 14] and t.median_ms == 12


class Machine:
    """Models sharing one fake clock; the calls numbered in ``slow`` (a stretch of the machine's time, as when
    a neighbour's job runs) take three times as long, whichever model makes them."""

    def __init__(self, slow: range) -> None:
        self.now_ns, self.calls, self.slow, self.log = 0, 0, slow, []

    def clock(self) -> int:
        return self.now_ns

    def model(self, name: str, ms: float | list[float]):
        """``ms``: every call's duration, or one per call of this model (its own noise)."""
        def call() -> None:
            own = ms if isinstance(ms, (int, float)) else ms[self.log.count(name)]
            self.now_ns += int(own * (3 if self.calls in self.slow else 1) * 1e6)
            self.calls += 1
            self.log.append(name)
        return call


def test_interleaved_rounds_confine_a_slow_phase_to_one_round_of_each_model():
    # warm-ups: calls 0-1; each round is one untimed and two timed calls per model, A's before B's
    m = Machine(slow=range(8, 14))  # round 2 of both models
    a, b = time_interleaved([m.model("A", 10), m.model("B", 20)], settings(warmup=1, cv_threshold=10), m.clock)
    assert m.log == ["A", "B"] + (["A"] * 3 + ["B"] * 3) * 3
    assert a.round_medians_ms == [10, 30, 10] and a.median_ms == 10 and sorted(a.round_mins_ms)[:2] == [10, 10]
    assert b.round_medians_ms == [20, 60, 20] and b.median_ms == 20
    # the same stretch of slow time inside one model's back-to-back rounds spoils two of its three rounds
    s = Script([1] + [10, 10] + [30] * 4 + [10] * 10)
    assert time_calls(s, settings(warmup=1, cv_threshold=10), s.clock).median_ms == 30


def test_interleaved_remeasures_only_the_noisy_models_and_pools_their_rounds():
    m = Machine(slow=range(0))
    a_calls = [1] + [1, 10, 1, 20, 1, 30] + [1, 10] * 3  # warm-up, (untimed, timed) per round; drifting, then steady
    a, b = time_interleaved([m.model("A", a_calls), m.model("B", 20)],
                            settings(runs=3, rounds=3, warmup=1, max_remeasures=2), m.clock)
    assert m.log[14:] == ["A"] * 6  # A again, three more rounds on its own; B was steady
    assert a.remeasures == 1 and a.round_medians_ms == [10, 20, 30, 10, 10, 10] and a.median_ms == 10
    assert b.remeasures == 0 and b.median_ms == 20
    # one spoiled round in five is not noise for the robust spread (it is for the plain cv)
    m = Machine(slow=range(5, 7))  # round 3: its untimed and its timed call
    (c,) = time_interleaved([m.model("C", 10)], settings(runs=5, rounds=5, warmup=1, max_remeasures=2), m.clock)
    assert c.round_medians_ms == [10, 10, 30, 10, 10] and c.remeasures == 0 and c.robust_cv == 0 and c.cv > 0.05


def test_real_clock_on_a_real_workload():
    t = time_calls(lambda: sum(range(2000)), settings(runs=30, rounds=5))
    assert 0 < t.p10_ms <= t.median_ms <= t.p90_ms < 100


def test_cpu_clock_leaves_out_time_the_process_does_not_run():
    import time
    wall = time_calls(lambda: time.sleep(0.002), settings(runs=4, rounds=2, warmup=0))
    cpu = time_calls(lambda: time.sleep(0.002), settings(runs=4, rounds=2, warmup=0, clock="cpu"))
    assert wall.median_ms >= 1.9 and cpu.median_ms < 1.0
    # every timing also keeps its fastest call on the CPU clock, whatever its own clock
    assert wall.cpu_min_ms is not None and wall.cpu_min_ms < 1.0 and cpu.cpu_min_ms < 1.0
    (inter,) = time_interleaved([lambda: time.sleep(0.002)], settings(runs=4, rounds=2, warmup=0))
    assert inter.median_ms >= 1.9 and inter.cpu_min_ms < 1.0
    with pytest.raises(ValueError, match="clock"):
        LatencySettings(clock="sundial")


def test_summary_statistics():
    t = summarize([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    assert t.round_medians_ms == [2.0, 4.0] and t.median_ms == 3.0 and t.mean_ms == pytest.approx(3.0)
    assert t.cv == pytest.approx(1 / 3)
    assert percentile([0.0, 10.0], 0.1) == pytest.approx(1.0)


def test_settings_and_result_round_trip():
    s = LatencySettings(resolution=64, pin_core=0)
    assert LatencySettings.from_dict(s.to_dict()) == s and s.input_shape() == (1, 3, 64, 64)
    # stored settings from another mnas version: unknown keys are dropped, bad values are one clear line
    assert LatencySettings.from_dict({**s.to_dict(), "from_the_future": 1}) == s
    with pytest.raises(MnasError, match="latency settings: .*runs"):
        LatencySettings.from_dict({"runs": 0})
    with pytest.raises(ValueError):
        LatencySettings(runs=0)
    with pytest.raises(ValueError, match=r"\brun\b"):  # a misspelt key is never ignored when constructing
        LatencySettings(run=3)
    with pytest.raises(ValueError, match="lacks"):
        LatencyResult.from_dict({"median_ms": 1.0})
    with pytest.raises(MnasError, match="must be a mapping, got NoneType"):
        LatencySettings.from_dict(None)


def test_results_from_json_are_validated():
    good = {"median_ms": 1, "mean_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "std_ms": 0.0, "cv": 0.0, "runs": 2,
            "warmup": 0, "batch": 1, "resolution": 32, "threads": 1, "backend": "x", "runtime_version": "1",
            "device": {"id": "a"}, "time": "t", "input_shape": [1, 3, 32, 32], "from_the_future": 1}
    r = LatencyResult.from_dict(good)
    assert r.median_ms == 1.0 and r.input_shape == (1, 3, 32, 32) and LatencyResult.from_dict(r.to_dict()) == r
    for bad, why in [({**good, "median_ms": float("nan")}, "median_ms: Input should be a finite number"),
                     ({**good, "p90_ms": float("inf")}, "p90_ms"), ({**good, "runs": "many"}, "runs"),
                     ({**good, "input_shape": "1x3"}, "input_shape"), (None, "JSON object, got NoneType")]:
        with pytest.raises(MnasError, match=why):
            LatencyResult.from_dict(bad)


def test_key_fields_leave_out_only_the_statistics_knobs():
    s = LatencySettings()
    assert s.replace(cv_threshold=0.5, max_remeasures=0).key_fields() == s.key_fields()
    assert s.replace(runs=3).key_fields() != s.key_fields()
    assert s.replace(clock="cpu").key_fields() != s.key_fields()


def test_latency_config_is_settings_plus_backend_and_cache():
    c = LatencyConfig.model_validate({"backend": "torch", "runs": 9, "cache": False})
    assert isinstance(c, LatencySettings) and c.warmup == LatencySettings.default("warmup")
    assert c.settings() == LatencySettings(runs=9) and type(c.settings()) is LatencySettings
    assert LatencyConfig.default("backend") == "onnxruntime" and LatencyConfig().cache is True
    with pytest.raises(ValueError, match="backnd"):
        LatencyConfig.model_validate({"backnd": "torch"})


def test_pinning_to_a_core_runs():
    t = time_calls(lambda: None, settings(pin_core=0))
    assert t.median_ms >= 0


def test_fingerprint_is_stable_and_complete():
    fp = fingerprint()
    assert fp["cores"] >= 1 and fp["cpu"] and fp["os"] and len(fp["id"]) == 12
    assert fingerprint() == fp
