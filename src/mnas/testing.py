"""Helpers for tests of mnas and of its plugins: one tiny search config, a scripted executor, a synthetic
store, the CLI called in this process, and a plugin installed the way pip would install it.

This is the top layer (it may import any part of mnas and nothing imports it). The tests' fixtures
(tests/conftest.py) are built from these functions; a plugin's own tests can use them too::

    from mnas.testing import run_cli, tiny

    r = run_cli("config", "show", "--json")
    assert r.code == 0, r.stderr
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnas.report.synthetic import fill_synthetic
from mnas.store import Trial, TrialStatus

__all__ = ["TINY", "CliResult", "ScriptedExecutor", "communicate", "cpu_seconds", "fill_synthetic",
           "install_plugin", "plugins_on_path", "run_cli", "run_cli_process", "scripted_search", "tiny", "wait_for",
           "write_config"]

# A real search in seconds: the digits proxy at 16 px on 128 images, real onnxruntime timings at 32 px.
TINY: dict[str, Any] = {
    "name": "tiny", "seed": 0, "trials": 6,
    "strategy": {"name": "random"},
    "reward": {"preset": "soft", "target_ms": 1.0},
    # retime_top 0: re-timing the front at the end costs each search seconds; the tests of it ask for it
    "latency": {"backend": "onnxruntime", "resolution": 32, "runs": 5, "warmup": 1, "cv_threshold": 0.5,
                "retime_top": 0},
    "proxy": {"dataset": "digits", "resolution": 16, "width_multiplier": 0.25, "epochs": 1,
              "batch_size": 64, "train_limit": 128},
    "references": False,  # timing the reference models costs more than the search; one test of them is enough
}


def tiny(**changes: Any) -> dict[str, Any]:
    """A copy of TINY with ``changes``: dotted keys (``proxy.epochs``) set nested values."""
    cfg = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def write_config(directory: str | Path, cfg: dict[str, Any], name: str = "cfg.yaml") -> Path:
    import yaml

    path = Path(directory) / name
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- the CLI in this process

@dataclass
class CliResult:
    """What a ``mnas`` command left: its exit code and what it wrote."""

    code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:  # the name subprocess.CompletedProcess uses
        return self.code


def run_cli(*args: Any, env: dict[str, str] | None = None, check: bool = False) -> CliResult:
    """``mnas ARGS`` in this process (``mnas.cli.main``): the exit code, stdout and stderr as a process
    would give them. An exception that escapes ``main`` (a bug, or ``--debug``) becomes exit code 1 and its
    traceback on stderr, as the interpreter would print it. ``env`` is set for the call only; ``check``: an
    exit code other than 0 raises AssertionError with the output. The logging set-up the command made and
    the ``MNAS_DEBUG`` it may set are undone afterwards, so calls do not leak into each other."""
    from mnas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _restored_process_state(env):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except KeyboardInterrupt:
                raise
            except BaseException:  # noqa: BLE001 (what the interpreter does with it)
                traceback.print_exc(file=err)
                code = 1
    result = CliResult(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"mnas {' '.join(map(str, args))} -> {code}\n{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def _restored_process_state(env: dict[str, str] | None) -> Iterator[None]:
    root, mnas_log = logging.getLogger(), logging.getLogger("mnas")
    handlers, levels = root.handlers[:], (root.level, mnas_log.level)
    names = {"MNAS_DEBUG", *(env or {})}
    saved_env = {name: os.environ.get(name) for name in names}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(levels[0])
        mnas_log.setLevel(levels[1])
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_cli_process(*args: Any, env: dict[str, str] | None = None, timeout: float | None = None,
                    **popen: Any) -> subprocess.CompletedProcess:
    """``python -m mnas ARGS`` in a new process: for tests where the process boundary is the point (the
    console entry, kill -9, a lock held by another process). ``env`` adds to this process's environment."""
    return subprocess.run([sys.executable, "-m", "mnas", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **popen)


# -- waiting for other processes: for progress, never for a fixed number of seconds

def wait_for(condition: Callable[[], Any], progress: Iterable[Callable[[], Any]] = (), stall_s: float = 120.0,
             poll_s: float = 0.1, what: str = "the condition") -> Any:
    """Poll ``condition`` until it returns something true, and return that. Give up (AssertionError) only
    when none of the ``progress`` readings (a row count, a file size, ``cpu_seconds`` of the processes doing
    the work) has changed for ``stall_s`` seconds: a slow machine extends the wait, a stuck process ends it.
    Without ``progress`` it waits as long as the condition is false (pytest-timeout is the backstop)."""
    readings = list(progress)
    last: tuple = ()
    changed = time.monotonic()
    while True:
        got = condition()
        if got:
            return got
        if readings:
            now = tuple(read() for read in readings)
            if now != last:
                last, changed = now, time.monotonic()
            elif time.monotonic() - changed > stall_s:
                raise AssertionError(f"gave up waiting for {what}: nothing moved for {stall_s:.0f} s "
                                     f"(progress readings {last})")
        time.sleep(poll_s)


def communicate(proc: subprocess.Popen, progress: Iterable[Callable[[], Any]] = (), stall_s: float = 300.0,
                what: str = "the process") -> tuple[Any, Any]:
    """``proc.communicate()`` (its output read all along, so a full pipe never blocks it) for as long as
    ``progress`` moves (see ``wait_for``); a process that stalls is killed and its stderr shown."""
    got: list[tuple[Any, Any]] = []

    def finished() -> bool:
        try:
            got.append(proc.communicate(timeout=1))
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        wait_for(finished, progress, stall_s=stall_s, poll_s=0, what=f"{what} to finish")
    except AssertionError as e:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"{e}; its stderr ends: {str(err or '')[-2000:]}") from None
    return got[0]


def cpu_seconds(*pids: int) -> float:
    """CPU time (user + system) used so far by the processes ``pids`` and all their descendants, from
    /proc (Linux); a process that has gone counts 0. Where /proc is missing: the wall clock, so that a wait
    on it never gives up."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return time.monotonic()
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


# -- trials without training

class ScriptedExecutor:
    """Answers each trial at once with the next (accuracy, latency_ms) of a script, as a worker or a device
    agent might (the numbers may be broken on purpose: NaN, negative, a string); after the script, (0.5, 1.0).
    ``fail_first``: every trial fails on its first attempt (a flaky worker). ``attempts`` counts the runs of
    each trial id."""

    capacity = 1

    def __init__(self, results: Sequence[tuple[Any, Any]] | None = None, fail_first: bool = False) -> None:
        self.results = deque(results or [])
        self.fail_first = fail_first
        self.queue: deque = deque()
        self.attempts: dict[int, int] = {}

    def submit(self, job) -> None:
        self.queue.append(job)

    def in_flight(self) -> int:
        return len(self.queue)

    def wait(self, timeout: float | None = None) -> list[Trial]:
        job = self.queue.popleft()
        self.attempts[job.trial_id] = self.attempts.get(job.trial_id, 0) + 1
        if self.fail_first and self.attempts[job.trial_id] == 1:
            return [Trial(job.trial_id, job.arch, TrialStatus.FAILED, error="RuntimeError: worker lost",
                          worker="scripted", started=0.0, finished=1.0)]
        acc, lat = self.results.popleft() if self.results else (0.5, 1.0)
        return [Trial(job.trial_id, job.arch, TrialStatus.COMPLETED, accuracy=acc, latency_ms=lat, params=10,
                      macs=10, worker="scripted", started=0.0, finished=1.0)]

    def shutdown(self) -> None:
        pass


def scripted_search(out: str | Path, results: Sequence[tuple[Any, Any]], **changes: Any):
    """A new experiment in ``out`` (the tiny config with ``changes``) with one trial per scripted result;
    returns the final ``SearchState``."""
    from mnas.search.config import config_from_dict
    from mnas.search.driver import Search

    cfg = config_from_dict(tiny(**{"trials": len(results), **changes}))
    with Search.open(cfg, out, executor=ScriptedExecutor(results)) as search:
        return search.run()


# -- plugins

def install_plugin(root: str | Path, name: str, module_source: str,
                   entry_points: dict[str, dict[str, str]]) -> Path:
    """Install a plugin the way pip would, without pip: ``NAME.py`` and a ``NAME-0.1.dist-info`` with
    ``entry_points`` (group -> {entry name: "module:attr"}) in ``root``. Returns ``root``: put it on the path
    (``plugins_on_path``, or PYTHONPATH for a new process). No mnas file is edited to register it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@contextlib.contextmanager
def plugins_on_path(*roots: str | Path) -> Iterator[None]:
    """Folders of ``install_plugin`` on ``sys.path`` for the block, every registry reading its entry points
    afresh (as a new process would); afterwards the path, the registries and the modules are as they were."""
    paths = [str(Path(p)) for p in roots]
    plugin_modules = {p.stem for root in paths for p in Path(root).iterdir()
                      if p.suffix == ".py" or (p.is_dir() and not p.name.endswith(".dist-info"))}
    before = {id(r): (r, dict(r._targets), dict(r._loaded), r._entry_points_read) for r in _registries()}
    modules = set(sys.modules)
    sys.path[:0] = paths
    for r, *_ in before.values():
        r._entry_points_read = False
    try:
        yield
    finally:
        for p in paths:
            sys.path.remove(p)
        for name in set(sys.modules) - modules:
            if name.partition(".")[0] in plugin_modules:
                del sys.modules[name]
        for r in _registries():
            if id(r) in before:
                _, r._targets, r._loaded, r._entry_points_read = before[id(r)]
            else:  # a registry first imported inside the block: forget what the plugins gave it
                for name, target in list(r._targets.items()):
                    module = target.partition(":")[0] if isinstance(target, str) else type(target).__module__
                    if module.partition(".")[0] in plugin_modules:
                        del r._targets[name]
                        r._loaded.pop(name, None)
                r._entry_points_read = False


def _registries() -> list:
    """The extension-point registries of every mnas module imported so far."""
    from mnas.registry import Registry

    found: dict[int, Registry] = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("mnas.") and mod is not None:
            for value in list(vars(mod).values()):
                if isinstance(value, Registry):
                    found[id(value)] = value
    return list(found.values())
