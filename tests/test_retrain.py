"""``mnas retrain RUN``: the top trials and the references trained under one recipe, recorded in the store,
resumable after kill -9 with nothing trained twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnas.store import Store
from mnas.store.query import ranked_trials
from mnas.testing import cpu_seconds, run_cli as mnas, tiny, wait_for, write_config
from mnas.train.config import TrainConfig

LR = TrainConfig(recipe="cifar").lr  # the recipe's own, unless a test sets another
RECIPE = ["--epochs", "2", "--set", "resolution=16", "--set", "batch_size=64", "--set", "train_limit=384",
          "--device", "cpu"]


@pytest.fixture(scope="module")
def experiment(tiny_search, tmp_path_factory):
    """A copy of the session's finished 3-trial search (``mnas search RUN -c CFG``), for this module to
    retrain into."""
    return Path(shutil.copytree(tiny_search, tmp_path_factory.mktemp("retrain") / "exp"))


def test_search_takes_the_experiment_directory_once(tmp_path):
    cfg = write_config(tmp_path, tiny(trials=3))
    for args, words in [((), "give the experiment directory"), ((tmp_path / "x", "-o", tmp_path / "y"), "give one")]:
        bad = mnas("search", *args, "-c", cfg)
        assert bad.returncode == 2 and words in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def rows(directory, lr):
    """The retrained rows of the recipe with this learning rate, by label."""
    with Store(directory, readonly=True) as s:
        return {r.label: r.to_dict() for r in s.retrained() if r.data["recipe"]["lr"] == lr}


@pytest.mark.slow
def test_retrain_records_top_trials_and_references(experiment, tmp_path):
    r = mnas("retrain", experiment, "--top", "2", "--references", "mnasnet-small,mobilenet-v2@0.35", *RECIPE,
             "--json")
    assert r.returncode == 0, r.stderr
    with Store(experiment, readonly=True) as s:
        best = [t.id for t in ranked_trials(s)][:2]
    got = rows(experiment, LR)
    assert list(got) == [f"trial {best[0]}", f"trial {best[1]}", "mnasnet-small", "mobilenet-v2@0.35"]
    for row in got.values():
        assert row["status"] == "completed" and row["epochs"] == 2 and 0 <= row["top1"] <= 1
        assert row["latency_ms"] > 0 and row["params"] > 0 and row["macs"] > 0
        assert [h["epoch"] for h in row["data"]["history"]] == [1, 2]
        assert (experiment / "retrain").is_dir() and os.path.isfile(os.path.join(row["checkpoint"], "last.pt"))
    assert got[f"trial {best[0]}"]["proxy_accuracy"] is not None and got["mnasnet-small"]["proxy_accuracy"] is None
    assert got["mobilenet-v2@0.35"]["data"]["zoo"] == "mobilenet-v2" and got["mobilenet-v2@0.35"]["data"]["width"] == 0.35
    again = mnas("retrain", experiment, "--top", "2", "--references", "mnasnet-small,mobilenet-v2@0.35", *RECIPE)
    assert again.returncode == 0 and again.stdout.count("done already") == 4
    # timings taken again (a quiet machine, twice) are kept side by side, and nothing is trained
    for _ in range(2):
        timed = mnas("retrain", experiment, "--top", "2", "--references", "mnasnet-small,mobilenet-v2@0.35", *RECIPE,
                     "--remeasure")
        assert timed.returncode == 0 and timed.stdout.count("all timings") == 4, timed.stderr
    for label, row in rows(experiment, LR).items():
        runs = row["data"]["latency_runs"]
        assert len(runs) == 2 and len(runs[0]["load"]) == 2
        assert row["latency_ms"] == pytest.approx((runs[0]["latency_ms"] + runs[1]["latency_ms"]) / 2)  # median
        assert row["finished"] == got[label]["finished"] and row["top1"] == got[label]["top1"]
    # the references scored on the search's own proxy, so that they count in the proxy's tau
    scored = mnas("retrain", experiment, "--top", "2", "--references", "mnasnet-small,mobilenet-v2@0.35", *RECIPE,
                  "--score-proxy")
    assert scored.returncode == 0 and scored.stdout.count("proxy accuracy") == 2, scored.stderr
    after = rows(experiment, LR)
    assert all(0 <= after[k]["proxy_accuracy"] <= 1 for k in ("mnasnet-small", "mobilenet-v2@0.35"))
    assert after[f"trial {best[0]}"]["proxy_accuracy"] == got[f"trial {best[0]}"]["proxy_accuracy"]
    # another recipe is another training: new rows beside the old ones
    plan = mnas("retrain", experiment, "--top", "1", "--references", "none", *RECIPE[:-2], "--set", "lr=0.03",
                "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    assert [p["status"] for p in json.loads(plan.stdout)] == ["to train"]


@pytest.mark.slow
def test_retrain_resumes_after_kill_and_trains_nothing_twice(experiment):
    args = [sys.executable, "-m", "mnas", "retrain", str(experiment), "--top", "1", "--references", "mnasnet-small",
            *RECIPE, "--set", "lr=0.07"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def second_started() -> bool:
        small = rows(experiment, 0.07).get("mnasnet-small")
        return small is not None and os.path.isfile(os.path.join(small["checkpoint"], "history.json"))

    wait_for(lambda: proc.poll() is not None or second_started(), progress=[lambda: cpu_seconds(proc.pid)],
             what="the second model's first epoch")
    proc.kill()  # SIGKILL
    proc.wait()
    first = next(r for r in rows(experiment, 0.07).values() if r["kind"] == "trial")
    assert first["status"] == "completed"
    resumed = mnas(*args[3:])  # the resume in this process
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("done already") == 1  # the finished model is not trained again
    after = list(rows(experiment, 0.07).values())
    assert [r["status"] for r in after] == ["completed", "completed"]
    assert next(r for r in after if r["kind"] == "trial")["finished"] == first["finished"]
    small = next(r for r in after if r["kind"] == "reference")
    assert [h["epoch"] for h in small["data"]["history"]] == [1, 2]  # no epoch lost, none repeated


def test_spread_picks_trials_across_the_latency_range(experiment):
    with Store(experiment, readonly=True) as s:
        by_latency = [t.id for t in sorted(s.trials("completed"), key=lambda t: t.latency_ms)]
    r = mnas("retrain", experiment, "--top", "0", "--spread", "2", "--references", "none", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert [p["label"] for p in json.loads(r.stdout)] == [f"trial {by_latency[0]}", f"trial {by_latency[-1]}"]


def test_retrain_input_errors_are_one_line(experiment, tmp_path):
    for args, words in [(["--references", "resnet-50"], "not a zoo model"),
                        (["--references", "mobilenet-v2@wide"], "must be a number"),
                        (["--trial-ids", "x"], "trial ids"),
                        (["--trial-ids", "999"], "no trial 999")]:
        r = mnas("retrain", experiment, *args, "--dry-run")
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    r = mnas("retrain", tmp_path / "nothing", "--dry-run")
    assert r.returncode == 2 and "no experiment" in r.stderr


def test_retrain_runs_beside_a_search_but_not_beside_another_retrain(experiment):
    from mnas.store.lock import RETRAIN_LOCK_NAME, DirectoryLock

    search = DirectoryLock(experiment)  # what a running search holds
    try:
        r = mnas("retrain", experiment, "--top", "1", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        other = DirectoryLock(experiment, RETRAIN_LOCK_NAME)
        try:
            r = mnas("retrain", experiment, "--top", "1", *RECIPE)
            assert r.returncode == 2 and "in use by" in r.stderr and r.stderr.count("\n") == 1
            assert mnas("retrain", experiment, "--top", "1", "--dry-run").returncode == 0  # a plan only reads
        finally:
            other.release()
    finally:
        search.release()


def test_the_default_references_follow_the_experiments_stem(experiment, tmp_path):
    from mnas.retrain.config import RetrainConfig
    from mnas.retrain.workflow import references_for_space

    cifar = references_for_space("mnasnet-cifar")
    assert cifar == RetrainConfig.default("cifar_references") and all("-cifar" in r for r in cifar)
    assert references_for_space("mnasnet") == references_for_space("mnasnet-paper") == \
        RetrainConfig.default("references")
    assert references_for_space(str(tmp_path / "moved.yaml")) == RetrainConfig.default("references")
    # the session's tiny search is in an ImageNet-stem space: its plan retrains the ImageNet references
    r = mnas("retrain", experiment, "--top", "0", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    labels = [p["label"] for p in json.loads(r.stdout)]
    assert labels == ["mobilenet-v2@0.5", "mobilenet-v2@0.75", "mobilenet-v2@1", "mnasnet-a1"]  # widths as stored
