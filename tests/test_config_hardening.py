"""Configs and numbers (issue 30, failure 6): YAML bounded in size, nesting and alias expansion, with errors that
quote a bounded excerpt; finite numbers and seeds numpy and torch take, wherever a number goes (config files,
``--set``, ``mnas.api``); ``retrain --set dataset=`` applied; a declared block width that would size layers
from a width the block does not receive refused. Plus a fuzz test of config values through the CLI's entry."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mnas.api as api
from mnas import MnasError
from mnas.cli.overrides import parse_sets
from mnas.report.synthetic import fill_synthetic
from mnas.search.config import config_from_dict, load_config
from mnas.space import Architecture
from mnas.space.mnasnet import MnasNetSpace
from mnas.store import Store, TrialStatus
from mnas.testing import scripted_search, tiny, write_config

SEED_MAX = 2**32 - 1  # numpy's RandomState (Optuna's samplers) takes no more


def one_line(r, *needles, limit=400):
    assert r.code == 2, (r.stdout[-500:], r.stderr[-2000:])
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and len(err) < limit, err[:2000]
    for n in needles:
        assert n in err, err


def laughs(levels: int, width: int = 9, at: str | None = None) -> str:
    """A "billion laughs" config: each anchor a list of ``width`` aliases of the one before, hidden in a
    strategy's free-form settings (expands to ``width ** levels`` values), and optionally aliased ``at`` a
    top-level key too."""
    lines = ["name: laughs", "trials: 1", "strategy:", "  name: random", "  settings:",
             "    a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    if at:
        lines.append(f"{at}: *a{levels - 1}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("at", [None, "seed"])
def test_a_billion_laughs_config_is_refused_in_one_short_line(tmp_path, cli, at):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(6, at=at))  # 9**6 = 531441 values expanded (9**9 took 24 GB)
    one_line(cli("config", "show", path, "--json"), "aliases")
    with pytest.raises(MnasError, match="aliases"):
        api.search(yaml.safe_load(path.read_text()), tmp_path / "x")


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path, cli):
    path = write_config(tmp_path, tiny())
    deep = "[" * 3000 + "]" * 3000
    (tmp_path / "deep.yaml").write_text(path.read_text() + f"extra: {deep}\n")
    one_line(cli("config", "show", tmp_path / "deep.yaml"), "nested more than")
    one_line(cli("search", tmp_path / "run", "--config", path, "--set", f"strategy.settings.x={deep}"),
             "nested more than")
    assert not (tmp_path / "run").exists()
    (tmp_path / "space.yaml").write_text("name: mnasnet\nchoices: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    with pytest.raises(MnasError, match="nested more than"):
        MnasNetSpace.load(tmp_path / "space.yaml")


def test_a_huge_or_recursive_yaml_is_one_line(tmp_path, cli):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\nnote: '" + "x" * (2 << 20) + "'\n")
    one_line(cli("config", "show", big), "over the limit")
    loop = tmp_path / "loop.yaml"
    loop.write_text("name: x\ntrials: 1\nstrategy: {name: random, settings: {x: &a [1, *a]}}\n")
    one_line(cli("config", "show", loop), "holds itself")
    digits = tmp_path / "digits.yaml"
    digits.write_text("name: x\ntrials: " + "9" * 5000 + "\n")
    one_line(cli("config", "show", digits))


def test_validation_errors_quote_a_bounded_excerpt():
    with pytest.raises(MnasError) as e:
        config_from_dict(tiny(seed=[["x" * 100_000] * 50] * 50))
    assert "seed" in str(e.value) and len(str(e.value)) < 300


NON_FINITE = [("reward.alpha", "nan"), ("reward.alpha", ".inf"), ("reward.beta", "-.inf"), ("proxy.lr", "inf"),
              ("proxy.epochs", ".nan"), ("latency.cv_threshold", ".nan"), ("time_budget_s", ".inf"),
              ("reward.target_ms", ".inf"), ("executor.cpus_per_trial", ".nan"),
              ("reward.constraints", "[{metric: params, target: .inf}]"), ("strategy.settings.lr", ".nan"),
              ("seed", str(2**32)), ("proxy.seed", str(2**64)), ("seed", "-1")]


@pytest.mark.parametrize("key,value", NON_FINITE)
def test_numbers_must_be_finite_and_seeds_in_range(key, value):
    with pytest.raises(MnasError, match=key.split(".")[-1]) as e:
        config_from_dict(tiny(), overrides=parse_sets([f"{key}={value}"]))
    assert len(str(e.value).splitlines()) == 1


def test_non_finite_numbers_are_refused_by_the_cli_file_and_api(tmp_path, cli):
    cfg = tiny()
    cfg["reward"]["alpha"] = math.inf
    path = tmp_path / "inf.yaml"
    path.write_text(yaml.safe_dump(cfg))  # alpha: .inf
    one_line(cli("search", tmp_path / "a", "--config", path), "reward.alpha")
    ok = write_config(tmp_path, tiny())
    one_line(cli("search", tmp_path / "b", "--config", ok, "--set", "reward.alpha=nan"), "reward.alpha")
    one_line(cli("search", tmp_path / "c", "--config", ok, "--seed", str(2**63)), "seed")
    assert not any((tmp_path / d / "experiment.db").exists() for d in "abc")
    for seed in ("-1", str(SEED_MAX + 1)):  # mnas data builds no TrainTask: the option itself is bounded
        one_line(cli("data", "show", "digits", "--seed", seed), "--seed")
    with pytest.raises(MnasError, match="lr"):
        api.search(tiny(), tmp_path / "d", proxy__lr=math.inf)
    with pytest.raises(MnasError, match="seed"):
        api.train("mnasnet-a1", dataset="digits", seed=-1)
    with pytest.raises(MnasError, match="seed"):
        api.train("mnasnet-a1", dataset="digits", seed=SEED_MAX + 1)
    assert config_from_dict(tiny(seed=SEED_MAX, **{"proxy.seed": SEED_MAX})).seed == SEED_MAX


def test_a_reward_that_overflows_fails_its_trial_not_the_search(tmp_path):
    # finite exponents, yet (LAT / T) ** 1e6 overflows: before, an OverflowError crashed the search
    state = scripted_search(tmp_path / "run", [(0.5, 3.0), (0.5, 1.0)],
                            reward={"preset": None, "alpha": 1e6, "beta": 1e6, "target_ms": 1.0})
    assert state.total == 2 and state.failed == 1 and state.completed == 1
    with Store(tmp_path / "run", readonly=True) as store:
        trials = store.trials()
    assert all(t.reward is None and "reward" in t.error for t in trials if t.status is TrialStatus.FAILED)
    assert [t.reward for t in trials if t.status is TrialStatus.COMPLETED] == [0.5]


def test_bench_set_options_are_finite_and_bounded(cli):
    small = ("bench", "strategies", "--strategies", "ppo", "--budget", "5", "--seeds", "1")
    one_line(cli(*small, "--set", "ppo.lr=NaN"), "ppo.lr", "finite")
    one_line(cli(*small, "--set", "ppo.lr=" + "[" * 100_000 + "]" * 100_000), "ppo.lr", "nested")


def test_report_targets_are_finite_and_positive(tmp_path, cli):
    fill_synthetic(tmp_path, n=12)
    for bad in ("nan", "inf", "-1", "0"):
        one_line(cli("report", tmp_path, "--target", bad, "--no-plots", "--no-html"), "--target")
    assert cli("report", tmp_path, "--target", "2.5", "--no-plots", "--no-html").code == 0


def test_api_arguments_are_validated(tmp_path):
    fill_synthetic(tmp_path, n=12)
    exp = api.open_experiment(tmp_path)
    for call, needle in [(lambda: api.build("mnasnet-a1", num_classes=0), "num_classes"),
                         (lambda: api.build("mnasnet-a1", in_chans=-1), "in_chans"),
                         (lambda: exp.summary(top=0), "top"),
                         (lambda: exp.trials(status="bogus"), "status"),
                         (lambda: exp.export(tmp_path / "m.onnx", rank=0, random_weights=True), "rank")]:
        with pytest.raises(MnasError, match=needle) as e:
            call()
        assert len(str(e.value).splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
    assert len(exp.trials(as_frame=False, status="completed")) > 0


def plan_keys(cli, run, *args):
    r = cli("retrain", run, "--dry-run", "--json", "--references", "none", "--top", "1", *args)
    assert r.code == 0, r.stderr
    return {row["key"] for row in json.loads(r.stdout)}


def test_retrain_set_dataset_is_the_dataset_option(tiny_search, cli):
    run = tiny_search  # proxy dataset: digits
    searched = plan_keys(cli, run)
    with_option = plan_keys(cli, run, "--dataset", "animal-mnist")
    with_set = plan_keys(cli, run, "--set", "dataset=animal-mnist")
    assert with_set == with_option != searched
    assert plan_keys(cli, run, "--set", "dataset=digits", "--dataset", "digits") == searched
    one_line(cli("retrain", run, "--dry-run", "--dataset", "digits", "--set", "dataset=animal-mnist"), "disagree")


def test_a_declared_width_that_would_size_layers_from_another_width_is_refused():
    # i99 after a 16-wide stem: the expansion (99 x 6) or squeeze-excite width would come from a width the
    # block never receives
    for block in ("ir_r1_k3_s1_e6_i99_o24", "ds_r1_k3_s1_e1_i99_o24_se0.25", "cv_r2_k3_s2_e1_i99_o24_se0.25"):
        with pytest.raises(MnasError, match="declares i99 but its input has 16 channels"):
            Architecture.parse(f"stem16:{block}:head64")
    # where it only turns the residual off, as in mnasnet-small's first block, it stays (and builds)
    small = api.architecture("mnasnet-small")
    assert small.blocks[0].in_ch != small.stem and small.blocks[0].shortcut(0) == "none"
    api.build(small, num_classes=10)
    assert Architecture.parse("stem16:ds_r1_k3_s1_e1_i99_o16:head64").blocks[0].shortcut(0) == "none"


# -- fuzz: any value under any key, through the CLI's --set parsing and the config schema

def _leaf_keys() -> list[str]:
    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"
    return sorted(set(walk(config_from_dict(tiny()).resolved())) | {"strategy.settings.lr", "reward.nope"})


KEYS = _leaf_keys()
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
TEXTS = st.one_of(st.text(max_size=30), st.sampled_from(
    [".nan", "-.inf", "1e309", "[&a [1, 2], *a, *a]", "{a: &a [1], b: *a}", "[" * 60 + "]" * 60, "&x [*x]",
     "!!python/object:os.system x", "9" * 5000, "0x_1", "2001-01-01", "~", "[1, .nan]"]))


def _check(key: str, overrides: dict) -> None:
    try:
        cfg = config_from_dict(tiny(), "fuzz", overrides)
    except MnasError as e:
        text = str(e)
        assert len(text.splitlines()) == 1 and len(text) < 600, text[:1000]
        return
    json.dumps(cfg.resolved(), allow_nan=False)  # what the store records holds only finite numbers


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_fuzz_config_values_give_a_config_or_one_line(key, value):
    _check(key, {key: value})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), text=TEXTS)
def test_fuzz_set_options_give_a_config_or_one_line(key, text):
    try:
        overrides = parse_sets([f"{key}={text}"])
    except MnasError as e:
        assert len(str(e).splitlines()) == 1
        return
    _check(key, overrides)


def test_fuzz_config_files_give_a_config_or_one_line(tmp_path):
    for text in ("", "[1, 2]", "just text", "name: [", "\x00\x01", laughs(3, at="trials"), "trials: .nan",
                 "a: !!binary AAAA", "? [1, 2]\n: 3"):
        (tmp_path / "c.yaml").write_text(text)
        with pytest.raises(MnasError) as e:
            load_config(tmp_path / "c.yaml")
        assert len(str(e.value).splitlines()) == 1
