"""mnas report: Pareto front, summary numbers, plots and JSON, on a synthetic store and on a real tiny search."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnas.report.pareto import best_under, pareto_front
from mnas.report.plots import moving_average, token_entropy
from mnas.report.synthetic import fill_synthetic
from mnas.store import Store, Trial, TrialStatus
from mnas.testing import run_cli


def mnas(*args, check=True):
    return run_cli(*args, check=check)


def brute_front(lat, acc):
    keep = []
    for i in range(len(lat)):
        dominated = any((lat[j] <= lat[i] and acc[j] >= acc[i] and (lat[j] < lat[i] or acc[j] > acc[i]))
                        for j in range(len(lat)))
        if not dominated:
            keep.append(i)
    return keep


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1, max_size=30))
def test_pareto_front_matches_brute_force(points):
    lat, acc = (np.array(v, dtype=float) for v in zip(*points))
    got = pareto_front(lat, acc)
    want = brute_front(lat, acc)
    # duplicates of a front point: exactly one of them is kept
    assert sorted({(lat[i], acc[i]) for i in got}) == sorted({(lat[i], acc[i]) for i in want})
    assert len(got) == len({(lat[i], acc[i]) for i in got})
    assert np.all(np.diff(lat[got]) > 0) and np.all(np.diff(acc[got]) > 0)


def test_pareto_ignores_nan_and_best_under():
    lat = np.array([1.0, 2.0, np.nan, 3.0, 0.5])
    acc = np.array([0.5, 0.7, 0.99, 0.6, 0.4])
    assert pareto_front(lat, acc).tolist() == [4, 0, 1]
    assert best_under(lat, acc, 2.5) == 1 and best_under(lat, acc, 0.4) is None


def test_moving_average_and_token_entropy():
    assert np.allclose(moving_average(np.array([1, 2, 3, 4.0]), 2), [1, 1.5, 2.5, 3.5])
    uniform = np.tile(np.arange(4), 50)[:, None].repeat(3, axis=1)  # every choice equally often
    xs, h = token_entropy(uniform, 20)
    assert xs.size == 10 and np.allclose(h, np.log(4))
    assert np.allclose(token_entropy(np.zeros((40, 2), dtype=int), 20)[1], 0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return fill_synthetic(tmp_path_factory.mktemp("syn") / "run", n=120, seed=3, target_ms=20.0, fail_every=10)


def test_report_json_on_synthetic_store(synthetic):
    s = json.loads(mnas("report", synthetic, "--json", "--top", "5").stdout)
    assert (s["trials"], s["completed"], s["failed"]) == (120, 108, 12)
    assert {"trials", "completed", "failed", "best", "pareto", "top", "targets"} <= s.keys()
    with Store(synthetic, create=False) as store:
        done = store.trials("completed")
    best = max(done, key=lambda t: t.reward)
    assert s["best"]["id"] == best.id and s["best"]["rank"] == 1
    assert s["best"]["arch"] == best.arch and s["best"]["params"] == best.params
    assert [t["rank"] for t in s["top"]] == sorted(t["rank"] for t in s["top"]) and len(s["top"]) == 5
    lat = np.array([t.latency_ms for t in done])
    acc = np.array([t.accuracy for t in done])
    assert sorted(p["id"] for p in s["pareto"]) == sorted(done[i].id for i in brute_front(lat, acc))
    assert [t["target_ms"] for t in s["targets"]] == [10, 15, 20, 30, 40]
    for t in s["targets"]:
        under = [d for d in done if d.latency_ms <= t["target_ms"]]
        assert t["best"]["accuracy"] == max(d.accuracy for d in under)
    assert s["errors"][0]["count"] == 12 and "synthetic failure" in s["errors"][0]["error"]
    for name in ("reward", "pareto", "latency_hist", "entropy"):
        png = synthetic / "plots" / f"{name}.png"
        assert s["plots"][name] == str(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (synthetic / "report.html").stat().st_size > 10_000


def test_report_writes_every_trial_as_csv_with_its_rank(synthetic):
    import csv

    s = json.loads(mnas("report", synthetic, "--json", "--no-plots", "--no-html").stdout)
    assert "csv" not in s  # nothing is written when neither plots nor the page are
    s = json.loads(mnas("report", synthetic, "--json", "--no-html").stdout)
    with open(s["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    with Store(synthetic, create=False) as store:
        trials = {t.id: t for t in store.trials()}
    assert [int(r["id"]) for r in rows] == sorted(trials) and len(rows) == 120
    by_rank = {int(r["rank"]): r for r in rows if r["rank"]}
    assert sorted(by_rank) == list(range(1, 109))  # the 108 completed, ranked; the failed have none
    assert int(by_rank[1]["id"]) == s["best"]["id"] and by_rank[1]["arch"] == s["best"]["arch"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 12 and all(r["rank"] == "" and "synthetic failure" in r["error"] for r in failed)
    assert float(by_rank[1]["reward"]) == pytest.approx(trials[s["best"]["id"]].reward)


def test_report_table_and_compare(synthetic, tmp_path):
    hard = fill_synthetic(tmp_path / "hard", n=40, seed=4, alpha=0.0, beta=-1.0, target_ms=20.0)
    p = mnas("report", synthetic, "--compare", hard, "--target", "12", "--no-html")
    assert "top 10 architectures by reward" in p.stdout and "Pareto front" in p.stdout
    assert "stem" in p.stdout and "compared with" in p.stdout and "12" in p.stdout
    import matplotlib.image as mpimg
    img = mpimg.imread(synthetic / "plots" / "latency_hist.png")
    assert img.shape[0] > 200 and len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 20


def test_report_errors_are_one_line(tmp_path):
    p = mnas("report", tmp_path / "nothing", check=False)
    assert p.returncode == 2 and "no experiment" in p.stderr and "Traceback" not in p.stderr
    empty = tmp_path / "empty"
    Store(empty).close()
    s = json.loads(mnas("report", empty, "--json").stdout)
    assert s["trials"] == 0 and s["best"] is None and s["pareto"] == []
    p = mnas("export", empty, "--random-weights", "--out", tmp_path / "m.onnx", check=False)
    assert p.returncode == 2 and "no completed trials" in p.stderr


def test_report_on_a_real_tiny_search(tiny_search_copy):
    run = tiny_search_copy  # the report writes its plots into it
    s = json.loads(mnas("report", run, "--json").stdout)
    with Store(run, create=False) as store:
        trials = store.trials()
    assert s["trials"] == len(trials) == 3 and s["completed"] + s["failed"] == 3
    assert s["target_ms"] == 1.0 and s["alpha"] == pytest.approx(-0.07) and s["backend"] == "onnxruntime"
    assert s["best"]["reward"] == max(t.reward for t in trials if t.status == "completed")
    assert all(p["latency_ms"] > 0 and 0 <= p["accuracy"] <= 1 for p in s["pareto"])
    assert all((run / "plots" / f"{n}.png").exists() for n in ("reward", "pareto", "latency_hist", "entropy"))
    # the search timed the reference models on its own backend and settings, for the report to draw
    with Store(run, readonly=True) as store:
        refs = {r["name"]: r for r in store.meta().references}
    assert {"mobilenet-v2 1.0", "mnasnet-a1"} <= set(refs) and all(r["latency_ms"] > 0 for r in refs.values())
    assert "mnasnet-a1" in (run / "plots" / "pareto.svg").read_text()


def test_summary_without_target_uses_latency_quantiles(tmp_path):
    from mnas.report.build import make_report

    with Store(tmp_path / "run") as store:
        for i, lat in enumerate([4.0, 2.0, 8.0, 6.0]):
            tid = store.add_trial(f"arch{i}", [i])
            store.finish_trial(Trial(tid, f"arch{i}", TrialStatus.COMPLETED, accuracy=0.5 + i / 10, latency_ms=lat,
                                     reward=0.5 + i / 10))
        store.add_trial("still-running", [9])
    s = make_report(tmp_path / "run", plots=True, html=True)
    assert s["target_ms"] is None and (s["completed"], s["running"]) == (4, 1)
    qs = np.quantile([2.0, 4.0, 6.0, 8.0], [0.1, 0.25, 0.5, 0.75, 0.9]).round(4).tolist()
    assert [t["target_ms"] for t in s["targets"]] == qs
    assert [p["id"] for p in s["pareto"]] == [2, 4]  # 2 ms / 0.6 beats 4 ms / 0.5; 6 ms / 0.8 beats 8 ms / 0.7
    html = (tmp_path / "run" / "report.html").read_text()
    assert html.count("<tr class=") == 5 and "still-running" in html
