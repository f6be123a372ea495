"""Executors and search spaces are extension points: a plugin registers one through an entry point, with no
line in mnas, and the CLI runs it."""

import json

import pytest

from mnas.testing import install_plugin, plugins_on_path, run_cli as mnas, tiny, write_config

TOY_EXECUTOR = '''
from mnas.run.local import LocalExecutor


class ToyExecutor(LocalExecutor):
    """The in-process executor, signing every trial it runs."""

    def wait(self, timeout=None):
        done = super().wait(timeout)
        for trial in done:
            trial.worker = "toy-executor"
        return done
'''

TOY_SPACE = '''
from pathlib import Path

from mnas.space import MnasNetSpace

YAML = """
name: toy
choices: {op: [mb6], kernel: [3, 5], se: [0], skip: [identity], width: [1.0], layers: [0]}
blocks:
  - {width_base: 16, layers_base: 1, stride: 1, op: ds, kernel: 3}
  - {width_base: 24, layers_base: 1, stride: 2}
"""


def load():
    path = Path(__file__).with_name("toy_space.yaml")
    path.write_text(YAML)
    return MnasNetSpace.load(path)
'''


def test_a_plugin_space_is_shown_by_name(tmp_path):
    root = install_plugin(tmp_path / "site", "toy_space", TOY_SPACE, {"mnas.spaces": {"toy": "toy_space:load"}})
    with plugins_on_path(root):
        r = mnas("space", "show", "--space", "toy", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "toy" and info["size"] == 2  # block 2's kernel is the only open decision


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_a_plugin_executor_runs_a_search_through_the_cli(tmp_path):
    root = install_plugin(tmp_path / "site", "toy_executor", TOY_EXECUTOR,
                          {"mnas.executors": {"toy": "toy_executor:ToyExecutor"}})
    cfg = write_config(tmp_path, tiny(trials=2, **{"executor.kind": "toy"}))
    with plugins_on_path(root):
        r = mnas("search", tmp_path / "run", "--config", cfg)
        assert r.returncode == 0, r.stderr
        trials = json.loads(mnas("trials", tmp_path / "run", "--json").stdout)
    assert len(trials) == 2 and {t["worker"] for t in trials} == {"toy-executor"}
    assert all(t["status"] == "completed" for t in trials)
