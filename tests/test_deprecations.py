"""Renamed words keep working for one release, each with a warning that names the new word."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mnas.cli import main
from mnas.retrain.workflow import recipe_digest
from mnas.search.config import config_from_dict
from mnas.store import Store
from mnas.train.config import TrainConfig, TrainTask


def test_the_old_preset_key_is_read_as_the_recipe_with_a_warning():
    with pytest.warns(FutureWarning, match="'preset' is deprecated, write 'recipe'"):
        old = TrainTask.model_validate({"preset": "mnasnet-imagenet", "resolution": 32})
    assert old == TrainTask(recipe="mnasnet-imagenet", resolution=32) and old.lr == 0.016
    with pytest.warns(FutureWarning, match="'preset' is deprecated"):
        cfg = config_from_dict({"trials": 1, "proxy": {"preset": "cifar"}})
    assert cfg.proxy.recipe == "cifar" and cfg.proxy.epochs == TrainConfig(recipe="cifar").epochs
    with pytest.warns(FutureWarning, match="strategy: 'options' is deprecated, write 'settings'"):
        cfg = config_from_dict({"trials": 1, "strategy": {"name": "ppo", "options": {"profile": "paper"}}})
    assert cfg.strategy.settings == {"profile": "paper"}
    with pytest.warns(FutureWarning):  # both given: the new key wins
        assert TrainConfig.model_validate({"preset": "cifar", "recipe": "fast"}).recipe == "fast"


def test_the_old_class_name_is_the_new_class_with_a_warning():
    with pytest.warns(FutureWarning, match="ProxyConfig is deprecated: use TrainTask"):
        from mnas.train import ProxyConfig
    assert ProxyConfig is TrainTask


def test_a_recipe_digest_is_the_one_recorded_before_the_rename():
    """Trainings `mnas retrain` recorded before "preset" became "recipe" are found again, not redone: the
    digests below were computed by the code before the rename."""
    assert recipe_digest(TrainTask(recipe="cifar", dataset="digits", seed=3)) == "c0d078f48e"
    assert recipe_digest(TrainTask(dataset="digits", lr=0.07)) == "f494fef9a6"


def test_old_options_still_work_and_say_what_replaces_them(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trials: 1\nreferences: false\nlatency: {backend: torch, resolution: 32, runs: 1, warmup: 0}\n")
    assert main(["search", "--config", str(cfg), "--out", str(tmp_path / "exp"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "--out is deprecated, use the positional EXPERIMENT" in err
    assert not (tmp_path / "exp").exists()  # a dry run writes nothing
    assert main(["search", str(tmp_path / "a"), "--config", str(cfg), "--out", str(tmp_path / "b")]) == 2
    assert "two experiment directories" in capsys.readouterr().err


def _as_written_before_the_rename(config: dict) -> dict:
    old = json.loads(json.dumps(config))
    old["proxy"]["preset"] = old["proxy"].pop("recipe")
    old["strategy"]["options"] = old["strategy"].pop("settings")
    return old


def test_an_experiment_stored_before_the_rename_resumes_without_warnings(tiny_search_copy, tiny_search_config):
    from mnas.search.driver import claim_experiment

    with Store(tiny_search_copy, create=False) as store:
        store.set_meta("config", _as_written_before_the_rename(store.meta().config))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the user cannot rewrite what the store recorded
        store, cfg = claim_experiment(config_from_dict(dict(tiny_search_config, trials=4)), tiny_search_copy,
                                      resume=True)
        store.close()
    assert cfg.trials == 4 and cfg.proxy.recipe == TrainTask().recipe
    with pytest.warns(FutureWarning):  # a config file with the old keys resumes it too, with a warning
        old_file = _as_written_before_the_rename(config_from_dict(tiny_search_config).resolved())
        store, cfg = claim_experiment(config_from_dict(old_file), tiny_search_copy, resume=True)
        store.close()


def test_a_checkpoint_written_before_the_rename_resumes(tmp_path):
    from mnas.data import load_dataset
    from mnas.space import zoo
    from mnas.train.full import train_full

    data = load_dataset("digits", 16, 0.2, 0)
    recipe = TrainConfig(recipe="cifar", resolution=16, batch_size=64, holdout=0.2, threads=1, device="cpu",
                         train_limit=256, epochs=1)
    first = train_full(zoo.get("mnasnet-small"), data, recipe, tmp_path)
    last = tmp_path / "last.pt"
    blob = torch.load(last, map_location="cpu", weights_only=True)
    blob["recipe"]["preset"] = blob["recipe"].pop("recipe")  # what mnas wrote before the rename
    torch.save(blob, last)
    again = train_full(zoo.get("mnasnet-small"), data, recipe, tmp_path, resume=True)  # recognised: not redone
    assert again.ok and again.history == first.history


def _old_screened_ppo_state() -> dict:
    """What ``ppo`` saved when it screened by default: strategy "ppo", no version, proposals kept with
    their policy log-probability alone."""
    from mnas.search.strategies import make_strategy
    from mnas.space.nb201 import Nb201Space

    s = make_strategy("ppo-screened", Nb201Space(), seed=0, batch_size=4, hidden_size=16, embedding_size=8)
    for _ in range(6):
        t = s.ask()
        s.tell(t, 0.5 + 0.01 * sum(t), {"accuracy": 0.5 + 0.01 * sum(t), "latency_ms": 1.0 + sum(t)})
    s.ask()
    state = json.loads(json.dumps(s.state_dict()))
    del state["version"]
    state["strategy"] = "ppo"
    state["pending"] = [row[:2] for row in state["pending"]]
    state["ready"] = [row[:3] for row in state["ready"]]
    return state


@pytest.mark.parametrize("name,says", [("ppo", "ppo is now the controller alone"),
                                       ("ppo-screened", "outstanding are learned from")])
def test_a_ppo_state_saved_when_ppo_screened_resumes_with_a_warning(name, says):
    from mnas.search.strategies import make_strategy
    from mnas.space.nb201 import Nb201Space

    state = _old_screened_ppo_state()
    s = make_strategy(name, Nb201Space(), seed=1, batch_size=4, hidden_size=16, embedding_size=8)
    with pytest.warns(UserWarning, match=says):
        s.load_state_dict(state)
    assert s.n_asked == 7 and s.updates == 1 and len(s.pending) == 1 and len(s.ready) == 2
    for _ in range(3):  # the outstanding proposal and two more: a full batch, an update
        t = s.pending[0].tokens if s.pending else s.ask()
        s.tell(t, 0.6, {"accuracy": 0.6, "latency_ms": 2.0})
    assert s.updates == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what it saves now loads without a word
        make_strategy(name, Nb201Space(), batch_size=4, hidden_size=16, embedding_size=8).load_state_dict(
            json.loads(json.dumps(s.state_dict())))
