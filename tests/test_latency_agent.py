"""A real device agent on an ephemeral loopback port, and the remote backend's pool against it."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
from urllib.parse import urlparse

import pytest
from agent_helpers import QUERY, TOKEN, call, running_agent

from mnas import MnasError
from mnas.latency import LatencySettings, get_backend
from mnas.latency.agent.server import make_server
from mnas.latency.agent.remote import RemoteBackend
from mnas.latency.agent.wire import settings_from_query, settings_to_query
from mnas.model.export import export, prepare
from mnas.space import zoo

RES = 32
LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def agent():
    with running_agent(max_bytes=LIMIT) as server:
        yield server


@pytest.fixture(scope="module")
def model_file() -> bytes:
    shape = (1, 3, RES, RES)
    return export(prepare(zoo.get("mnasnet-small"), shape, num_classes=10), "onnx", shape)


def test_agent_binds_loopback_by_default():
    server = make_server("onnxruntime", TOKEN, port=0, quiet=True)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_access_log_lines_carry_a_timestamp(agent, capfd):
    agent.quiet = False
    try:
        assert call(agent, "GET", "/health")[0] == 200
    finally:
        agent.quiet = True
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d 127\.0\.0\.1 .*GET /health.* 200", line), line


def test_health_reports_the_fingerprint(agent):
    code, info = call(agent, "GET", "/health")
    assert code == 200 and info["backend"] == "onnxruntime" and info["model_format"] == "onnx"
    assert {"cpu", "cores", "os", "id"} <= info["device"].keys()


def test_good_request_returns_a_result(agent, model_file):
    code, out = call(agent, "POST", f"/v1/measure?{QUERY}", model_file)
    assert code == 200, out
    assert out["backend"] == "onnxruntime" and 0 < out["median_ms"] < 1000
    assert out["input_shape"] == [1, 3, RES, RES] and out["runs"] == 4 and out["device"]["id"]


def oversize(server) -> tuple[int, dict]:
    """Announce a body over the limit and send only its start, as a client would before being stopped:
    the agent must answer 413 without reading (or buffering) the rest."""
    with socket.create_connection(server.server_address[:2], timeout=30) as s:
        s.sendall((f"POST /v1/measure?{QUERY} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                   f"Content-Length: {LIMIT + 1}\r\n\r\n").encode() + b"\0" * 1024)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, json.loads(resp.read())


def test_refusals_leave_the_agent_serving(agent, model_file):
    assert call(agent, "POST", f"/v1/measure?{QUERY}", model_file, token=None)[0] == 401
    assert call(agent, "POST", f"/v1/measure?{QUERY}", model_file, token="wrong")[0] == 401
    assert call(agent, "GET", "/health", token=None)[0] == 401
    code, out = oversize(agent)
    assert code == 413 and "limit" in out["error"]
    code, out = call(agent, "POST", f"/v1/measure?{QUERY}", b"this is not an onnx model" * 40)
    assert code == 400 and "ONNX" in out["error"]
    assert call(agent, "POST", "/v1/measure?runs=lots", model_file)[0] == 400
    assert call(agent, "POST", "/v1/measure?{QUERY}", b"")[0] == 400
    # still alive and still measuring
    assert call(agent, "GET", "/health")[0] == 200
    code, out = call(agent, "POST", f"/v1/measure?{QUERY}", model_file)
    assert code == 200 and out["median_ms"] > 0


def test_one_model_at_a_time(agent, model_file):
    results = []

    def go():
        results.append(call(agent, "POST", f"/v1/measure?{QUERY}", model_file))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c for c, _ in results] == [200] * 3
    # the single measuring slot serialises the requests: their measurement windows never overlap
    assert not agent.measure_lock.locked() and agent.waiting == 0


def dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


def test_pool_with_a_dead_agent_still_finishes(agent):
    settings = LatencySettings(resolution=RES, runs=4, rounds=2, warmup=1, max_remeasures=0, num_classes=10)
    pool = RemoteBackend([dead_url(), agent.url], token=TOKEN, timeout_s=60)
    archs = [zoo.get("mnasnet-small"), zoo.get("mnasnet-small", 0.5)]
    results = pool.measure_many(archs, settings)
    assert [r.arch for r in results] == [a.canonical for a in archs]
    assert all(r.extra["agent"] == agent.url and r.median_ms > 0 for r in results)
    assert pool.identity(settings)["backend"] == "remote/onnxruntime"


def test_remote_errors_are_clear(agent, monkeypatch):
    settings = LatencySettings(resolution=RES, runs=2, rounds=1, warmup=0, num_classes=10)
    with pytest.raises(MnasError, match="every device agent failed|no device agent answers"):
        RemoteBackend([dead_url()], token=TOKEN).measure(zoo.get("mnasnet-small"), settings)
    with pytest.raises(MnasError, match="401"):
        RemoteBackend([agent.url], token="wrong").measure(zoo.get("mnasnet-small"), settings)
    monkeypatch.delenv("MNAS_DEVICE_TOKEN", raising=False)
    monkeypatch.delenv("MNAS_DEVICE_TOKEN_FILE", raising=False)
    with pytest.raises(MnasError, match="needs the agents' token"):
        get_backend(f"remote:{agent.url}")
    monkeypatch.setenv("MNAS_DEVICE_TOKEN", TOKEN)  # the fallback a config-driven search relies on
    be = get_backend(f"remote:{urlparse(agent.url).netloc}")
    assert be.measure(zoo.get("mnasnet-small"), settings).extra["agent"] == agent.url


def test_token_file_is_an_argument_and_capabilities_come_from_the_agent(agent, model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MNAS_DEVICE_TOKEN", "not-the-token")  # an explicit token file wins over the fallback
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    be = get_backend(f"remote:{agent.url}", token_file=str(token_file))
    assert be.info()["backend"] == "onnxruntime" and be.model_format == "onnx"
    settings = LatencySettings(runs=4, rounds=2, warmup=1, max_remeasures=0)
    r = be.measure_file(model_file, settings)
    assert r.input_shape == (1, 3, RES, RES) and r.runs == 4 and r.extra["via"] == "remote"


def test_query_settings_round_trip_and_refusals():
    s = LatencySettings(runs=7, rounds=3, warmup=0, cv_threshold=0.1, pin_core=1, clock="cpu", resolution=64)
    back = settings_from_query(settings_to_query(s))
    assert back == s.replace(resolution=LatencySettings.default("resolution"))  # resolution is in the file
    for query, why in [("runs=0", "greater than or equal to 1"), ("runs=lots", "integer"),
                       ("clock=sundial", "wall"), ("resolution=64", "unknown setting 'resolution'"),
                       ("runs=20000", "runs is limited to 10000")]:
        with pytest.raises(MnasError, match=why):
            settings_from_query(query)


def test_cli_latency_json(capsys, tmp_path):
    from mnas.cli import main

    code = main(["latency", "mnasnet-small", "--resolution", "32", "--runs", "4", "--rounds", "2",
                 "--warmup", "1", "--json", "--cache", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"median_ms", "p10_ms", "p90_ms", "cv", "runs", "backend", "device"} <= out.keys()
    assert out["backend"] == "onnxruntime" and out["name"] == "mnasnet-small"
    assert main(["latency", "mnasnet-small", "--backend", "bogus"]) == 2
    assert main(["latency", "mnasnet-small", "--runs", "0"]) == 2
    assert "runs" in capsys.readouterr().err


@pytest.fixture()
def roomy_agent():
    """The CLI has no --num-classes: its 1000-class model files need the default size limit."""
    with running_agent() as server:
        yield server


def test_cli_latency_on_an_agent_with_a_token_file(roomy_agent, capsys, tmp_path, monkeypatch):
    from mnas.cli import main

    agent = roomy_agent
    monkeypatch.delenv("MNAS_DEVICE_TOKEN", raising=False)
    monkeypatch.delenv("MNAS_DEVICE_TOKEN_FILE", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    fast = ["--resolution", "32", "--runs", "2", "--rounds", "1", "--warmup", "0", "--no-cache", "--json"]
    assert main(["latency", "mnasnet-small", "--backend", f"remote:{agent.url}", "--token-file", str(token_file),
                 *fast]) == 0
    assert json.loads(capsys.readouterr().out)["extra"]["agent"] == agent.url
    assert "MNAS_DEVICE_TOKEN_FILE" not in os.environ  # passed as an argument, not through the environment
    assert main(["latency", "mnasnet-small", "--agent", agent.url, "--backend", "openvino",
                 "--token-file", str(token_file), *fast]) == 2
    assert "the agent serves onnxruntime" in capsys.readouterr().err
