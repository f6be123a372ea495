"""``mnas train EXPERIMENT --rank K | --trial ID``: the searched network trained as deployed (width 1.0, the
search's dataset, the latency's resolution, a full-training recipe), exportable as that trial; the width and
resolution printed for every training; export's refusal naming the command that works."""

from __future__ import annotations

import json

import pytest

from mnas import MnasError
from mnas.retrain.winner import DEPLOYED_RECIPE, trial_training
from mnas.store import Store
from mnas.store.query import ranked_trials

QUICK = ("--epochs", "0.05", "--batch-size", "64")  # a few steps: seconds on a CPU


def one_line_error(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def ranked(run):
    with Store(run, readonly=True) as store:
        return ranked_trials(store)


def test_the_task_is_the_deployed_network_not_the_proxy(tiny_search):
    with Store(tiny_search, readonly=True) as store:
        cfg = store.meta().config
    last = ranked(tiny_search)[-1]
    t = trial_training(tiny_search, trial_id=last.id)
    assert t.ranked.trial.id == last.id and t.arch.canonical == last.arch and t.label == f"trial {last.id}"
    assert cfg["proxy"]["width_multiplier"] != 1.0  # the proxy trained a narrower network
    assert t.task.width_multiplier == 1.0 and t.task.resolution == cfg["latency"]["resolution"]
    assert t.task.dataset == cfg["proxy"]["dataset"] and t.task.recipe == DEPLOYED_RECIPE
    # the caller's settings win
    t = trial_training(tiny_search, rank=1, recipe="fast", resolution=16, epochs=2)
    assert t.ranked.rank == 1 and (t.task.recipe, t.task.resolution, t.task.epochs) == ("fast", 16, 2)
    assert trial_training(tiny_search).ranked.rank == 1  # neither given: the winner
    with pytest.raises(MnasError, match="not both"):
        trial_training(tiny_search, rank=1, trial_id=last.id)


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_train_rank_then_export_it_as_that_trial(tiny_search, cli, tmp_path):
    best = ranked(tiny_search)[0]
    into = tmp_path / "winner"
    r = cli("train", tiny_search, "--rank", "1", "--dir", into, *QUICK, "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["arch"] == best.arch and d["name"] == f"trial {best.id}"
    assert d["width_multiplier"] == 1.0 and d["resolution"] == 32 and d["recipe"] == DEPLOYED_RECIPE
    # the folder's guarantees: a second run is refused, --resume continues
    one_line_error(cli("train", tiny_search, "--rank", "1", "--dir", into, *QUICK), "--resume")
    r = cli("train", tiny_search, "--rank", "1", "--dir", into, *QUICK, "--resume")
    assert r.code == 0 and "training trial" in r.stdout and "width 1, 32 px" in r.stdout, r.stderr
    # the checkpoint is the trial's architecture: export takes it as that trial
    r = cli("export", tiny_search, "--rank", "1", "--weights", into, "--out", tmp_path / "w.onnx", "--no-measure",
            "--verify-limit", "20", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["trial"] == best.id and (tmp_path / "w.onnx").is_file()
    # another trial's checkpoint: the refusal names the training that fits (the seeded search's trials differ)
    other = next(t for t in ranked(tiny_search) if t.arch != best.arch)
    r = cli("export", tiny_search, "--trial", other.id, "--weights", into, "--out", tmp_path / "o.onnx")
    one_line_error(r, f"mnas train {tiny_search} --trial {other.id} --dir DIR")


def test_trial_choice_errors(tiny_search, cli):
    one_line_error(cli("train", "mnasnet-a1", "--rank", "1"), "not an experiment directory")
    one_line_error(cli("train", tiny_search, "--rank", "1", "--trial", "1"), "not both")
    one_line_error(cli("train", tiny_search, "--rank", "99"), "out of range")


def test_export_without_weights_names_the_training_command(tiny_search, cli, tmp_path):
    r = cli("export", tiny_search, "--rank", "1", "--out", tmp_path / "m.onnx")
    one_line_error(r, f"mnas train {tiny_search} --rank 1 --dir DIR", "mnas export --weights DIR")


def test_train_arch_prints_its_width_and_resolution(cli):
    r = cli("train", "stem8:ds_r1_k3_s1_e1_i8_o8:head16", "--dataset", "digits", "--resolution", "8", *QUICK)
    assert r.code == 0, r.stderr
    assert r.stdout.startswith("training custom at width 0.5, 8 px, on digits (recipe fast")  # the proxy's width


def test_the_api_trains_the_trial_as_deployed(tiny_search, tmp_path):
    from mnas.api import open_experiment

    best = ranked(tiny_search)[0]
    fit = open_experiment(tiny_search).train(tmp_path / "w", trial=best.id, epochs=0.05, batch_size=64)
    assert fit.ok and fit.arch == best.arch and (tmp_path / "w" / "best.pt").is_file()
