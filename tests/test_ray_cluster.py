"""Searches on a real two-node Ray cluster, run inside private network namespaces this test creates.

Ray binds the machine's external address by default; here every Ray process and the driver live in two
namespaces joined by a veth pair with addresses the test assigns (10.213.N.1 head, 10.213.N.2 worker), so no
packet leaves them. Processes are stopped by their ids, the ones `ip netns pids` lists in our namespaces
(never `ray stop`, which would stop every Ray process on this shared machine).
"""

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mnas.store import Store
from mnas.testing import communicate, cpu_seconds, tiny, wait_for

pytestmark = pytest.mark.cluster

RAY = str(Path(sys.executable).parent / "ray")
PORT = 6391
TINY = tiny(latency={"backend": "onnxruntime", "resolution": 32, "runs": 5, "warmup": 1})
LIGHT = ["--num-cpus", "1", "--object-store-memory", "100000000", "--disable-usage-stats"]


def sh(*args, check=True, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and r.returncode:
        pytest.fail(f"{' '.join(map(str, args))} failed ({r.returncode}): {(r.stdout + r.stderr)[-3000:]}")
    return r


class Cluster:
    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("ip"):
            pytest.fail("the Ray cluster tests need root and iproute2 (`ip`) to create network namespaces")
        n = os.getpid() % 250 + 1
        self.head_ns, self.worker_ns = f"mnas-test-{os.getpid()}-h", f"mnas-test-{os.getpid()}-w"
        self.head_ip, self.worker_ip = f"10.213.{n}.1", f"10.213.{n}.2"
        self.address = f"{self.head_ip}:{PORT}"
        self.tmp = Path(tempfile.mkdtemp(prefix="mnasray"))  # short: Ray's unix sockets live below it
        token = self.tmp / "auth_token"  # every node and the driver share this cluster's own token
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1", "PYTHONUNBUFFERED": "1",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env.pop("RAY_ADDRESS", None)
        self.namespaces: list[str] = []

    def up(self) -> None:
        for ns in (self.head_ns, self.worker_ns):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        a, b = f"mt{os.getpid()}a", f"mt{os.getpid()}b"
        sh("ip", "link", "add", a, "netns", self.head_ns, "type", "veth", "peer", "name", b, "netns", self.worker_ns)
        for ns, dev, ip in ((self.head_ns, a, self.head_ip), (self.worker_ns, b, self.worker_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        self.run_in(self.head_ns, RAY, "start", "--head", "--node-ip-address", self.head_ip, "--port", PORT,
                    "--include-dashboard=false", "--temp-dir", self.tmp / "h", *LIGHT)
        self.start_worker()

    def start_worker(self) -> None:
        self.run_in(self.worker_ns, RAY, "start", "--address", self.address, "--node-ip-address", self.worker_ip,
                    "--temp-dir", self.tmp / "w", "--resources", json.dumps({"device:test": 1}), *LIGHT)

    def run_in(self, ns, *args):
        return sh("ip", "netns", "exec", ns, *args, env=self.env)  # no limit: pytest-timeout is the backstop

    def popen_in(self, ns, *args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", ns, *map(str, args)], env=self.env, **kw)

    def pids(self, ns) -> list[int]:
        r = sh("ip", "netns", "pids", ns, check=False)
        return [int(p) for p in r.stdout.split()]

    def cpu_seconds(self) -> float:
        """CPU time of every process in the cluster's namespaces: grows while the cluster works."""
        return cpu_seconds(*(pid for ns in self.namespaces for pid in self.pids(ns)))

    def kill_namespace(self, ns, sig=signal.SIGKILL) -> list[int]:
        pids = self.pids(ns)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def down(self) -> None:
        for ns in self.namespaces:
            self.kill_namespace(ns, signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline and any(self.pids(ns) for ns in self.namespaces):
            time.sleep(0.3)
        for ns in self.namespaces:
            self.kill_namespace(ns, signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)  # removes the veth pair with it
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.up()
        yield c
    finally:
        c.down()


def ray_config(tmp_path, cluster, trials, **executor):
    cfg = dict(TINY, trials=trials, executor={"kind": "ray", "address": cluster.address, "workers": 2, **executor})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def search(cluster, cfg, out, **kw):
    return cluster.popen_in(cluster.head_ns, sys.executable, "-m", "mnas", "search", out, "--config", cfg,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def trial_states(run: Path) -> list[tuple]:
    """(id, status) of every trial in the experiment so far."""
    db = run / "experiment.db"
    if not db.exists():  # connecting would create it
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT id, status FROM trials ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []


def finish(cluster, proc, run: Path, code: int = 0):
    """The search's stdout and stderr once it exits with ``code``: however long that takes while its trials
    or the cluster's processes make progress (a busy machine once took 113 s for one tiny trial)."""
    out, err = communicate(proc, progress=[lambda: trial_states(run), cluster.cpu_seconds], what="the search")
    assert proc.returncode == code, err[-3000:]
    return out, err


def node_of(worker: str, part: str) -> str:
    """'train:host:pid@10.213.1.1 latency:host:pid@10.213.1.2' -> the IP of the given part."""
    for item in worker.split():
        if item.startswith(part + ":"):
            return item.rsplit("@", 1)[1]
    raise AssertionError(f"no {part} in {worker!r}")


def test_device_resource_routes_measurements_to_its_node(cluster, tmp_path):
    run = tmp_path / "run"
    finish(cluster, search(cluster, ray_config(tmp_path, cluster, 3, device_resource="device:test"), run), run)
    with Store(tmp_path / "run", create=False) as store:
        trials = store.trials()
    assert len(trials) == 3 and all(t.status == "completed" and t.latency_ms > 0 for t in trials)
    assert {node_of(t.worker, "latency") for t in trials} == {cluster.worker_ip}
    assert {node_of(t.worker, "train") for t in trials} <= {cluster.head_ip, cluster.worker_ip}


def test_worker_node_killed_mid_search_loses_and_duplicates_nothing(cluster, tmp_path):
    """Both nodes train (one CPU each); the worker node dies while it trains a trial: Ray re-runs that trial
    on the head, and the store ends with every trial exactly once."""
    budget = 5
    run = tmp_path / "run"
    proc = search(cluster, ray_config(tmp_path, cluster, budget), run)

    def training_there() -> bool:
        for pid in cluster.pids(cluster.worker_ns):
            try:
                if "_train_remote" in Path(f"/proc/{pid}/cmdline").read_text():
                    return True
            except OSError:
                pass
        return False

    wait_for(lambda: proc.poll() is not None or training_there(),
             progress=[lambda: trial_states(run), cluster.cpu_seconds], poll_s=0.2, what="a training on the worker")
    assert training_there(), "the worker node never trained a trial"
    killed = cluster.kill_namespace(cluster.worker_ns)  # the whole node at once, as when a machine dies
    with sqlite3.connect(tmp_path / "run" / "experiment.db", timeout=10) as c:
        in_flight = {r[0] for r in c.execute("SELECT id FROM trials WHERE status = 'running'")}
    assert killed and in_flight
    finish(cluster, proc, run)
    with Store(tmp_path / "run", create=False) as store:
        trials = store.trials()
    print(f"killed the worker node ({len(killed)} processes); in flight then: {sorted(in_flight)}")
    for t in trials:
        print(t.id, t.status, t.worker, t.seconds)
    assert [t.id for t in trials] == list(range(1, budget + 1))
    assert len({t.arch for t in trials}) == budget
    assert all(t.status == "completed" for t in trials), [t.error for t in trials]
    # the trials in flight when the node died were finished by the surviving node
    assert {node_of(t.worker, "train") for t in trials if t.id in in_flight} == {cluster.head_ip}
    assert not cluster.pids(cluster.worker_ns)


def test_private_local_instance_trains_in_parallel_and_times_in_the_driver(tmp_path):
    """No address: a private one-node Ray instance on this machine, 2 worker processes; latencies measured
    by the driver between training waves."""
    import ray

    from mnas.search.config import config_from_dict
    from mnas.search.driver import Search

    cfg = config_from_dict(dict(TINY, trials=4, executor={"kind": "ray", "workers": 2}))
    exp = Search.open(cfg, tmp_path / "run")
    state = exp.run()
    assert not ray.is_initialized()  # the executor stopped the instance it started
    assert state.completed == 4 and state.failed == 0
    trials = exp.store.trials()
    assert [t.id for t in trials] == [1, 2, 3, 4]
    assert len({node_of(t.worker, "train") for t in trials}) == 1
    assert {node_of(t.worker, "latency") for t in trials} == {"driver"}
    assert len({t.worker.split()[0].rsplit("@")[0] for t in trials}) == 2  # two worker processes trained


def test_a_device_no_live_node_offers_is_refused_at_start(cluster, tmp_path):
    """Runs after the node-loss test, so the only device node is gone; Ray would queue measurements
    for it forever, the executor refuses the search instead."""
    cluster.kill_namespace(cluster.worker_ns)
    cluster.run_in(cluster.head_ns, sys.executable, "-c", (  # until the head has noticed the loss
        "import ray, time; ray.init(address=%r, log_to_driver=False)\n"
        "while any(n['Alive'] and 'device:test' in n['Resources'] for n in ray.nodes()): time.sleep(0.5)"
    ) % cluster.address)
    proc = search(cluster, ray_config(tmp_path, cluster, 2, device_resource="device:test"), tmp_path / "run")
    _, err = finish(cluster, proc, tmp_path / "run", code=2)
    assert "device:test" in err and len(err.strip().splitlines()) == 1, err[-2000:]


def test_a_quarter_gpu_per_trial_trains_four_trials_at_once_on_one_gpu(tmp_path, caplog):
    """Ray Tune's habit, ``num_gpus=1/N`` per trial, is ``gpus_per_trial: 1/N``: on a node with one GPU,
    0.25 trains 4 trials at once. Ray believes the GPUs a node declares, so one is declared here on a
    machine without CUDA: the trials run on the CPU (device auto) and the driver says so once."""
    import ray

    from mnas.search.config import config_from_dict
    from mnas.search.driver import Search

    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", object_store_memory=100_000_000)
    try:
        barrier = tmp_path / "barrier"
        barrier.mkdir()

        @ray.remote(num_cpus=1, num_gpus=0.25)
        def warm(i: int) -> tuple[int, list, int]:  # 4 worker processes with torch loaded, for the trials
            import mnas.train.trainer  # noqa: F401

            (barrier / str(i)).touch()  # then wait for the others: only 4 tasks holding the GPU at once get past
            deadline = time.monotonic() + 120  # reached only when Ray runs fewer than 4 at once
            while len(list(barrier.iterdir())) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            return os.getpid(), ray.get_gpu_ids(), len(list(barrier.iterdir()))

        warmed = ray.get([warm.remote(i) for i in range(4)])
        assert len({pid for pid, _, _ in warmed}) == 4 and all(ids == [0] for _, ids, _ in warmed)
        assert all(seen == 4 for _, _, seen in warmed)  # four tasks held a quarter of the one GPU each, at once
        cfg = config_from_dict(dict(tiny(trials=4, **{"proxy.train_limit": 512, "proxy.epochs": 3}),
                                    latency=TINY["latency"],
                                    executor={"kind": "ray", "workers": 4, "cpus_per_trial": 1,
                                              "gpus_per_trial": 0.25}))
        with caplog.at_level("WARNING", logger="mnas"), Search.open(cfg, tmp_path / "run") as exp:
            state = exp.run()
            trials = exp.store.trials()
        assert ray.is_initialized()  # not the executor's instance: left running
    finally:
        ray.shutdown()
    assert state.completed == 4, [t.error for t in trials]
    spans = [(t.train["started"], t.train["started"] + t.train["train_seconds"] + t.train["eval_seconds"])
             for t in trials]
    # the search's trials shared the GPU too; the driver times each trial before it starts, so on a busy
    # machine the first can end before the fourth starts: at least two at once (one GPU each: never two)
    assert max(sum(s <= start < e for s, e in spans) for start, _ in spans) >= 2, spans
    assert {t.train["device"] for t in trials} == {"cpu"}
    said = [r.getMessage() for r in caplog.records if "sees no CUDA device" in r.getMessage()]
    assert len(said) == 1 and "0.25 GPU" in said[0], said
