"""Issue 12, points 7-11: the device agent cannot be used against its host, and its client trusts neither
redirects nor answers. Real agents on loopback ports; the attack files are a few hundred bytes."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import threading
import time

import numpy as np
import pytest
from agent_helpers import (QUERY, TOKEN, DiesOnRequest, big_input_model, call, external_data_model,
                           running_agent, tflite_with_external_buffer, tiling_model)

from mnas import MnasError
from mnas.latency import LatencySettings, get_backend
from mnas.latency.agent import server as agent_module
from mnas.latency.agent.remote import RemoteBackend
from mnas.latency.agent.wire import read_token
from mnas.model.export import export, prepare
from mnas.space import zoo

RES = 32
FAST = LatencySettings(runs=2, rounds=1, warmup=0, max_remeasures=0)
ONNX_BACKENDS = ["onnxruntime", "openvino"]
FILE_BACKENDS = [*ONNX_BACKENDS, "litert"]  # every backend that loads model files


@pytest.fixture(scope="module")
def agent():
    with running_agent() as server:
        yield server


@pytest.fixture(scope="module")
def model_file() -> bytes:
    shape = (1, 3, RES, RES)
    return export(prepare(zoo.get("mnasnet-small"), shape, num_classes=10), "onnx", shape)


@pytest.fixture(scope="module")
def tflite_file() -> bytes:
    """x + c for an input of 8 floats: the smallest .tflite with a constant (converting takes ~10 s)."""
    import torch

    class AddConstant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = torch.nn.Parameter(torch.arange(1.0, 9.0).reshape(1, 8))

        def forward(self, x):
            return x + self.c

    return export(AddConstant().eval(), "tflite", (1, 8))


def pointing_at_the_token(fmt: str, tflite: bytes) -> bytes:
    if fmt == "tflite":
        return tflite_with_external_buffer(tflite, "token", 32)
    return external_data_model("token", len(TOKEN))


def measure(server, body: bytes, query: str = QUERY) -> tuple[int, dict]:
    return call(server, "POST", f"/v1/measure?{query}", body)


def still_serving(server, model_file: bytes) -> bool:
    code, out = measure(server, model_file)
    return call(server, "GET", "/health")[0] == 200 and code == 200 and out["median_ms"] > 0


# --- 7: a model file cannot read the agent's files -------------------------------------------------------

def test_the_attack_model_really_reads_the_file_it_names(tmp_path, monkeypatch):
    """Guards the tests below: loaded straight into onnxruntime, the model's weights are the file's bytes."""
    import onnxruntime as ort

    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text(TOKEN)
    sess = ort.InferenceSession(external_data_model("token", len(TOKEN)), providers=["CPUExecutionProvider"])
    leaked = sess.run(None, {"X": np.zeros(len(TOKEN), np.float32)})[0]
    assert bytes(leaked.astype(np.uint8)) == TOKEN.encode()


@pytest.mark.parametrize("name", FILE_BACKENDS)
def test_every_file_backend_refuses_models_that_name_files(name, tmp_path, monkeypatch, tflite_file):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text(TOKEN)
    be = get_backend(name)
    assert be.measure_file(tflite_file if name == "litert" else big_input_model([1, 8]), FAST).median_ms > 0
    with pytest.raises(MnasError, match="refers to external (data|buffer) files"):
        be.load(pointing_at_the_token(be.model_format, tflite_file), FAST)


def test_the_agent_refuses_a_model_that_points_at_its_token_file(tmp_path, monkeypatch, model_file):
    monkeypatch.chdir(tmp_path)  # the agent's working directory holds its token file
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    assert read_token(str(token_file)) == TOKEN
    with running_agent() as server:
        code, out = measure(server, external_data_model("token", len(TOKEN)))
        assert code == 400 and "external data" in out["error"]
        assert still_serving(server, model_file)


# --- 8: bounded work per request ---------------------------------------------------------------------------

def test_requests_over_the_caps_get_400_naming_the_cap(agent, model_file):
    cores = os.cpu_count()
    for query, cap in [("runs=10000&max_remeasures=1e9", "max_remeasures is limited to 10"),
                       ("runs=10000&max_remeasures=1000000000", "max_remeasures is limited to 10"),
                       ("runs=20000", "runs is limited to 10000"), ("warmup=1e6", "warmup is limited to 10000"),
                       ("rounds=101", "rounds is limited to 100"), ("runs=inf", "runs is limited"),
                       (f"threads={cores + 1}", f"this device has {cores} core")]:
        code, out = measure(agent, model_file, query)
        assert (code, cap) == (400, cap) and cap in out["error"], (query, out)
    assert still_serving(agent, model_file)


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_a_measurement_over_the_time_limit_is_abandoned_and_the_slot_freed(model_file):
    with running_agent(max_seconds=3) as server:
        assert still_serving(server, model_file)  # the measuring process is up: its start is not timed
        started = time.monotonic()
        code, out = measure(server, model_file, "runs=10000&warmup=10000&rounds=100&max_remeasures=10"
                                                "&cv_threshold=0.000001")
        assert code == 400 and "limit of 3 s" in out["error"] and "abandoned" in out["error"]
        assert time.monotonic() - started < 30
        assert not server.measure_lock.locked() and call(server, "GET", "/health")[1]["busy"] is False
        assert still_serving(server, model_file)  # a fresh measuring process took over


# --- 9: bounded memory per model ---------------------------------------------------------------------------

def test_a_huge_input_tensor_is_refused_and_the_agent_keeps_serving(agent, model_file):
    data = big_input_model([1, 3, 12000, 12000])
    assert len(data) < 200
    code, out = measure(agent, data)
    assert code == 400 and "1x3x12000x12000" in out["error"] and "limit of 256 MiB" in out["error"]
    code, out = measure(agent, tiling_model([1, 3, 12000, 12000]))  # small input, huge declared activation
    assert code == 400 and "1x3x12000x12000" in out["error"]
    assert still_serving(agent, model_file)


def test_a_runtime_killed_for_memory_costs_one_request(model_file):
    with running_agent(DiesOnRequest()) as server:
        code, out = measure(server, b"die")
        assert code == 422 and "SIGKILL, out of memory?" in out["error"]
        assert still_serving(server, model_file)  # a fresh measuring process


def test_the_tensor_limit_holds_on_every_backend(tflite_file):
    for name in ONNX_BACKENDS:
        be = get_backend(name)
        be.max_tensor_bytes = 2**20
        with pytest.raises(MnasError, match="1x3x1024x1024 takes 12 MiB, over the limit of 1 MiB"):
            be.load(big_input_model([1, 3, 1024, 1024]), FAST)
    litert = get_backend("litert")
    litert.max_tensor_bytes = 16
    with pytest.raises(MnasError, match="of shape 1x8 takes 32 bytes, over the limit of 16 bytes"):
        litert.load(tflite_file, FAST)


# --- 10: the token stays with its agent ----------------------------------------------------------------

class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``answer(path)`` (code, headers, body) and records the Authorization
    header it was sent."""

    seen: list
    answer = staticmethod(lambda path: (404, {}, b"{}"))

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply()

    def _reply(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        code, headers, body = self.answer(self.path)
        self.send_response(code)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def fake_server():
    """A loopback HTTP server; ``server.answer(fn)`` chooses what it says, ``server.seen`` what it got."""
    seen: list = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = seen
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.answer = lambda fn: setattr(handler, "answer", staticmethod(fn))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def fake_agent():
    with fake_server() as server:
        yield server


def health_body() -> bytes:
    return json.dumps({"backend": "onnxruntime", "runtime_version": "1", "model_format": "onnx",
                       "device": {"id": "fake", "cpu": "fake"}, "max_bytes": 64 << 20}).encode()


def test_a_redirect_to_another_origin_does_not_carry_the_token(fake_agent):
    with fake_server() as elsewhere:  # another port on loopback: another origin
        fake_agent.answer(lambda path: (302, {"Location": f"{elsewhere.url}{path}"}, b""))
        with pytest.raises(MnasError, match="redirects to another origin"):
            RemoteBackend([fake_agent.url], token=TOKEN).info()
        assert fake_agent.seen == [("/health", f"Bearer {TOKEN}")]
        assert elsewhere.seen == []  # never contacted, so never sent the token
    # a redirect within the agent's own origin is followed as before
    fake_agent.answer(lambda path: (302, {"Location": "/health2"}, b"") if path == "/health" else
                      (200, {"Content-Type": "application/json"}, health_body()))
    assert RemoteBackend([fake_agent.url], token=TOKEN).info()["device"]["id"] == "fake"
    assert [path for path, _ in fake_agent.seen[1:]] == ["/health", "/health2"]


def test_weak_tokens_and_readable_token_files_warn(tmp_path, caplog):
    weak = tmp_path / "weak"
    weak.write_text("short")
    weak.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mnas"):
        RemoteBackend(["http://127.0.0.1:1"], token_file=str(weak))
    assert "readable by group or others: chmod 600" in caplog.text and "shorter than 16 bytes" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mnas"):
        agent_module.make_server("onnxruntime", "short", port=0, quiet=True).server_close()
    assert "shorter than 16 bytes" in caplog.text
    caplog.clear()
    strong = tmp_path / "strong"
    strong.write_text(TOKEN)
    strong.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="mnas"):
        read_token(str(strong))
        RemoteBackend(["http://127.0.0.1:1"], token_file=str(strong))
    assert caplog.text == ""


def test_an_agent_beyond_loopback_warns_and_says_how_to_tunnel(monkeypatch, caplog):
    assert agent_module.is_loopback("127.0.0.1") and agent_module.is_loopback("::1")
    assert agent_module.is_loopback("localhost") and not agent_module.is_loopback("0.0.0.0")
    assert not agent_module.is_loopback("192.168.1.20") and not agent_module.is_loopback("::")
    with caplog.at_level(logging.WARNING, logger="mnas"):
        agent_module.make_server("onnxruntime", TOKEN, port=0, quiet=True).server_close()
    assert caplog.text == ""
    # the bind stays on loopback; only the check is told otherwise, to see what a user binding 0.0.0.0 reads
    monkeypatch.setattr(agent_module, "is_loopback", lambda host: False)
    with caplog.at_level(logging.WARNING, logger="mnas"):
        agent_module.make_server("onnxruntime", TOKEN, port=0, quiet=True).server_close()
    assert "plain HTTP" in caplog.text and "ssh -N -L" in caplog.text


# --- 11: a bad agent answer fails the trial, not the search ----------------------------------------------

GOOD = {"median_ms": 1.5, "mean_ms": 1.5, "p10_ms": 1.4, "p90_ms": 1.6, "std_ms": 0.1, "cv": 0.01, "runs": 2,
        "warmup": 0, "batch": 1, "resolution": 32, "threads": 1, "backend": "onnxruntime",
        "runtime_version": "1", "device": {"id": "fake"}, "time": "2026-01-01T00:00:00Z",
        "input_shape": [1, 3, 32, 32]}


@pytest.mark.parametrize("answer, reason", [
    ({**GOOD, "median_ms": "x"}, "median_ms: Input should be a valid number"),
    ([], "a latency result is a JSON object, got list"),
    ("fast", "got str"),
    ({**GOOD, "median_ms": -1.0}, "not a positive time"),
    ({**GOOD, "round_medians_ms": [1, "slow"]}, "round_medians_ms.1"),
    ({**GOOD, "device": "pi"}, "device"),
    ({"median_ms": 1.0}, "lacks field"),
])
def test_a_malformed_answer_is_a_clear_error(fake_agent, answer, reason):
    fake_agent.answer(lambda path: (200, {}, health_body() if path == "/health" else json.dumps(answer).encode()))
    with pytest.raises(MnasError, match=f"answered a .*{reason}"):
        RemoteBackend([fake_agent.url], token=TOKEN).measure_file(b"model", FAST)


def test_a_malformed_health_is_a_clear_error(fake_agent):
    fake_agent.answer(lambda path: (200, {}, b'{"backend": 3}'))
    with pytest.raises(MnasError, match="malformed /health"):
        RemoteBackend([fake_agent.url], token=TOKEN).info()


def test_mnas_latency_exits_2_on_a_malformed_answer(fake_agent, tmp_path, capsys):
    from mnas.cli import main

    fake_agent.answer(lambda path: (200, {}, health_body() if path == "/health" else
                                    json.dumps({**GOOD, "median_ms": "x"}).encode()))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    code = main(["latency", "mnasnet-small", "--agent", fake_agent.url, "--token-file", str(token_file),
                 "--resolution", "32", "--no-cache", "--json"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "median_ms" in err and len(err.strip().splitlines()) == 1


def test_a_bad_pin_core_is_400_not_500(agent, model_file):
    for core, why in [(10_000, "pin_core 10000: this process may run on core(s)"),
                      (-1, "pin_core: Input should be greater than or equal to 0")]:
        code, out = measure(agent, model_file, f"{QUERY}&pin_core={core}")
        assert code == 400 and why in out["error"]
    assert still_serving(agent, model_file)


# --- inputs that must be one line -----------------------------------------------------------------------

def test_a_non_utf8_token_file_is_one_line(tmp_path, capsys):
    from mnas.cli import main

    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe\x00not utf-8")
    with pytest.raises(MnasError, match="not UTF-8 text"):
        read_token(str(token_file))
    assert main(["device", "serve", "--token-file", str(token_file), "--port", "0"]) == 2
    assert main(["latency", "mnasnet-small", "--agent", "http://127.0.0.1:1", "--token-file",
                 str(token_file)]) == 2
    assert capsys.readouterr().err.count("not UTF-8 text") == 2
