"""One config vocabulary: presets apply unless a field is set, `mnas config show` prints the resolved
config, the store records exactly that, and global CLI options (--version, --debug)."""

import json
from pathlib import Path

import pytest

from mnas import MnasError, __version__
from mnas.search.config import config_from_dict
from mnas.testing import run_cli as mnas, tiny, write_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_paper_config_gets_the_paper_preset():
    r = mnas("config", "show", ROOT / "configs" / "mnasnet-imagenet.yaml", "--json")
    assert r.returncode == 0, r.stderr
    proxy = json.loads(r.stdout)["proxy"]
    assert (proxy["resolution"], proxy["width_multiplier"], proxy["epochs"]) == (224, 1.0, 5.0)
    assert proxy["optimizer"] == "rmsprop" and proxy["batch_size"] == 256


def test_a_set_field_wins_over_the_preset_and_defaults_come_from_one_place():
    base = {"trials": 1, "proxy": {"recipe": "mnasnet-imagenet", "resolution": 32}}
    cfg = config_from_dict(base).resolved()
    assert cfg["proxy"]["resolution"] == 32 and cfg["proxy"]["epochs"] == 5.0
    assert cfg["reward"]["alpha"] == cfg["reward"]["beta"] == -0.07  # the soft preset's exponents
    assert cfg["latency"]["threads"] == 1 and cfg["executor"]["kind"] == "local"
    hard = config_from_dict({"trials": 1, "reward": {"preset": "hard"}}).resolved()["reward"]
    assert (hard["alpha"], hard["beta"]) == (0.0, -1.0)


@pytest.mark.parametrize("raw,needle", [
    ({"trials": 1, "proxy": {"resolutoin": 32}}, "proxy.resolutoin: unknown key"),
    ({"trials": 1, "latency": {"threads": 0}}, "latency.threads"),
    ({}, "set a budget"),
])
def test_config_errors_name_the_key(raw, needle):
    with pytest.raises(MnasError, match=needle):
        config_from_dict(raw)


def test_the_store_records_the_resolved_config(tmp_path):
    from mnas.search.driver import Search, claim_experiment

    # no reference timings: at the recipe's 224 px they take half a minute and are recorded apart from the config
    cfg = config_from_dict({"trials": 1, "proxy": {"recipe": "mnasnet-imagenet"}, "reward": {"target_ms": 5},
                            "references": False})

    store, cfg = claim_experiment(cfg, tmp_path / "run")
    Search(store, cfg, 5.0)  # records the experiment; runs nothing
    assert store.meta().config == cfg.resolved()
    store.close()


def test_version_and_debug(tmp_path):
    r = mnas("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mnas {__version__}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("trials: 1\nproxy: {resolutoin: 3}\n")
    quiet = mnas("config", "show", bad)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = mnas("--debug", "config", "show", bad)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "MnasError" in loud.stderr


TINY = tiny(trials=2)


def test_dry_run_checks_and_writes_nothing(tmp_path):
    path = write_config(tmp_path, TINY)
    r = mnas("search", tmp_path / "run", "-c", path, "--dry-run", "--json", "--set", "trials=3",
             "--set", "proxy.epochs=2", "--set", "strategy.name=evolution",
             "--set", "strategy.settings={population_size: 4, sample_size: 2}")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["config"]["trials"] == 3 and plan["config"]["proxy"]["epochs"] == 2
    assert plan["config"]["strategy"]["settings"] == {"population_size": 4, "sample_size": 2}
    assert plan["target_ms"] == 1.0
    assert not (tmp_path / "run").exists()
    for wrong, needle in (("latency.backend=nope", "nope"), ("strategy.settings={population: 4}", "population"),
                          ("strategy.settings={population_size: '10'}", "invalid options"),
                          ("executor.kind=rya", "unknown executor")):
        bad = mnas("search", tmp_path / "run", "-c", path, "--dry-run", "--set", wrong)
        assert bad.returncode == 2 and needle in bad.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_a_piped_search_logs_one_line_per_finished_trial(tmp_path):
    path = write_config(tmp_path, TINY)
    r = mnas("search", tmp_path / "run", "-c", path)  # stdout is not a terminal here, as under nohup
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if " completed: arch " in ln]
    assert len(lines) == 2 and all("reward" in ln and "latency" in ln and " s on " in ln for ln in lines)
    assert "preflight checks passed" in r.stdout and r.stderr.strip() == ""


def test_a_wrong_executor_stores_nothing_and_can_be_fixed(tmp_path):
    from mnas.search.driver import Search

    with pytest.raises(MnasError, match="unknown executor 'rya'"):
        Search.open(config_from_dict(tiny(**{"executor.kind": "rya"})), tmp_path / "run")
    run = Search.open(config_from_dict(tiny(trials=1)), tmp_path / "run")  # the fixed config starts afresh
    run.close()
