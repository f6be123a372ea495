"""Retrained models in mnas report: the reference curve, each searched model against it (interpolated, never
extrapolated), Kendall tau between proxy and retrained accuracy, the table, the plots and the page section.
The rows are written with the store's own API (the numbers are made up: this tests the report, not training)."""

from __future__ import annotations

import json
import random

import pytest
from scipy.stats import kendalltau

from mnas.report.build import make_report
from mnas.report.retrained import _tau_b, latency_at, proxy_fidelity, top1_at
from mnas.report.synthetic import fill_synthetic
from mnas.store import Store
from mnas.testing import run_cli

RECIPE = {"epochs": 3, "lr": 0.05, "batch_size": 64}


def mnas(*args, check=True):
    return run_cli(*args, check=check)


def _row(label, kind, latency_ms, top1, *, zoo=None, width=None, trial_id=None, proxy=None, status="completed",
         recipe=RECIPE, digest="d1", error=None, done=3):
    return {"key": f"{label}|{digest}", "label": label, "kind": kind,
            "trial_id": trial_id, "arch": f"arch-of-{label}", "status": status, "top1": top1, "best_top1": top1,
            "epochs": 3, "params": 1_500_000, "macs": 60_000_000, "latency_ms": latency_ms, "proxy_accuracy": proxy,
            "checkpoint": f"/ckpt/{label}", "error": error,
            "data": {"zoo": zoo, "width": width, "recipe": recipe, "dataset": "digits", "split": {"val": 0.2},
                     "history": [{"epoch": e, "val_top1": top1} for e in range(1, done + 1)], "latency": {"runs": 5}}}


# the curve: (5 ms, 60 %) and (10 ms, 70 %); mnasnet-a1 alone is a marker, not a curve
REFERENCES = [_row("mobilenet-v2@0.5", "reference", 5.0, 0.60, zoo="mobilenet-v2", width=0.5),
              _row("mobilenet-v2@1.0", "reference", 10.0, 0.70, zoo="mobilenet-v2", width=1.0),
              _row("mnasnet-a1", "reference", 8.0, 0.69, zoo="mnasnet-a1", width=1.0)]
TRIALS = [_row("trial 3", "trial", 7.5, 0.66, trial_id=3, proxy=0.40,  # +1.0 point at equal latency: meets
               recipe={**RECIPE, "threads": 8}),  # trained with more threads: the same training (same digest)
          _row("trial 5", "trial", 3.4, 0.62, trial_id=5, proxy=0.30),   # faster than the curve, 43 % saving: meets
          _row("trial 7", "trial", 9.0, 0.66, trial_id=7, proxy=0.50),   # -2 points, 12.5 % slower: below
          _row("trial 9", "trial", 12.0, 0.75, trial_id=9, proxy=0.45),  # beyond both ends: outside
          _row("trial 11", "trial", 6.0, 0.64, trial_id=11, proxy=0.20, recipe={"epochs": 1}, digest="d2")]
OTHERS = [_row("trial 13", "trial", None, None, trial_id=13, proxy=0.35, status="running", done=1),
          _row("trial 15", "trial", None, None, trial_id=15, proxy=0.33, status="failed",
               error="RuntimeError: CUDA out of memory\nTraceback line")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = fill_synthetic(tmp_path_factory.mktemp("retrained") / "run", n=20, seed=2, target_ms=8.0)
    with Store(d) as store:
        for r in REFERENCES + TRIALS + OTHERS:
            store.put_retrained(r)
    return d, make_report(d, plots=True, html=True)


def test_comparisons_interpolate_along_the_curve(run):
    _, s = run
    r = s["retrained"]
    assert r["counts"] == {"completed": 8, "running": 1, "failed": 1}
    (curve,) = r["curves"]  # mnasnet-a1 has one width: no curve
    assert curve["name"] == "mobilenet-v2" and [p["width"] for p in curve["points"]] == [0.5, 1.0]
    by = {c["label"]: c for c in r["comparisons"]}
    assert set(by) == {"trial 3", "trial 5", "trial 7", "trial 9"}  # trial 11 has no curve of its recipe
    assert r["without_curve"] == ["trial 11"]
    t3 = by["trial 3"]
    assert t3["curve_top1_at_latency"] == pytest.approx(0.65)
    assert t3["delta_top1_points"] == pytest.approx(1.0)
    assert t3["curve_latency_at_top1"] == pytest.approx(8.0)
    assert t3["latency_saving"] == pytest.approx(1 - 7.5 / 8.0)
    assert t3["meets_goal"] is True and t3["verdict"] == "meets"
    t5 = by["trial 5"]
    assert t5["delta_top1_points"] is None  # 3.4 ms is faster than every width: no extrapolation
    assert t5["curve_latency_at_top1"] == pytest.approx(6.0)
    assert t5["latency_saving"] == pytest.approx(1 - 3.4 / 6.0) and t5["meets_goal"] is True
    t7 = by["trial 7"]
    assert t7["delta_top1_points"] == pytest.approx(-2.0)
    assert t7["latency_saving"] == pytest.approx(1 - 9.0 / 8.0) and t7["verdict"] == "below"
    assert t7["meets_goal"] is False
    t9 = by["trial 9"]
    assert t9["delta_top1_points"] is None and t9["latency_saving"] is None
    assert t9["verdict"] == "outside" and t9["meets_goal"] is None
    assert r["goal"]["curves"]["mobilenet-v2"] == {"met": True, "met_by": ["trial 3", "trial 5"], "best": "trial 3"}


def test_rows_in_the_json_leave_the_history_out(run):
    _, s = run
    rows = {row["label"]: row for row in s["retrained"]["rows"]}
    assert len(rows) == 10 and all("history" not in row["data"] for row in rows.values())
    assert rows["trial 3"]["epochs_done"] == 3 and rows["trial 3"]["data"]["recipe"] == {**RECIPE, "threads": 8}
    assert rows["trial 15"]["status"] == "failed" and "out of memory" in rows["trial 15"]["error"]
    json.dumps(s, allow_nan=False)  # strict JSON: no NaN from a missing number


def test_proxy_fidelity_is_kendall_tau_over_models_with_both(run):
    _, s = run
    fid = s["retrained"]["proxy_fidelity"]
    # trial 11 trained under another recipe: left out. Proxy 0.30 0.40 0.45 0.50 against top-1 0.62 0.66 0.75
    # 0.66: 6 pairs, 4 concordant, 1 discordant, 1 tied in top-1 only: tau-b = 3 / sqrt(5 * 6)
    assert fid["n"] == 4 and fid["below_issue_minimum"] is True and fid["left_out"] == ["trial 11"]
    assert fid["tau"] == pytest.approx(3 / 30 ** 0.5)
    same = TRIALS[:4]
    assert fid["p_value"] == pytest.approx(kendalltau([r["proxy_accuracy"] for r in same],
                                                      [r["top1"] for r in same]).pvalue)
    assert sorted(p["trial_id"] for p in fid["points"]) == [3, 5, 7, 9]


def test_tau_fallback_matches_scipy_and_small_n_reports_none():
    rng = random.Random(4)
    for n in (3, 7, 15):
        x = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(n)]  # ties on both sides
        y = [rng.choice([0.5, 0.6, 0.7]) for _ in range(n)]
        want = kendalltau(x, y).statistic
        assert _tau_b(x, y) == pytest.approx(want)
    assert _tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0 and _tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    two = proxy_fidelity(TRIALS[:2])
    assert two["n"] == 2 and two["tau"] is None and two["p_value"] is None


def test_interpolation_on_an_uneven_curve():
    """A wider reference that came out less accurate (noise) never makes the curve easier to beat."""
    pts = [{"latency_ms": x, "top1": y} for x, y in [(5, 0.60), (7, 0.66), (8, 0.64), (10, 0.70)]]
    assert top1_at(pts, 6.0) == pytest.approx(0.63) and top1_at(pts, 9.5) == pytest.approx(0.685)
    assert top1_at(pts, 8.0) == pytest.approx(0.66)  # the faster 7 ms width beats the dip at 8 ms
    assert top1_at(pts, 4.9) is None and top1_at(pts, 10.1) is None
    # 0.65 is reached twice (rising into 7 ms, again past 8 ms): the fastest counts
    assert latency_at(pts, 0.65) == pytest.approx(5 + 2 * 5 / 6)
    assert latency_at(pts, 0.68) == pytest.approx(8 + 2 * 4 / 6)
    assert latency_at(pts, 0.60) == 5 and latency_at(pts, 0.70) == pytest.approx(10)
    assert latency_at(pts, 0.59) is None and latency_at(pts, 0.71) is None
    falling = [{"latency_ms": x, "top1": y} for x, y in [(5, 0.66), (7, 0.60), (10, 0.70)]]
    assert latency_at(falling, 0.63) is None  # the fastest width is already better: no extrapolation
    assert latency_at(falling, 0.68) == pytest.approx(7 + 3 * 0.8)


def test_plots_are_written_with_the_curve_and_the_trial_ids(run):
    d, s = run
    for name in ("retrained", "proxy_fidelity"):
        assert s["plots"][name] == str(d / "plots" / f"{name}.png")
        for ext in ("png", "svg", "pdf"):
            assert (d / "plots" / f"{name}.{ext}").stat().st_size > 1000
    svg = (d / "plots" / "retrained.svg").read_text()
    assert "×0.5" in svg and "×1" in svg and "mnasnet-a1" in svg and "measured latency (ms)" in svg
    assert all(f">{t}<" in svg for t in ("3", "5", "7", "9")) and "meets the goal" in svg
    fid = (d / "plots" / "proxy_fidelity.svg").read_text()
    assert "Kendall τ = 0.55 (n = 4" in fid and "below the issue's 12" in fid


def test_page_has_a_retrained_section(run):
    d, _ = run
    page = (d / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6  # the search's four and the two retrained plots
    section = page[page.index('<h2 id="retrained">'):page.index("<h2>Trials</h2>")]
    assert section.count("data:image/png;base64,") == 2 and "mobilenet-v2@0.5" in section
    assert "trial 3 against mobilenet-v2: +1.00 points top-1 at equal latency" in section
    assert "trial 11" in section.split("no reference curve")[1] and "Kendall tau 0.548" in section
    assert '<tr class="failed">' in section and "CUDA out of memory" in section


def test_cli_prints_the_table_comparisons_and_tau(run):
    d, _ = run
    out = mnas("report", d, "--no-plots", "--no-html").stdout
    assert "retrained models (8 completed, 1 running, 1 failed)" in out
    running = next(line for line in out.splitlines() if "trial 13" in line)
    assert "1/3" in running and "running" in running  # epochs done of the run's total
    lines = {line.split(" against ")[0]: line for line in out.splitlines() if " against mobilenet-v2" in line}
    assert "+1.00 points top-1" in lines["trial 3"] and lines["trial 3"].endswith("meets the goal")
    assert "43.3 % less latency" in lines["trial 5"] and "outside the curve's 5.000-10.000 ms" in lines["trial 5"]
    assert lines["trial 7"].endswith("below the goal") and "12.5 % more latency" in lines["trial 7"]
    assert lines["trial 9"].endswith("no verdict")
    assert "goal against mobilenet-v2 (+1 point or 15 % less latency): met by trial 3, trial 5" in out
    assert "Kendall tau 0.548" in out and "over 4 models" in out and "below the issue's 12" in out
    assert "left out (another recipe): trial 11" in out
    assert "retrain failed: trial 15: RuntimeError: CUDA out of memory" in out


def test_an_experiment_without_retrained_models_still_reports(tmp_path):
    d = fill_synthetic(tmp_path / "old", n=12, seed=1)
    s = make_report(d, plots=True, html=True)
    assert "retrained" not in s and set(s["plots"]) == {"reward", "pareto", "latency_hist", "entropy"}
    assert not (d / "plots" / "retrained.png").exists()
    assert 'id="retrained"' not in (d / "report.html").read_text()
    out = mnas("report", d, "--no-plots", "--no-html").stdout
    assert "retrained" not in out and "top 10 architectures" in out
