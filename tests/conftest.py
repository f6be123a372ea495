"""Fixtures every test module may use: the CLI called in this process, and real tiny runs made once per
session (a search, a trained checkpoint) for the tests that only inspect one.

Markers (pyproject.toml): ``slow`` (a real search or training of more than a few seconds), ``cluster`` (a Ray
cluster), ``browser`` (headless Chromium), ``gpu`` (needs CUDA; skipped without it). ``make test-fast`` runs
what none of them marks.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from mnas.testing import CliResult, run_cli, tiny, write_config

# PPO and the reference models timed, as a user's search has them (TINY leaves the references out), and
# TensorBoard scalars where the extra is installed. Screen 0: PPO's latency screen would time ~20 candidates
# per proposal, minutes here; test_surrogate.py tests it.
REPORT_SEARCH = tiny(
    name="tiny-report", trials=3, strategy={"name": "ppo", "settings": {"batch_size": 2, "screen": 0}},
    latency={"backend": "onnxruntime", "resolution": 32, "runs": 3, "warmup": 1, "num_classes": 10},
    references=True, tensorboard=importlib.util.find_spec("tensorboard") is not None,
    **{"proxy.train_limit": 64})


def pytest_collection_modifyitems(config, items):
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA device")
            for item in items:
                if item.get_closest_marker("gpu"):
                    item.add_marker(skip)


@pytest.fixture
def cli():
    """``cli(*args, env=None) -> CliResult(code, stdout, stderr)``: ``mnas ARGS`` in this process."""
    def call(*args, env: dict[str, str] | None = None) -> CliResult:
        return run_cli(*args, env=env)
    return call


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory) -> Path:
    """A finished 3-trial PPO search through ``mnas search`` (real training on digits, real onnxruntime
    timings), made once per session. Read it only: a test that writes to it takes ``tiny_search_copy``."""
    base = tmp_path_factory.mktemp("tiny-search")
    out = base / "search"
    r = run_cli("search", out, "--config", write_config(base, REPORT_SEARCH))
    assert r.code == 0, r.stderr
    return out


@pytest.fixture
def tiny_search_copy(tiny_search, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_search, tmp_path / "search"))


@pytest.fixture
def tiny_search_config() -> dict:
    """The config ``tiny_search`` ran (a copy), e.g. to resume a copy of it with a larger budget."""
    return json.loads(json.dumps(REPORT_SEARCH))
